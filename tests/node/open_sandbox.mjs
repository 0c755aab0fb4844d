// The TypeScript SDK against a fresh `contactcard serve --open`, with no setup: the calls
// of the SDK's generated tests for contact cards, webhook subscriptions and webhook events
// (same key, numbers, URLs and ids, in file order), then a subscription of the loopback
// receiver and a card change (create, then update) for it to receive.
// Input (stdin): {"base_url", "receiver_url"}; output (stdout): one JSON object,
// {"calls": [[name, "ok" | "<status> <code>"], ...], "subscription": {"id", "secret"}}.
import LinqAPIV3 from "@linqapp/sdk";

let input = "";
for await (const chunk of process.stdin) input += chunk;
const { base_url, receiver_url } = JSON.parse(input);
const client = new LinqAPIV3({ apiKey: "My API Key", baseURL: base_url, maxRetries: 0 });

const IMAGE = "https://cdn.linqapp.com/contact-card/example.jpg";
const EVENTS = ["message.sent", "message.delivered", "message.read"];
const TARGET = "https://webhooks.example.com/linq/events";
const INVENTED = "b2c3d4e5-f6a7-8901-bcde-f23456789012";
const generated = [
  ["contactCard.create: only required params", () => client.contactCard.create({ first_name: "Acme", phone_number: "+15551234567" })],
  ["contactCard.create: required and optional params", () =>
    client.contactCard.create({ first_name: "Acme", phone_number: "+15551234567", image_url: IMAGE, last_name: "Support" })],
  ["contactCard.retrieve", () => client.contactCard.retrieve()],
  ["contactCard.retrieve: unknown path", () =>
    client.contactCard.retrieve({ phone_number: "+15551234567" }, { path: "/_stainless_unknown_path" })],
  ["contactCard.update: only required params", () => client.contactCard.update({ phone_number: "+15551234567" })],
  ["contactCard.update: required and optional params", () =>
    client.contactCard.update({ phone_number: "+15551234567", first_name: "John", image_url: IMAGE, last_name: "Doe" })],
  ["webhookEvents.list", () => client.webhookEvents.list()],
  ["webhookSubscriptions.create: only required params", () =>
    client.webhookSubscriptions.create({ subscribed_events: EVENTS, target_url: TARGET })],
  ["webhookSubscriptions.create: required and optional params", () =>
    client.webhookSubscriptions.create({ subscribed_events: EVENTS, target_url: TARGET, phone_numbers: ["+12025551234", "+12025559876"] })],
  ["webhookSubscriptions.list", () => client.webhookSubscriptions.list()],
  ["webhookSubscriptions.retrieve", () => client.webhookSubscriptions.retrieve(INVENTED)],
  ["webhookSubscriptions.update", () => client.webhookSubscriptions.update(INVENTED, {})],
  ["webhookSubscriptions.delete", () => client.webhookSubscriptions.delete(INVENTED)],
];
const calls = [];
for (const [name, call] of generated) {
  try {
    await call();
    calls.push([name, "ok"]);
  } catch (error) {
    if (!(error instanceof LinqAPIV3.APIError)) throw error;
    calls.push([name, `${error.status} ${error.error?.error?.code}`]); // body: {"error": {"code"}}
  }
}

const created = await client.webhookSubscriptions.create({
  subscribed_events: ["contact_card.updated"],
  target_url: receiver_url,
});
// A number of its own: the generated calls used +15551234567's write budget (3 per window).
await client.contactCard.create({ phone_number: "+15557654321", first_name: "Jane" });
await client.contactCard.update({ phone_number: "+15557654321", first_name: "Janet", last_name: "Doe" });
console.log(JSON.stringify({ calls, subscription: { id: created.id, secret: created.signing_secret } }));
