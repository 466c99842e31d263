import { ConfigError } from "../config/load.js";
import type { McpToolListing, SmallchainConfig, ToolConfig } from "../config/schema.js";
import { mcpToolName } from "../run/spec.js";
import { connectMcp, describeMcpServer } from "./connect.js";

/**
 * Lists the tools of every MCP server the config names (those without a listing yet) and stores the listing
 * in the config, filtered by `include`. Doing it at apply time keeps the scheduler free of I/O when it resolves
 * an agent: a run copies the listing into RunStarted, so the model sees the tools the server had at apply.
 * Throws ConfigError (nothing applied) if a server cannot be reached or an included tool does not exist.
 */
export async function discoverMcpTools(config: SmallchainConfig, file = "smallchain.yaml"): Promise<SmallchainConfig> {
  const issues: { path: string; message: string }[] = [];
  const tools = await Promise.all(
    config.tools.map(async (tool, i): Promise<ToolConfig> => {
      if (!tool.mcp || tool.mcp.tools) return tool;
      try {
        return { ...tool, mcp: { ...tool.mcp, tools: await listTools(tool) } };
      } catch (err) {
        issues.push({ path: `tools[${i}] (${tool.name}).mcp`, message: (err as Error).message });
        return tool;
      }
    }),
  );
  tools.forEach((tool, i) => {
    const names = new Map<string, string>();
    for (const t of tool.mcp?.tools ?? []) {
      const name = mcpToolName(tool.name, t.name);
      const other = names.get(name);
      if (other !== undefined) issues.push({ path: `tools[${i}] (${tool.name}).mcp`, message: `MCP tools "${other}" and "${t.name}" both become "${name}"` });
      names.set(name, t.name);
    }
  });
  if (issues.length > 0) throw new ConfigError(file, issues);
  return { ...config, tools };
}

async function listTools(tool: ToolConfig): Promise<McpToolListing[]> {
  const mcp = tool.mcp!;
  const connection = await connectMcp(mcp, "smallchain-apply");
  try {
    const listed: McpToolListing[] = [];
    let cursor: string | undefined;
    do {
      const page = await connection.client.listTools(cursor === undefined ? {} : { cursor }, { timeout: mcp.connect_timeout_ms });
      for (const t of page.tools) {
        listed.push({ name: t.name, input_schema: t.inputSchema as Record<string, unknown>, ...(t.description !== undefined && { description: t.description }) });
      }
      cursor = page.nextCursor;
    } while (cursor);
    if (!mcp.include) return listed;
    const missing = mcp.include.filter((name) => !listed.some((t) => t.name === name));
    if (missing.length > 0) {
      throw new Error(
        `MCP server "${describeMcpServer(mcp)}" has no tool ${missing.map((m) => `"${m}"`).join(", ")} (it has: ${listed.map((t) => t.name).join(", ") || "none"})`,
      );
    }
    return listed.filter((t) => mcp.include!.includes(t.name));
  } finally {
    await connection.close().catch(() => undefined);
  }
}
