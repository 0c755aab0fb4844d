// The TypeScript SDK's `webhooks.unwrap`, unchanged, on deliveries the server made.
// Input (stdin): [{"body", "headers", "key"}, ...]; output: one line a delivery, the
// event's type once verified, or "refused: <reason>" when the SDK throws.
import LinqAPIV3 from "@linqapp/sdk";

const client = new LinqAPIV3({ apiKey: "unused-for-unwrap" });
let input = "";
for await (const chunk of process.stdin) input += chunk;
for (const { body, headers, key } of JSON.parse(input)) {
  try {
    console.log(client.webhooks.unwrap(body, { headers, key }).event_type);
  } catch (error) {
    console.log(`refused: ${error.constructor.name}`);
  }
}
