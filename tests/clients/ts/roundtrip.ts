// Round trip through a TypeScript client generated from openapi/openapi.json
// (openapi-typescript types + openapi-fetch), type-checked with tsc --strict
// and run with node against a real server by scripts/check-clients.sh:
// topics, JSON produce with key and headers, read, a queue subscription,
// pull, ack, nack, NDJSON produce, and problem documents as typed values.
//
//   node roundtrip.js BASE_URL TOKEN   (schema.d.ts generated next to it)
import createClient from "openapi-fetch";
import type { components, paths } from "./schema.js";

type Problem = components["schemas"]["Problem"];

const [base, token] = process.argv.slice(2);
const client = createClient<paths>({ baseUrl: base, headers: { Authorization: `Bearer ${token}` } });

function check(condition: boolean, what: string): void {
  if (!condition) {
    console.error(`typescript client round trip failed: ${what}`);
    process.exit(1);
  }
  console.log(`ok   - ${what}`);
}

const topic = { params: { path: { topic: "ts-orders" } } };
const sub = { params: { path: { topic: "ts-orders", sub: "billing" } } };

const created = await client.PUT("/v1/topics/{topic}", { ...topic, body: { partitions: 1 } });
check(created.response.status === 201 && created.data?.name === "ts-orders", "create a topic");

const produced = await client.POST("/v1/topics/{topic}/messages", {
  ...topic,
  body: { messages: [{ key: "customer-7", value: { order: 1 }, headers: { "trace-id": "abc" } }] },
});
check(produced.data?.results[0]?.offset === 0, "produce JSON with a key and headers");

const ndjson = await client.POST("/v1/topics/{topic}/messages/ndjson", {
  ...topic,
  body: [{ value: "line one" }, { value: "line two" }],
  bodySerializer: (lines: unknown[]) => lines.map((line) => JSON.stringify(line)).join("\n"),
  headers: { "Content-Type": "application/x-ndjson" },
});
check(ndjson.data?.results.length === 2 && ndjson.data.results[1]?.offset === 2, "produce NDJSON");

const read = await client.GET("/v1/topics/{topic}/partitions/{partition}/messages", {
  params: { path: { topic: "ts-orders", partition: 0 }, query: { offset: 0, limit: 10 } },
});
const first = read.data?.messages[0];
check(
  first?.key === "customer-7" &&
    JSON.stringify(first.value) === JSON.stringify({ order: 1 }) &&
    first.headers?.["trace-id"] === "abc",
  "read the message back with its key, value and headers",
);

const created_sub = await client.PUT("/v1/topics/{topic}/subscriptions/{sub}", {
  ...sub,
  body: { mode: "queue", start: "earliest", ack_timeout_ms: 30000 },
});
check(created_sub.response.status === 201, "create a queue subscription");

const leased = await client.POST("/v1/topics/{topic}/subscriptions/{sub}/pull", { ...sub, body: { max_messages: 10 } });
const messages = leased.data?.messages ?? [];
check(messages.length === 3 && messages[0]?.attempt === 1, "pull leases the three messages");
const acked = await client.POST("/v1/topics/{topic}/subscriptions/{sub}/ack", {
  ...sub,
  body: { ack_ids: [messages[0]!.ack_id, messages[1]!.ack_id] },
});
check(acked.data?.acked === 2, "ack two");
const nacked = await client.POST("/v1/topics/{topic}/subscriptions/{sub}/nack", {
  ...sub,
  body: { ack_ids: [messages[2]!.ack_id], reason: "try later", delay_ms: 0 },
});
check(nacked.data?.acked === 1, "nack the third");
const again = await client.POST("/v1/topics/{topic}/subscriptions/{sub}/pull", {
  ...sub,
  body: { max_messages: 10, wait_ms: 5000 },
});
check(again.data?.messages.length === 1 && again.data.messages[0]?.attempt === 2, "the nacked message comes back as attempt 2");

const missing = await client.GET("/v1/topics/{topic}", { params: { path: { topic: "no-such-topic" } } });
const problem: Problem | undefined = missing.error;
check(missing.response.status === 404 && problem?.code === "topic_not_found", "an unknown topic is a typed Problem");

const stranger = createClient<paths>({ baseUrl: base, headers: { Authorization: "Bearer wrong-token" } });
const refused = await stranger.GET("/v1/topics", {});
check(refused.response.status === 401 && refused.error?.code === "unauthorized", "a wrong token is a typed 401 Problem");
