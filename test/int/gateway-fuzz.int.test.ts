import fc from "fast-check";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startGateway, type Gateway } from "@smallchain/gateway";
import { checkStreams } from "../chaos/src/verify.js";
import { startStack, type Stack } from "../support/stack.js";

/** Cases per property; docs/reliability.md counts them. */
const REQUESTS = 300;
const TOKEN = "fuzz-token";
const REFUSALS = [400, 401, 403, 404, 405, 409, 413];

const CONFIG = `
llms:
  - name: mock
    provider: mock
    replies: [ { tool_calls: [ { name: careful_add, arguments: { a: 2, b: 3 } } ] }, { content: "sum {{last_tool_result}}" } ]
agents:
  - { name: adder, llm: mock, tools: [ careful_add ] }
tools:
  - { name: careful_add, builtin: add, approval: required }
tasks:
  - { name: fuzz, user_message: go, agent: adder }
`;

const text = fc.string({ unit: "binary", maxLength: 30 });
/** Ids as a hostile client sends them: percent-escapes (some malformed), dots, wildcards, long, or plausible. */
const id = fc.oneof(
  fc.constantFrom("%", "%zz", "%E0%A4%A", "a%2Fb", "..", "*", ">", "a.b", "r".repeat(300), "s1c0", "nosuchrun"),
  fc.stringMatching(/^[A-Za-z0-9_-]{1,20}$/),
  text.map((t) => encodeURIComponent(t)),
);
const path = fc.oneof(
  id.map((r) => `/runs/${r}`),
  id.map((r) => `/runs/${r}/events`),
  fc.tuple(id, id).map(([r, c]) => `/runs/${r}/calls/${c}/approval`),
  fc.tuple(id, id).map(([r, c]) => `/runs/${r}/calls/${c}/response`),
  id.map((t) => `/callbacks/${t}`),
  id.map((t) => `/tasks/${t}/runs`),
  fc.constantFrom("/runs", "/runs?limit=-1", "/runs?limit=abc&offset=1e9", "/approvals", "/waits", "/healthz", "/", "/nope", "/tasks/fuzz/runs"),
);
const jsonBody = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  fc.record({ approved: fc.oneof(fc.boolean(), text), comment: fc.oneof(text, fc.nat()), digest: text, by: text }, { requiredKeys: [] }),
  fc.record({ answer: fc.oneof(text, fc.nat()), by: text }, { requiredKeys: [] }),
  fc.record({ result: fc.jsonValue({ maxDepth: 2 }), error: text }, { requiredKeys: [] }),
  fc.record({ message: fc.oneof(text, fc.nat()), name: text, runId: id, limits: fc.jsonValue({ maxDepth: 1 }) }, { requiredKeys: [] }),
);
const body = fc.oneof(
  jsonBody.map((v) => JSON.stringify(v)),
  fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b).toString("latin1")),
  fc.constantFrom("", "{", "null", "[]", '{"approved":true}'),
);
const request = fc.record({
  method: fc.constantFrom("GET", "POST", "PUT", "DELETE", "PATCH"),
  path,
  body,
  auth: fc.constantFrom(`Bearer ${TOKEN}`, `Bearer ${TOKEN}`, `Bearer ${TOKEN}`, "Bearer wrong", "", "Basic abc"),
});

describe("the HTTP gateway under fuzzed requests", () => {
  let stack: Stack;
  let gateway: Gateway;
  beforeAll(async () => {
    stack = await startStack();
    await stack.apply(CONFIG);
    gateway = await startGateway({ nc: stack.nc, names: stack.names, log: pino({ level: "silent" }), token: TOKEN, port: 0, host: "127.0.0.1" });
  });
  afterAll(async () => {
    await gateway?.stop();
    await stack?.[Symbol.asyncDispose]();
  });

  it(`answers ${REQUESTS} random requests with a success or a clear refusal (never a 500), stays up, and stores no invalid event`, async () => {
    const pending = await stack.client.startRun({ task: "fuzz", runId: "rfuzzpending" });
    await stack.client.waitForRun(pending.runId, { until: (v) => v.turn.phase === "tools" && v.turn.calls.some((c) => c.status === "awaitingApproval") });
    const statuses = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        const res = await fetch(`${gateway.url}${r.path}`, {
          method: r.method,
          headers: { ...(r.auth && { authorization: r.auth }), "content-type": "application/json" },
          ...(r.method !== "GET" && { body: r.body }),
        });
        const text = await res.text();
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        expect(res.status < 300 || REFUSALS.includes(res.status), `${r.method} ${r.path} ${JSON.stringify(r.body)} -> ${res.status} ${text}`).toBe(true);
        const json = JSON.parse(text) as { error?: unknown };
        if (res.status >= 400) expect(typeof json.error).toBe("string");
      }),
      { numRuns: REQUESTS },
    );
    // An oversized body is refused with 413, not buffered.
    const big = await fetch(`${gateway.url}/runs/${pending.runId}/calls/s1c0/approval`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}` },
      body: "x".repeat(2 * 1024 * 1024),
    });
    expect(big.status).toBe(413);

    // Still up, and still doing its job: the pending approval goes through and the run completes.
    const ok = await fetch(`${gateway.url}/runs/${pending.runId}/calls/s1c0/approval`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ approved: true }),
    });
    // A fuzzed request may have decided it first; either way the run finishes.
    expect([200, 409]).toContain(ok.status);
    const done = await stack.client.waitForRun(pending.runId, { timeoutMs: 15_000 });
    expect(done.status).toBe("Completed");
    const { runs } = await stack.client.listRuns();
    const check = await checkStreams(stack.client, runs);
    expect(check.invalidEvents).toEqual([]);
    expect(check.duplicates).toEqual([]);
    expect([...statuses.keys()].every((s) => s < 300 || REFUSALS.includes(s))).toBe(true);
  });
});
