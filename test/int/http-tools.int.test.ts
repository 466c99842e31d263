import { once } from "node:events";
import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import { describe, expect, it } from "vitest";
import { startStack } from "../support/stack.js";

async function bodyOf(req: IncomingMessage): Promise<string> {
  let body = "";
  for await (const chunk of req) body += String(chunk);
  return body;
}

/** A local HTTP server with a route per behaviour; counts the requests each route got. */
async function startToolServer() {
  const hits: Record<string, number> = {};
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    hits[path] = (hits[path] ?? 0) + 1;
    void bodyOf(req).then((body) => {
      switch (path) {
        case "/echo":
          res.setHeader("content-type", "application/json");
          res.end(JSON.stringify({ method: req.method, body: JSON.parse(body), key: req.headers["idempotency-key"], auth: req.headers.authorization }));
          return;
        case "/query":
          res.end(`${req.method} ${req.url}`);
          return;
        case "/bad":
          res.statusCode = 422;
          res.end("field x is required");
          return;
        case "/flaky":
        case "/flaky-once":
          if (hits[path]! <= 2) {
            res.statusCode = 503;
            res.end("try later");
            return;
          }
          res.end("worked at last");
          return;
        case "/down":
          res.statusCode = 502;
          res.end("bad gateway");
          return;
        case "/big":
          res.end("y".repeat(10_000));
          return;
        case "/slow":
          setTimeout(() => res.end("too late"), 3000).unref();
          return;
        default:
          res.statusCode = 404;
          res.end();
      }
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    hits,
    [Symbol.dispose]() {
      server.closeAllConnections();
      server.close();
    },
  };
}

describe("HTTP tools", () => {
  it("sends the arguments as JSON and returns the body; fails on non-2xx, oversize, timeouts; retries only idempotent tools", async () => {
    using web = await startToolServer();
    const refusing = `http://127.0.0.1:${await closedPort()}/nothing-listens`;
    await using stack = await startStack();
    const tool = (name: string, http: string) => `  - { name: ${name}, parameters: { type: object }, executor: { http: ${http} } }`;
    await stack.apply(`
llms:
  - name: mock
    provider: mock
    replies:
      - tool_calls:
          - { name: echo, arguments: { city: Paris, days: 3 } }
          - { name: query, arguments: { q: "a b", n: 2 } }
          - { name: bad, arguments: {} }
          - { name: flaky, arguments: {} }
          - { name: flaky_once, arguments: {} }
          - { name: big, arguments: {} }
          - { name: slow, arguments: {} }
          - { name: refused, arguments: {} }
      - content: done
agents:
  - { name: web, llm: mock, tools: [ echo, query, bad, flaky, flaky_once, big, slow, refused ] }
tools:
${tool("echo", `{ url: "${web.url}/echo", headers: { Authorization: "Bearer \${SC_TEST_HTTP_TOKEN}" } }`)}
${tool("query", `{ url: "${web.url}/query", method: GET }`)}
${tool("bad", `{ url: "${web.url}/bad" }`)}
${tool("flaky", `{ url: "${web.url}/flaky", idempotent: true }`)}
${tool("flaky_once", `{ url: "${web.url}/flaky-once" }`)}
${tool("big", `{ url: "${web.url}/big", max_response_bytes: 100 }`)}
${tool("slow", `{ url: "${web.url}/slow", timeout_ms: 300 }`)}
${tool("refused", `{ url: "${refusing}" }`)}
tasks:
  - { name: t, user_message: go, agent: web }
`);
    // The token comes from the tool-worker's environment when it sends the request: the run's events hold its name.
    process.env.SC_TEST_HTTP_TOKEN = "t0ken";
    const { runId } = await stack.client.startRun({ task: "t" });
    expect((await stack.client.waitForRun(runId, { timeoutMs: 30_000 })).status).toBe("Completed");
    delete process.env.SC_TEST_HTTP_TOKEN;
    // (The echo server sends the header back as the tool's result; the tool's own record holds only the name.)
    const stored = JSON.stringify((await stack.client.events(runId)).find((e) => e.type === "RunStarted"));
    expect(stored).toContain("Bearer ${SC_TEST_HTTP_TOKEN}");
    expect(stored).not.toContain("t0ken");
    const results = Object.fromEntries(
      (await stack.client.events(runId)).flatMap((e) =>
        e.type === "ToolCallCompleted" ? [[e.data.callId, e.data.result]] : e.type === "ToolCallFailed" ? [[e.data.callId, `FAILED ${e.data.error}`]] : [],
      ),
    ) as Record<string, string>;

    expect(JSON.parse(results.s1c0!)).toEqual({ method: "POST", body: { city: "Paris", days: 3 }, key: `${runId}:tool:s1c0`, auth: "Bearer t0ken" });
    expect(results.s1c1).toBe("GET /query?q=a+b&n=2");
    expect(results.s1c2).toBe(`FAILED POST ${web.url}/bad answered 422 Unprocessable Entity: field x is required`);
    // Idempotent: two 503s were retried with backoff, the third attempt worked.
    expect(results.s1c3).toBe("worked at last");
    expect(web.hits["/flaky"]).toBe(3);
    // Not idempotent: the 503 is final, the request is not sent again.
    expect(results.s1c4).toBe(`FAILED POST ${web.url}/flaky-once answered 503 Service Unavailable: try later`);
    expect(web.hits["/flaky-once"]).toBe(1);
    expect(results.s1c5).toBe(`${"y".repeat(100)}\n[response truncated at 100 bytes]`);
    expect(results.s1c6).toBe(`FAILED POST ${web.url}/slow timed out after 300 ms`);
    expect(results.s1c7).toBe(`FAILED POST ${refusing} failed: ECONNREFUSED`);
  });
});

describe("an idempotent HTTP tool that keeps failing", () => {
  it("is retried with backoff, then recorded as a failed call saying how often it was tried", async () => {
    using web = await startToolServer();
    await using stack = await startStack();
    await stack.apply(`
llms:
  - { name: mock, provider: mock, replies: [ { tool_calls: [ { name: down, arguments: {} } ] }, { content: "{{last_tool_result}}" } ] }
agents:
  - { name: web, llm: mock, tools: [ down ] }
tools:
  - { name: down, parameters: { type: object }, executor: { http: { url: "${web.url}/down", idempotent: true } } }
tasks:
  - { name: t, user_message: go, agent: web }
`);
    const { runId } = await stack.client.startRun({ task: "t" });
    const done = await stack.client.waitForRun(runId, { timeoutMs: 30_000 });
    expect(done.output).toBe(`error: gave up after 5 attempts: POST ${web.url}/down answered 502 Bad Gateway: bad gateway`);
    expect(web.hits["/down"]).toBe(5);
  });
});

/** A port nothing listens on (it was free a moment ago). */
async function closedPort(): Promise<number> {
  const probe = createServer().listen(0, "127.0.0.1");
  await once(probe, "listening");
  const { port } = probe.address() as AddressInfo;
  probe.close();
  await once(probe, "close");
  return port;
}
