// node's test runner against `contactcard serve --ephemeral --seed examples/testing/seed.yaml`.
import assert from "node:assert/strict";
import { beforeEach, test } from "node:test";
import LinqAPIV3, { RateLimitError } from "@linqapp/sdk";

const server = process.env.CONTACTCARD_URL ?? "http://127.0.0.1:8000";
const adminToken = process.env.CONTACTCARD_ADMIN_TOKEN ?? "admin-token";
const apiKey = "test-key-example-partner-0001"; // from seed.yaml
const phone = "+15557770001";

async function admin(method: string, path: string, body?: unknown): Promise<unknown> {
  const response = await fetch(`${server}/admin/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${await response.text()}`);
  return response.status === 204 ? null : response.json();
}

const client = new LinqAPIV3({ apiKey, baseURL: `${server}/api/partner`, maxRetries: 0 });

beforeEach(async () => {
  // Cards, budgets, device scripts and the journal forgotten; settings and clock back.
  await admin("POST", "/reset");
  await admin("DELETE", "/settings");
  await admin("DELETE", "/clock");
});

test("a 429, then the window passes without waiting", async () => {
  await admin("PATCH", "/settings", { write_budget: 1 });
  await client.contactCard.create({ phone_number: phone, first_name: "Ada" });
  await assert.rejects(client.contactCard.update({ phone_number: phone, first_name: "Grace" }), RateLimitError);
  await admin("POST", "/clock/advance", { seconds: 600 });
  const card = await client.contactCard.update({ phone_number: phone, first_name: "Grace" });
  assert.equal(card.first_name, "Grace");
});

test("a failing device leaves the card inactive", async () => {
  await admin("PUT", `/devices/${encodeURIComponent(phone)}/script`, { fail_next: 1 });
  const card = await client.contactCard.create({ phone_number: phone, first_name: "Ada" });
  assert.equal(card.is_active, false);
  const seen = (await admin("GET", `/requests?status=200&phone_number=${encodeURIComponent(phone)}`)) as unknown[];
  assert.equal(seen.length, 1);
});
