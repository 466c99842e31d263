import { McpConnectError, RetryableError, connectMcp, describeMcpServer, type Logger, type McpConnection, type McpServer } from "@smallchain/shared";
import type { ToolOutcome } from "./outcome.js";
import { capText } from "./output.js";

/**
 * Live MCP sessions, one per server config (a stdio server is one long-lived process). A session whose server
 * exits or drops is forgotten and the next call starts a new one.
 */
export class McpPool {
  private readonly sessions = new Map<string, Promise<McpConnection>>();
  private stopped = false;

  constructor(private readonly log: Logger) {}

  /**
   * Calls one tool. Not reaching the server throws RetryableError (the call was never sent). Anything after
   * the call was sent (an error result, a timeout, the server dying) is a failed call: it may have had its effect.
   */
  async call(server: McpServer, tool: string, args: unknown, signal: AbortSignal): Promise<ToolOutcome> {
    const where = `MCP server "${describeMcpServer(server)}"`;
    let session: McpConnection;
    try {
      session = await this.session(server);
    } catch (err) {
      const message = err instanceof McpConnectError ? err.message : `cannot reach ${where}: ${(err as Error).message}`;
      throw new RetryableError(message, undefined, { cause: err });
    }
    try {
      const result = await session.client.callTool(
        { name: tool, arguments: (args ?? {}) as Record<string, unknown> },
        undefined,
        { timeout: server.timeout_ms, signal },
      );
      const text = resultText(result);
      const output = capText(text, server.max_output_bytes, "output truncated");
      return result.isError ? { ok: false, error: output || `${tool} failed` } : { ok: true, output };
    } catch (err) {
      if (signal.aborted) return { ok: false, error: "cancelled" };
      const message = (err as Error).message;
      const tail = session.stderrTail();
      return { ok: false, error: `${where}, tool ${tool}: ${message}${tail && /closed/i.test(message) ? ` (stderr: ${tail})` : ""}` };
    }
  }

  private session(server: McpServer): Promise<McpConnection> {
    if (this.stopped) return Promise.reject(new Error("the tool worker is stopping"));
    const key = JSON.stringify(server);
    let session = this.sessions.get(key);
    if (!session) {
      session = connectMcp(server, "smallchain-tool-worker");
      this.sessions.set(key, session);
      session.then(
        (s) =>
          void s.closed.then(() => {
            if (this.sessions.get(key) === session) this.sessions.delete(key);
            if (!this.stopped) this.log.warn({ server: describeMcpServer(server) }, "MCP server went away; the next call starts it again");
          }),
        () => {
          if (this.sessions.get(key) === session) this.sessions.delete(key);
        },
      );
    }
    return session;
  }

  async close(): Promise<void> {
    this.stopped = true;
    const sessions = [...this.sessions.values()];
    this.sessions.clear();
    await Promise.allSettled(sessions.map(async (s) => (await s).close()));
  }
}

type ContentItem = { type: string; text?: string; mimeType?: string; resource?: { uri?: string; text?: string } };

/** What the model reads: the text parts joined; other parts named; structured content when there is no text. */
function resultText(result: Record<string, unknown>): string {
  const content = (result.content ?? []) as ContentItem[];
  const parts = content.map((c) => {
    if (c.type === "text") return c.text ?? "";
    if (c.type === "resource") return c.resource?.text ?? `[resource ${c.resource?.uri ?? ""}]`;
    return `[${c.type}${c.mimeType ? ` ${c.mimeType}` : ""}]`;
  });
  if (parts.length === 0 && result.structuredContent !== undefined) return JSON.stringify(result.structuredContent);
  if (parts.length === 0 && "toolResult" in result) return JSON.stringify(result.toolResult);
  return parts.join("\n");
}

