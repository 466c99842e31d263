import { expandSecrets } from "../secrets.js";
import type { Client as McpClient } from "@modelcontextprotocol/sdk/client/index.js";
import type { McpServer } from "../config/schema.js";

export type { McpClient };

const PASSED_THROUGH_ENV = ["PATH", "HOME", "LANG", "TZ"];
const STDERR_TAIL_CHARS = 1000;

/** An MCP server as people know it: its command line, or its URL. */
export function describeMcpServer(server: Pick<McpServer, "command" | "args" | "url">): string {
  return server.url ?? [server.command ?? "", ...server.args].join(" ");
}

/** A connection to an MCP server. `closed` settles when the server goes away (a stdio server exits, or we close). */
export type McpConnection = {
  client: McpClient;
  /** The last lines the server wrote on stderr (stdio only), for error messages. */
  stderrTail(): string;
  closed: Promise<void>;
  close(): Promise<void>;
};

/**
 * Starts (stdio) or reaches (streamable HTTP) an MCP server and initialises a session. A stdio server gets a
 * scrubbed environment: PATH, HOME, LANG, TZ and the names listed in `env`. The SDK is loaded on first use, so
 * processes that never talk to MCP do not pay for it.
 */
export async function connectMcp(server: McpServer, clientName: string): Promise<McpConnection> {
  const { Client } = await import("@modelcontextprotocol/sdk/client/index.js");
  const client = new Client({ name: clientName, version: "0.1.0" });
  let stderr = "";
  let transport;
  if (server.command !== undefined) {
    const { StdioClientTransport } = await import("@modelcontextprotocol/sdk/client/stdio.js");
    const env: Record<string, string> = {};
    for (const name of [...PASSED_THROUGH_ENV, ...server.env]) {
      const value = process.env[name];
      if (value !== undefined) env[name] = value;
    }
    const stdio = new StdioClientTransport({ command: server.command, args: server.args, env, stderr: "pipe" });
    stdio.stderr?.on("data", (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-STDERR_TAIL_CHARS);
    });
    transport = stdio;
  } else {
    const { StreamableHTTPClientTransport } = await import("@modelcontextprotocol/sdk/client/streamableHttp.js");
    let secretHeaders: Record<string, string>;
    try {
      secretHeaders = expandSecrets(server.headers);
    } catch (err) {
      throw new McpConnectError(`cannot reach MCP server "${describeMcpServer(server)}": ${(err as Error).message}`, { cause: err });
    }
    transport = new StreamableHTTPClientTransport(new URL(server.url!), { requestInit: { headers: secretHeaders } });
  }
  let onClosed!: () => void;
  const closed = new Promise<void>((resolve) => (onClosed = resolve));
  client.onclose = () => onClosed();
  try {
    await client.connect(transport, { timeout: server.connect_timeout_ms });
  } catch (err) {
    await client.close().catch(() => undefined);
    const tail = stderr.trim();
    throw new McpConnectError(
      `cannot reach MCP server "${describeMcpServer(server)}": ${(err as Error).message}${tail ? ` (stderr: ${tail})` : ""}`,
      { cause: err },
    );
  }
  return { client, stderrTail: () => stderr.trim(), closed, close: () => client.close() };
}

/** The server could not be started or reached, or did not complete the MCP handshake. */
export class McpConnectError extends Error {
  override name = "McpConnectError";
}
