import { z } from "zod";
import { LlmConfig } from "./config/schema.js";
import { ChatMessage } from "./run/messages.js";
import { ToolSnapshot, type AgentSnapshot } from "./run/spec.js";
import { Limits } from "./run/budget.js";
import { CallId, CommandId, RunId } from "./ids.js";

/** A tool as the model is told of it. */
export const LlmTool = z.object({ name: z.string(), description: z.string(), parameters: z.record(z.string(), z.unknown()) });
export type LlmTool = z.infer<typeof LlmTool>;

/** What an LLM call needs of the run's agent: its llm and its tools. */
export type LlmAgent = { llm: LlmConfig; tools: LlmTool[] };

/** The llm and tools of an agent snapshot (a run's RunStarted holds it). */
export function llmAgentOf(agent: AgentSnapshot): LlmAgent {
  return { llm: agent.llm, tools: agent.tools.map((t) => ({ name: t.name, description: t.description, parameters: t.parameters })) };
}

/**
 * Work for the llm-worker. It carries a reference to the context window (run, step, message count),
 * never the window itself, so its size does not grow with the run. Handled at least once; the result
 * event's deterministic id makes a repeated handling append nothing new.
 */
export const LlmCommand = z.object({
  id: CommandId,
  runId: RunId,
  step: z.number().int().positive(),
  messageCount: z.number().int().nonnegative(),
  /**
   * The agent's llm and tools, only in a command whose delta is its whole window (a worker that never saw the
   * run reads nothing for it, usually the first call). Without them they are the run's agent snapshot, which a
   * worker learns with the window: from the command that carried them, or from the run's RunStarted. A run's
   * agent never changes, and re-encoding its config and tool schemas into every command cost more than the rest
   * of the command.
   */
  llm: LlmConfig.optional(),
  tools: z.array(LlmTool).optional(),
  /**
   * The window's newest messages (those since the previous LLM call), when small: a worker that has the rest
   * of the window needs no read of the run's stream.
   */
  delta: z.array(ChatMessage).optional(),
});
export type LlmCommand = z.infer<typeof LlmCommand>;
/** An LLM command with its agent's llm and tools in place, as providers get it. */
export type ResolvedLlmCommand = LlmCommand & LlmAgent;

/** Work for the tool-worker: one tool call. `id` (run id + call id) is the idempotency key passed to the tool. */
export const ToolCommand = z.object({
  id: CommandId,
  runId: RunId,
  callId: CallId,
  step: z.number().int().positive(),
  tool: ToolSnapshot,
  args: z.unknown(),
  /** Callback tools: the one-time token the outside answers with. */
  token: z.string().optional(),
});
export type ToolCommand = z.infer<typeof ToolCommand>;

/** A command's envelope, checked cheaply (for what a typed writer wrote, see `decodeTyped`). */
export function isCommandShaped(value: unknown): boolean {
  const c = value as Record<string, unknown> | null;
  return typeof c === "object" && c !== null && typeof c.id === "string" && typeof c.runId === "string" && typeof c.step === "number";
}

/** What any NATS client may publish on `sc.tasks.<task>` to start a run (JSON or msgpack). */
export const TaskRequest = z
  .object({
    message: z.string().optional(),
    name: z.string().max(200).optional(),
    runId: RunId.optional(),
    /** Hard limits of this run (with the agent's: the stricter wins), as in `smallchain run --max-cost`. */
    limits: Limits.optional(),
  })
  .strict();
export type TaskRequest = z.infer<typeof TaskRequest>;
