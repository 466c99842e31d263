// A small MCP server for the tests, built with the SDK's server classes. Run as a process it speaks stdio;
// imported, `createMcpServer()` gives a server to put behind a streamable HTTP transport.
import { appendFileSync } from "node:fs";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { z } from "zod";

export function createMcpServer({ log } = {}) {
  const server = new McpServer({ name: "smallchain-test-mcp", version: "1.0.0" });
  server.registerTool(
    "read_file",
    { description: "read a file of the fake file system", inputSchema: { path: z.string() } },
    async ({ path }) => {
      if (log) appendFileSync(log, `read_file ${path} pid=${process.pid}\n`);
      if (path === "/missing") return { isError: true, content: [{ type: "text", text: `no such file: ${path}` }] };
      return { content: [{ type: "text", text: `contents of ${path}` }] };
    },
  );
  server.registerTool(
    "notes.count",
    { description: "count the words of a text", inputSchema: { text: z.string() } },
    async ({ text }) => ({ content: [{ type: "text", text: String(text.split(/\s+/).filter(Boolean).length) }] }),
  );
  server.registerTool("slow", { description: "takes a minute", inputSchema: {} }, async () => {
    await new Promise((r) => setTimeout(r, 60_000));
    return { content: [{ type: "text", text: "finally" }] };
  });
  server.registerTool("crash", { description: "the server dies", inputSchema: {} }, async () => {
    if (log) appendFileSync(log, `crash pid=${process.pid}\n`);
    process.stderr.write("about to crash\n");
    process.exit(7);
  });
  server.registerTool("whoami", { description: "the server's environment", inputSchema: {} }, async () => ({
    content: [{ type: "text", text: JSON.stringify({ pid: process.pid, secret: process.env.SC_TEST_SECRET ?? null, passed: process.env.SC_TEST_PASSED ?? null }) }],
  }));
  return server;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const log = process.argv[2];
  await createMcpServer({ log }).connect(new StdioServerTransport());
}
