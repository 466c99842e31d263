import { z } from "zod";

/** Names become KV keys, subject tokens and OpenAI function names, so they share OpenAI's function-name alphabet. */
export const Name = z
  .string()
  .regex(/^[A-Za-z0-9_-]{1,64}$/, "must be 1-64 letters, digits, '_' or '-'");

const JsonSchemaObject = z.record(z.string(), z.unknown());

export const MockToolCall = z.object({
  name: z.string(),
  arguments: z.union([z.string(), z.record(z.string(), z.unknown())]).default({}),
});

/** One scripted reply of the mock provider. `{{last_tool_result}}` in content is replaced by the newest tool result. */
export const MockReply = z.object({
  content: z.string().nullable().optional(),
  tool_calls: z.array(MockToolCall).optional(),
  usage: z.object({ prompt_tokens: z.number().int().nonnegative(), completion_tokens: z.number().int().nonnegative() }).optional(),
});
export type MockReply = z.infer<typeof MockReply>;

export const LlmConfig = z
  .object({
    name: Name,
    provider: z.enum(["openai", "mock"]),
    model: z.string().min(1).optional(),
    base_url: z.string().url().optional(),
    /** Name of the environment variable holding the API key; the key itself never enters config or events. */
    api_key_env: z.string().default("OPENAI_API_KEY"),
    parameters: z.record(z.string(), z.unknown()).default({}),
    timeout_ms: z.number().int().positive().default(120_000),
    /** openai: ask for a streamed answer, whose tokens go live on `sc.stream.<runId>` as they arrive. */
    stream: z.boolean().default(true),
    /** mock only: reply N answers the run's N-th LLM call (the last reply repeats). */
    replies: z.array(MockReply).optional(),
    /** Prices per million tokens: every call of this llm then records its cost (LLMResponded.costUsd). */
    pricing: z
      .object({
        input_per_million_usd: z.number().nonnegative(),
        output_per_million_usd: z.number().nonnegative(),
        /** Cached prompt tokens; default: the input price. */
        cached_input_per_million_usd: z.number().nonnegative().optional(),
      })
      .strict()
      .optional(),
  })
  .strict()
  .superRefine((llm, ctx) => {
    if (llm.provider === "openai" && !llm.model) {
      ctx.addIssue({ code: "custom", path: ["model"], message: "an openai llm needs a model" });
    }
    if (llm.provider === "mock" && !(llm.replies && llm.replies.length > 0)) {
      ctx.addIssue({ code: "custom", path: ["replies"], message: "a mock llm needs at least one reply" });
    }
  });
export type LlmConfig = z.infer<typeof LlmConfig>;

export const CommandExecutor = z
  .object({
    runtime: z.enum(["bash", "node", "python"]),
    script: z.string().min(1),
    timeout_ms: z.number().int().positive().default(30_000),
    max_output_bytes: z.number().int().positive().default(64 * 1024),
    /** Environment variables passed through to the process (everything else is scrubbed). */
    env: z.array(z.string()).default([]),
  })
  .strict();
export type CommandExecutor = z.infer<typeof CommandExecutor>;

/**
 * A tool that sends the call's arguments as JSON to a URL and returns the response body. Retried (5xx, 429,
 * timeouts, lost connections) only when `idempotent`: otherwise a request that may have arrived is never sent twice.
 */
export const HttpExecutor = z
  .object({
    url: z.string().url(),
    method: z.enum(["GET", "POST", "PUT", "PATCH", "DELETE"]).default("POST"),
    headers: z.record(z.string(), z.string()).default({}),
    timeout_ms: z.number().int().positive().default(30_000),
    max_response_bytes: z.number().int().positive().default(64 * 1024),
    idempotent: z.boolean().default(false),
  })
  .strict();
export type HttpExecutor = z.infer<typeof HttpExecutor>;

export const Executor = z
  .object({ command: CommandExecutor.optional(), http: HttpExecutor.optional() })
  .strict()
  .refine((e) => (e.command === undefined) !== (e.http === undefined), { message: "an executor needs exactly one of command or http" });
export type Executor = z.infer<typeof Executor>;

/** One tool of an MCP server, as `smallchain apply` listed it (stored with the config, copied into each run). */
export const McpToolListing = z
  .object({ name: z.string().min(1), description: z.string().optional(), input_schema: JsonSchemaObject })
  .strict();
export type McpToolListing = z.infer<typeof McpToolListing>;

/** How to reach an MCP server: a command speaking stdio, or a streamable HTTP URL. */
export const McpServer = z
  .object({
    command: z.string().min(1).optional(),
    args: z.array(z.string()).default([]),
    /** stdio: environment variables passed through to the server (everything else is scrubbed). */
    env: z.array(z.string()).default([]),
    url: z.string().url().optional(),
    headers: z.record(z.string(), z.string()).default({}),
    /** How long one tool call may take. */
    timeout_ms: z.number().int().positive().default(60_000),
    /** How long starting or reaching the server, and listing its tools, may take. */
    connect_timeout_ms: z.number().int().positive().default(30_000),
    max_output_bytes: z.number().int().positive().default(64 * 1024),
  })
  .strict();
export type McpServer = z.infer<typeof McpServer>;

export const McpConfig = McpServer.extend({
  /** Only these of the server's tools are offered to agents (default: all). */
  include: z.array(z.string().min(1)).optional(),
  /** Filled in by `smallchain apply` from the server's tools/list; given in the file, the server is not asked. */
  tools: z.array(McpToolListing).optional(),
})
  .strict()
  .superRefine((m, ctx) => {
    if ((m.command === undefined) === (m.url === undefined)) {
      ctx.addIssue({ code: "custom", path: [], message: "an mcp tool needs exactly one of command (stdio) or url (streamable HTTP)" });
    }
  });
export type McpConfig = z.infer<typeof McpConfig>;

/**
 * Builtins the scheduler carries out itself (they wait for people or time, read the run's own state or start
 * and stop other runs); the rest run in the tool-worker.
 */
const SCHEDULER_BUILTIN_NAMES = ["human_input", "sleep_until", "check_current_spend_since", "spawn_task", "list_tasks", "wait_for", "cancel_task"] as const;
export const BuiltinName = z.enum(["add", "subtract", "multiply", "divide", ...SCHEDULER_BUILTIN_NAMES]);
export type BuiltinName = z.infer<typeof BuiltinName>;
export const SCHEDULER_BUILTINS: readonly BuiltinName[] = SCHEDULER_BUILTIN_NAMES;

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** A duration as milliseconds, or text like "500ms", "30s", "5m", "2h", "7d" (also "1h30m"). */
export const Duration = z.union([z.number().int().positive(), z.string()]).transform((value, ctx) => {
  if (typeof value === "number") return value;
  const text = value.replace(/\s+/g, "");
  const parts = [...text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join("") !== text) {
    ctx.addIssue({ code: "custom", message: `"${value}" is not a duration (examples: 90s, 5m, 2h, 1d, 1h30m)` });
    return z.NEVER;
  }
  const ms = parts.reduce((sum, p) => sum + Number(p[1]) * DURATION_UNITS[p[2]!]!, 0);
  if (ms <= 0) {
    ctx.addIssue({ code: "custom", message: `duration "${value}" must be longer than 0` });
    return z.NEVER;
  }
  return Math.round(ms);
});

/** What a run does when it reaches a hard limit. */
export const OnExceeded = z.enum(["fail", "pause"]);
export type OnExceeded = z.infer<typeof OnExceeded>;

/** What happens when nobody answers a wait in time: the agent is told it was rejected, or the call fails. */
export const OnTimeout = z.enum(["reject", "fail"]);
export type OnTimeout = z.infer<typeof OnTimeout>;

/**
 * `approval: required`, or with a deadline: `approval: { timeout: 1h, on_timeout: reject }`. Stored configs
 * hold the parsed form (`{ required, timeout, on_timeout }`), which parses again to itself.
 */
export const ApprovalConfig = z.preprocess(
  (v) => (v === "required" ? { required: true } : v === "none" ? { required: false } : v),
  z
    .object({ required: z.boolean().default(true), timeout: Duration.optional(), on_timeout: OnTimeout.default("reject") }, {
      error: 'must be "required", "none" or { timeout, on_timeout }',
    })
    .strict(),
);
export type ApprovalConfig = z.infer<typeof ApprovalConfig>;

/**
 * A tool whose result comes later from outside: its arguments and a one-time token are published on `subject`
 * and/or POSTed to `url`; the result arrives on `sc.callback.<token>` or `POST /callbacks/<token>`.
 */
export const CallbackExecutor = z
  .object({
    subject: z.string().regex(/^[^\s*>]+$/, "must be a NATS subject without wildcards").optional(),
    url: z.string().url().optional(),
    headers: z.record(z.string(), z.string()).default({}),
  })
  .strict()
  .refine((c) => c.subject !== undefined || c.url !== undefined, { message: "a callback needs a subject, a url, or both" });
export type CallbackExecutor = z.infer<typeof CallbackExecutor>;

export const ToolConfig = z
  .object({
    name: Name,
    description: z.string().optional(),
    parameters: JsonSchemaObject.optional(),
    builtin: BuiltinName.optional(),
    executor: Executor.optional(),
    callback: CallbackExecutor.optional(),
    /** An MCP server: each of its tools becomes a tool named `<name>__<tool>`. */
    mcp: McpConfig.optional(),
    /** Every call waits for a human's approval first (bound to the call's exact arguments). */
    approval: ApprovalConfig.optional(),
    /** For waits (human_input, callback): how long to wait, and what then. */
    timeout: Duration.optional(),
    on_timeout: OnTimeout.optional(),
  })
  .strict()
  .superRefine((tool, ctx) => {
    const kinds = [tool.builtin, tool.executor, tool.callback, tool.mcp].filter((k) => k !== undefined).length;
    if (kinds !== 1) {
      ctx.addIssue({ code: "custom", path: [], message: "a tool needs exactly one of builtin, executor, callback or mcp" });
    }
    if (tool.mcp && tool.parameters) {
      ctx.addIssue({ code: "custom", path: ["parameters"], message: "an mcp tool takes its tools' parameters from the server" });
    }
    if (tool.callback && !tool.parameters) {
      ctx.addIssue({ code: "custom", path: ["parameters"], message: "a callback tool needs a JSON schema in parameters" });
    }
    if (tool.executor && !tool.parameters) {
      ctx.addIssue({ code: "custom", path: ["parameters"], message: "an executor tool needs a JSON schema in parameters" });
    }
  });
export type ToolConfig = z.infer<typeof ToolConfig>;

/**
 * A tool reference in an agent: a tool's name; `{ tool: name, approval: required }` to require approval for
 * this agent's calls only; or `{ agent: name }` to delegate to another agent.
 */
export const AgentToolRef = z.union([
  Name,
  z.object({ tool: Name, approval: ApprovalConfig.optional() }).strict(),
  z.object({ agent: Name, description: z.string().optional(), approval: ApprovalConfig.optional() }).strict(),
]);
export type AgentToolRef = z.infer<typeof AgentToolRef>;

export const AgentConfig = z
  .object({
    name: Name,
    description: z.string().optional(),
    system_prompt: z.string().default(""),
    llm: Name,
    tools: z.array(AgentToolRef).default([]),
    max_steps: z.number().int().positive().default(50),
    /** Hard limits of each run of this agent (a run's own limits may be stricter). */
    max_tokens: z.number().int().positive().optional(),
    max_cost_usd: z.number().positive().optional(),
    max_duration: Duration.optional(),
    /** When a hard limit is reached: fail the run (default), or pause it until `smallchain resume`. */
    on_exceeded: OnExceeded.optional(),
    /** Spend of all this agent's runs per clock hour / day; a spent window pauses them until it rolls over. */
    budget: z.object({ per_hour_usd: z.number().positive().optional(), per_day_usd: z.number().positive().optional() }).strict().optional(),
  })
  .strict();
export type AgentConfig = z.infer<typeof AgentConfig>;

export const TaskConfig = z
  .object({ name: Name, user_message: z.string(), agent: Name })
  .strict();
export type TaskConfig = z.infer<typeof TaskConfig>;

export const RunConfig = z
  .object({ name: z.string().min(1).max(200), task: Name, message: z.string().optional() })
  .strict();
export type RunConfig = z.infer<typeof RunConfig>;

export const SmallchainConfig = z
  .object({
    llms: z.array(LlmConfig).default([]),
    agents: z.array(AgentConfig).default([]),
    tools: z.array(ToolConfig).default([]),
    tasks: z.array(TaskConfig).default([]),
    runs: z.array(RunConfig).default([]),
  })
  .strict();
export type SmallchainConfig = z.infer<typeof SmallchainConfig>;

export type ConfigKind = "llm" | "agent" | "tool" | "task";
