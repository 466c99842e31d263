import { createHash } from "node:crypto";
import { z } from "zod";
import {
  BuiltinName,
  CallbackExecutor,
  CommandExecutor,
  HttpExecutor,
  LlmConfig,
  McpServer,
  OnTimeout,
  SCHEDULER_BUILTINS,
  type AgentConfig,
  type ApprovalConfig,
  type ConfigKind,
  type TaskConfig,
  type ToolConfig,
} from "../config/schema.js";
import { Budget, Limits } from "./budget.js";

const JsonSchema = z.record(z.string(), z.unknown());

/** A wait's deadline: after `timeoutMs` the call is rejected (the agent is told) or fails. */
export const WaitPolicy = z.object({ timeoutMs: z.number().int().positive().optional(), onTimeout: OnTimeout });
export type WaitPolicy = z.infer<typeof WaitPolicy>;

const base = {
  name: z.string(),
  description: z.string(),
  parameters: JsonSchema,
  /** Present: every call waits for a human's approval first. */
  approval: WaitPolicy.optional(),
  /** For tools that wait (human_input, callback): how long, and what then. */
  wait: WaitPolicy.optional(),
};

export const ToolSnapshot = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("builtin"), ...base, builtin: BuiltinName }),
  z.object({ kind: z.literal("command"), ...base, command: CommandExecutor }),
  z.object({ kind: z.literal("callback"), ...base, callback: CallbackExecutor }),
  z.object({ kind: z.literal("agent"), ...base, agent: z.string() }),
  z.object({ kind: z.literal("http"), ...base, http: HttpExecutor }),
  /** One tool of an MCP server: `name` is what the model calls, `mcp.tool` what the server calls it. */
  z.object({ kind: z.literal("mcp"), ...base, mcp: z.object({ server: McpServer, tool: z.string() }) }),
]);
export type ToolSnapshot = z.infer<typeof ToolSnapshot>;

/** Whether a tool-worker runs the tool (builtins like add, command, http and mcp tools), rather than the scheduler or a child run. */
export function runsInToolWorker(tool: ToolSnapshot): boolean {
  return (
    tool.kind === "command" ||
    tool.kind === "http" ||
    tool.kind === "mcp" ||
    (tool.kind === "builtin" && !SCHEDULER_BUILTINS.includes(tool.builtin))
  );
}

/** Whether running the tool may change the world: its result is remembered so a redelivered command does not run it again. */
export function hasSideEffects(tool: ToolSnapshot): boolean {
  return tool.kind === "command" || tool.kind === "http" || tool.kind === "mcp";
}

const FUNCTION_NAME = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * The name the model calls an MCP server's tool by: `<tool>__<mcpTool>`, in OpenAI's function-name alphabet
 * (other characters become '_'); a name over 64 characters is cut and ends with a hash of the full one.
 */
export function mcpToolName(tool: string, mcpTool: string): string {
  const full = `${tool}__${mcpTool.replace(/[^A-Za-z0-9_-]/g, "_")}`;
  if (FUNCTION_NAME.test(full)) return full;
  const hash = createHash("sha256").update(`${tool}\u0000${mcpTool}`).digest("hex").slice(0, 8);
  return `${full.slice(0, 64 - 9)}_${hash}`;
}

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
  /** Hard limits besides maxSteps (absent in runs started before they existed). */
  limits: Limits.optional(),
  budget: Budget.optional(),
});
export type AgentSnapshot = z.infer<typeof AgentSnapshot>;

const twoNumbers = {
  type: "object",
  properties: { a: { type: "number" }, b: { type: "number" } },
  required: ["a", "b"],
  additionalProperties: false,
};

const TIME = { type: "string", description: "an ISO 8601 timestamp, e.g. 2026-01-31T09:00:00Z" };
const RUN_IDS = { type: "array", items: { type: "string" }, description: "run ids returned by spawn_task" };

/** Builtins an agent uses to watch its spend and to start, follow and stop runs of its own. */
const SELF_MANAGEMENT = {
  check_current_spend_since: {
    description:
      "how much this run and all runs of its agent have spent (US dollars, tokens) since a time, and how much budget remains (counted from the start of the hour the time falls in)",
    parameters: { type: "object", properties: { time: TIME }, required: ["time"], additionalProperties: false },
  },
  spawn_task: {
    description: "start another agent (or a task) in the background, without waiting; returns its run id (see list_tasks, wait_for, cancel_task)",
    parameters: {
      type: "object",
      properties: {
        agent: { type: "string", description: "the agent to run (or give task)" },
        task: { type: "string", description: "a task to run (or give agent)" },
        message: { type: "string", description: "what it should do, with everything it needs to know" },
      },
      required: ["message"],
      additionalProperties: false,
    },
  },
  list_tasks: {
    description: "the runs this run spawned: id, agent, status and output",
    parameters: { type: "object", properties: {}, additionalProperties: false },
  },
  wait_for: {
    description: "wait until the given spawned runs have finished; returns their outputs",
    parameters: { type: "object", properties: { run_ids: RUN_IDS }, required: ["run_ids"], additionalProperties: false },
  },
  cancel_task: {
    description: "cancel a spawned run (and everything it started)",
    parameters: { type: "object", properties: { run_id: { type: "string" } }, required: ["run_id"], additionalProperties: false },
  },
} as const;

export const BUILTIN_TOOLS: Record<BuiltinName, { description: string; parameters: Record<string, unknown> }> = {
  add: { description: "add two numbers: a + b", parameters: twoNumbers },
  subtract: { description: "subtract b from a: a - b", parameters: twoNumbers },
  multiply: { description: "multiply two numbers: a * b", parameters: twoNumbers },
  divide: { description: "divide a by b: a / b", parameters: twoNumbers },
  human_input: {
    description: "ask a human a question and wait for the answer (may take minutes to days)",
    parameters: {
      type: "object",
      properties: { question: { type: "string", description: "the question, with the context the human needs to answer it" } },
      required: ["question"],
      additionalProperties: false,
    },
  },
  sleep_until: {
    description: "pause until a point in time, then carry on (the run holds no resources meanwhile)",
    parameters: {
      type: "object",
      properties: { time: { type: "string", description: "when to wake up: an ISO 8601 timestamp, e.g. 2026-01-31T09:00:00Z" } },
      required: ["time"],
      additionalProperties: false,
    },
  },
  ...SELF_MANAGEMENT,
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
  const tools = agent.tools.flatMap((ref): ToolSnapshot[] => {
    if (typeof ref !== "string" && "agent" in ref) {
      const target = lookup.agent(ref.agent);
      if (!target) throw notFound(lookup, "agent", ref.agent, owner);
      const description =
        ref.description ?? target.description ?? `delegate a task to the agent "${target.name}": ${firstLine(target.system_prompt)}`;
      return [
        withApproval({ kind: "agent", name: target.name, description, parameters: AGENT_TOOL_PARAMETERS, agent: target.name }, ref.approval),
      ];
    }
    const toolName = typeof ref === "string" ? ref : ref.tool;
    const tool = lookup.tool(toolName);
    if (!tool) throw notFound(lookup, "tool", toolName, owner);
    return toolSnapshots(tool).map((snapshot) => withApproval(snapshot, typeof ref === "string" ? undefined : ref.approval));
  });
  const limits: Limits = {
    ...(agent.max_tokens !== undefined && { maxTokens: agent.max_tokens }),
    ...(agent.max_cost_usd !== undefined && { maxCostUsd: agent.max_cost_usd }),
    ...(agent.max_duration !== undefined && { maxDurationMs: agent.max_duration }),
    ...(agent.on_exceeded !== undefined && { onExceeded: agent.on_exceeded }),
  };
  const budget: Budget | undefined = agent.budget && {
    ...(agent.budget.per_hour_usd !== undefined && { perHourUsd: agent.budget.per_hour_usd }),
    ...(agent.budget.per_day_usd !== undefined && { perDayUsd: agent.budget.per_day_usd }),
  };
  return {
    name: agent.name,
    systemPrompt: agent.system_prompt,
    maxSteps: agent.max_steps,
    llm,
    tools,
    ...(Object.keys(limits).length > 0 && { limits }),
    ...(budget && Object.keys(budget).length > 0 && { budget }),
  };
}

/** An agent's own approval setting wins over the tool's. */
function withApproval(tool: ToolSnapshot, override: ApprovalConfig | undefined): ToolSnapshot {
  if (override === undefined) return tool;
  const { approval: _a, ...rest } = tool;
  const approval = approvalPolicy(override);
  return (approval ? { ...rest, approval } : rest) as ToolSnapshot;
}

function approvalPolicy(approval: ApprovalConfig | undefined): WaitPolicy | undefined {
  if (!approval?.required) return undefined;
  const timeout = "timeout" in approval ? approval.timeout : undefined;
  const onTimeout = "on_timeout" in approval && approval.on_timeout ? approval.on_timeout : "reject";
  return { onTimeout, ...(timeout !== undefined && { timeoutMs: timeout }) };
}

/** A config tool as the tools a run offers the model: one, or for an MCP server one per listed tool. */
function toolSnapshots(tool: ToolConfig): ToolSnapshot[] {
  if (!tool.mcp) return [toolSnapshot(tool)];
  const { include: _i, tools: listed, ...server } = tool.mcp;
  if (!listed) throw new ResolveError(`tool "${tool.name}": the MCP server's tools were never listed (apply the file again with smallchain apply)`);
  const approval = approvalPolicy(tool.approval);
  return listed.map((t) => ({
    kind: "mcp",
    name: mcpToolName(tool.name, t.name),
    description: t.description ?? tool.description ?? t.name,
    parameters: t.input_schema,
    mcp: { server, tool: t.name },
    ...(approval && { approval }),
  }));
}

function toolSnapshot(tool: ToolConfig): ToolSnapshot {
  const approval = approvalPolicy(tool.approval);
  const policy = {
    ...(approval && { approval }),
    ...((tool.timeout !== undefined || tool.on_timeout !== undefined) && {
      wait: { onTimeout: tool.on_timeout ?? "fail", ...(tool.timeout !== undefined && { timeoutMs: tool.timeout }) },
    }),
  };
  if (tool.builtin) {
    const builtin = BUILTIN_TOOLS[tool.builtin];
    return {
      kind: "builtin",
      name: tool.name,
      description: tool.description ?? builtin.description,
      parameters: tool.parameters ?? builtin.parameters,
      builtin: tool.builtin,
      ...policy,
    };
  }
  const common = { name: tool.name, description: tool.description ?? tool.name, parameters: tool.parameters ?? { type: "object" }, ...policy };
  if (tool.executor?.command) return { kind: "command", ...common, command: tool.executor.command };
  if (tool.executor?.http) return { kind: "http", ...common, http: tool.executor.http };
  if (tool.callback) return { kind: "callback", ...common, callback: tool.callback };
  throw new ResolveError(`tool "${tool.name}" has no executor`);
}

function firstLine(text: string): string {
  return text.split("\n")[0]?.slice(0, 200) ?? "";
}
