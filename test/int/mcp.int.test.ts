import { once } from "node:events";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { describe, expect, it } from "vitest";
import { ConfigError } from "@smallchain/shared";
import { ROOT, cli } from "../support/processes.js";
import { startStack } from "../support/stack.js";
// @ts-expect-error a plain ES module of the test suite, without types
import { createMcpServer } from "../support/mcp-server.mjs";

const SERVER = `${ROOT}test/support/mcp-server.mjs`;

function mcpConfig(mcp: string, replies: string[]): string {
  return `
llms:
  - name: mock
    provider: mock
    replies:
${replies.map((r) => `      - ${r}`).join("\n")}
agents:
  - { name: clerk, llm: mock, tools: [ fs ] }
tools:
  - name: fs
    mcp: ${mcp}
tasks:
  - { name: t, user_message: go, agent: clerk }
`;
}

describe("MCP tools over stdio", () => {
  it("offers the server's listed tools to the model and calls them in a long-lived server process that restarts after a crash", async () => {
    await using stack = await startStack();
    const log = join(mkdtempSync(join(tmpdir(), "sc-mcp-")), "calls.log");
    process.env.SC_TEST_SECRET = "do-not-pass";
    process.env.SC_TEST_PASSED = "passed-through";
    await stack.apply(
      mcpConfig(`{ command: node, args: [ "${SERVER}", "${log}" ], env: [ SC_TEST_PASSED ], include: [ read_file, notes.count, crash, whoami ] }`, [
        '{ tool_calls: [ { name: fs__read_file, arguments: { path: /a.txt } }, { name: fs__notes_count, arguments: { text: "one two three" } }, { name: fs__read_file, arguments: { path: /missing } } ] }',
        "{ tool_calls: [ { name: fs__crash, arguments: {} } ] }",
        "{ tool_calls: [ { name: fs__read_file, arguments: { path: /b.txt } }, { name: fs__whoami, arguments: {} } ] }",
        '{ content: "done" }',
      ]),
    );
    const { runId } = await stack.client.startRun({ task: "t" });
    const done = await stack.client.waitForRun(runId, { timeoutMs: 30_000 });
    expect(done.status).toBe("Completed");
    const events = await stack.client.events(runId);

    // The run's snapshot holds the concrete tools, their OpenAI-safe names and the server's schemas.
    const started = events.find((e) => e.type === "RunStarted");
    const tools = started?.type === "RunStarted" ? started.data.agent.tools : [];
    expect(tools.map((t) => t.name)).toEqual(["fs__read_file", "fs__notes_count", "fs__crash", "fs__whoami"]);
    expect(tools[0]).toMatchObject({ kind: "mcp", description: "read a file of the fake file system", mcp: { tool: "read_file" } });
    expect(tools[0]!.parameters).toMatchObject({ type: "object", properties: { path: { type: "string" } }, required: ["path"] });
    expect(tools[1]).toMatchObject({ mcp: { tool: "notes.count" } });

    const results = Object.fromEntries(
      events.flatMap((e) =>
        e.type === "ToolCallCompleted" ? [[e.data.callId, e.data.result]] : e.type === "ToolCallFailed" ? [[e.data.callId, `FAILED ${e.data.error}`]] : [],
      ),
    );
    expect(results.s1c0).toBe("contents of /a.txt");
    expect(results.s1c1).toBe("3");
    expect(results.s1c2).toBe("FAILED no such file: /missing");
    expect(results.s2c0).toMatch(/^FAILED MCP server "node .*mcp-server.mjs .*", tool crash: .*closed/i);
    expect(results.s3c0).toBe("contents of /b.txt");
    const env = JSON.parse(results.s3c1 as string) as { secret: string | null; passed: string | null };
    expect(env).toMatchObject({ secret: null, passed: "passed-through" });

    // One process served the first step's calls; after it crashed, a new one served the rest.
    const pids = [...readFileSync(log, "utf8").matchAll(/pid=(\d+)/g)].map((m) => m[1]);
    expect(new Set(pids.slice(0, 3)).size).toBe(1);
    expect(pids[3]).not.toBe(pids[0]);
  });

  it("fails a call that outlives the tool's timeout", async () => {
    await using stack = await startStack();
    await stack.apply(
      mcpConfig(`{ command: node, args: [ "${SERVER}" ], include: [ slow ], timeout_ms: 300 }`, [
        "{ tool_calls: [ { name: fs__slow, arguments: {} } ] }",
        '{ content: "after: {{last_tool_result}}" }',
      ]),
    );
    const { runId } = await stack.client.startRun({ task: "t" });
    const done = await stack.client.waitForRun(runId, { timeoutMs: 30_000 });
    expect(done.output).toMatch(/^after: error: MCP server .*, tool slow: .*timed out/i);
  });

  it("refuses to apply a server that cannot be started, or a tool it does not have, naming the command", async () => {
    await using stack = await startStack([]);
    const unreachable = stack.apply(mcpConfig(`{ command: /no/such/mcp-server, args: [ --stdio ] }`, ['{ content: "x" }']));
    await expect(unreachable).rejects.toThrow(ConfigError);
    await expect(unreachable).rejects.toThrow(/tools\[0\] \(fs\)\.mcp: cannot reach MCP server "\/no\/such\/mcp-server --stdio"/);
    const missing = stack.apply(mcpConfig(`{ command: node, args: [ "${SERVER}" ], include: [ read_file, write_file ] }`, ['{ content: "x" }']));
    await expect(missing).rejects.toThrow(/has no tool "write_file" \(it has: read_file, notes.count, slow, crash, whoami\)/);
    expect(await stack.client.knownNames()).toMatchObject({ tool: [], agent: [] });

    const file = join(mkdtempSync(join(tmpdir(), "sc-mcp-")), "bad.yaml");
    writeFileSync(file, mcpConfig(`{ command: /no/such/mcp-server }`, ['{ content: "x" }']));
    const r = await cli(["--prefix", stack.prefix, "apply", "-f", file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${file} is invalid, nothing was applied`);
    expect(r.stderr).toMatch(/tools\[0\] \(fs\)\.mcp: cannot reach MCP server "\/no\/such\/mcp-server"/);
  });
});

describe("examples/tools.yaml", () => {
  it("runs its MCP tools end to end", async () => {
    await using stack = await startStack();
    const applied = await stack.apply(readFileSync(`${ROOT}examples/tools.yaml`, "utf8"));
    const done = await stack.client.waitForRun(applied.runs[0]!.runId, { timeoutMs: 30_000 });
    expect(done.output).toBe("read: 3");
  });
});

describe("MCP tools over streamable HTTP", () => {
  it("lists and calls the tools of a server reached by URL", async () => {
    const http: Server = createServer((req, res) => {
      // Stateless: a fresh server and transport per request, as the SDK's stateless example does.
      const server = createMcpServer();
      const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
      res.on("close", () => void transport.close().then(() => server.close()));
      void server.connect(transport).then(() => transport.handleRequest(req, res));
    });
    http.listen(0, "127.0.0.1");
    await once(http, "listening");
    try {
      await using stack = await startStack();
      const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}/mcp`;
      await stack.apply(
        mcpConfig(`{ url: "${url}", include: [ notes.count ] }`, [
          '{ tool_calls: [ { name: fs__notes_count, arguments: { text: "a b c d" } } ] }',
          '{ content: "words: {{last_tool_result}}" }',
        ]),
      );
      const { runId } = await stack.client.startRun({ task: "t" });
      const done = await stack.client.waitForRun(runId, { timeoutMs: 30_000 });
      expect(done.output).toBe("words: 4");
    } finally {
      http.closeAllConnections();
      http.close();
    }
  });
});
