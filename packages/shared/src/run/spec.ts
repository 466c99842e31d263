import { z } from "zod";
import { BuiltinName, CommandExecutor, LlmConfig, type AgentConfig, type ConfigKind, type TaskConfig, type ToolConfig } from "../config/schema.js";

const JsonSchema = z.record(z.string(), z.unknown());

export const ToolSnapshot = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("builtin"), name: z.string(), description: z.string(), parameters: JsonSchema, builtin: BuiltinName }),
  z.object({ kind: z.literal("command"), name: z.string(), description: z.string(), parameters: JsonSchema, command: CommandExecutor }),
  z.object({ kind: z.literal("agent"), name: z.string(), description: z.string(), parameters: JsonSchema, agent: z.string() }),
]);
export type ToolSnapshot = z.infer<typeof ToolSnapshot>;

/**
 * What a run needs of the config, copied into its RunStarted event: a run keeps the agent it started with,
 * whatever is applied later, and a replay needs no config.
 */
export const AgentSnapshot = z.object({
  name: z.string(),
  systemPrompt: z.string(),
  maxSteps: z.number().int().positive(),
  llm: z.lazy(() => LlmConfig),
  tools: z.array(ToolSnapshot),
});
export type AgentSnapshot = z.infer<typeof AgentSnapshot>;

const twoNumbers = {
  type: "object",
  properties: { a: { type: "number" }, b: { type: "number" } },
  required: ["a", "b"],
  additionalProperties: false,
};

export const BUILTIN_TOOLS: Record<BuiltinName, { description: string; parameters: Record<string, unknown> }> = {
  add: { description: "add two numbers: a + b", parameters: twoNumbers },
  subtract: { description: "subtract b from a: a - b", parameters: twoNumbers },
  multiply: { description: "multiply two numbers: a * b", parameters: twoNumbers },
  divide: { description: "divide a by b: a / b", parameters: twoNumbers },
};

export const AGENT_TOOL_PARAMETERS = {
  type: "object",
  properties: { message: { type: "string", description: "what the agent should do, with everything it needs to know" } },
  required: ["message"],
  additionalProperties: false,
};

export type ConfigLookup = {
  llm(name: string): LlmConfig | undefined;
  agent(name: string): AgentConfig | undefined;
  tool(name: string): ToolConfig | undefined;
  task(name: string): TaskConfig | undefined;
  names(kind: ConfigKind): string[];
};

/** A reference that the applied config cannot satisfy; the message names what is missing and what exists. */
export class ResolveError extends Error {
  override name = "ResolveError";
}

export function notFound(lookup: ConfigLookup, kind: ConfigKind, name: string, owner?: string): ResolveError {
  const have = lookup.names(kind).join(", ") || "none";
  return new ResolveError(`${owner ? `${owner}: ` : ""}${kind} "${name}" not found in the applied config (${kind}s: ${have})`);
}

export function resolveAgent(name: string, lookup: ConfigLookup): AgentSnapshot {
  const agent = lookup.agent(name);
  if (!agent) throw notFound(lookup, "agent", name);
  const owner = `agent "${name}"`;
  const llm = lookup.llm(agent.llm);
  if (!llm) throw notFound(lookup, "llm", agent.llm, owner);
  const tools = agent.tools.map((ref): ToolSnapshot => {
    if (typeof ref !== "string") {
      const target = lookup.agent(ref.agent);
      if (!target) throw notFound(lookup, "agent", ref.agent, owner);
      const description =
        ref.description ?? target.description ?? `delegate a task to the agent "${target.name}": ${firstLine(target.system_prompt)}`;
      return { kind: "agent", name: target.name, description, parameters: AGENT_TOOL_PARAMETERS, agent: target.name };
    }
    const tool = lookup.tool(ref);
    if (!tool) throw notFound(lookup, "tool", ref, owner);
    if (tool.builtin) {
      const builtin = BUILTIN_TOOLS[tool.builtin];
      return {
        kind: "builtin",
        name: tool.name,
        description: tool.description ?? builtin.description,
        parameters: tool.parameters ?? builtin.parameters,
        builtin: tool.builtin,
      };
    }
    if (tool.executor?.command) {
      return {
        kind: "command",
        name: tool.name,
        description: tool.description ?? tool.name,
        parameters: tool.parameters ?? { type: "object" },
        command: tool.executor.command,
      };
    }
    throw new ResolveError(`tool "${tool.name}" has no executor`);
  });
  return { name: agent.name, systemPrompt: agent.system_prompt, maxSteps: agent.max_steps, llm, tools };
}

function firstLine(text: string): string {
  return text.split("\n")[0]?.slice(0, 200) ?? "";
}
