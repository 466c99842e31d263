import { z } from "zod";
import { BlobRef, ChatMessage, ToolCallRecord } from "./run/messages.js";
import { AgentSnapshot } from "./run/spec.js";
import { OnTimeout } from "./config/schema.js";
import { LimitName, LimitRaise, Limits, Spend } from "./run/budget.js";

export const Usage = z.object({
  promptTokens: z.number().int().nonnegative(),
  completionTokens: z.number().int().nonnegative(),
  cachedTokens: z.number().int().nonnegative().default(0),
});
export type Usage = z.infer<typeof Usage>;

/**
 * The envelope of every event. `id` is deterministic (it is also the Nats-Msg-Id), so a retried writer
 * appends the same id and JetStream drops the duplicate. `seq` is not stored: it comes from JetStream.
 */
function event<T extends string, D extends z.ZodType>(type: T, data: D) {
  return z.object({
    id: z.string().min(1),
    type: z.literal(type),
    v: z.literal(1),
    runId: z.string().min(1),
    at: z.number(),
    causationId: z.string().optional(),
    /** W3C traceparent of the run's trace (RunRequested only): every span of the run continues it. */
    trace: z.string().max(128).optional(),
    /**
     * The work a decision sends out (LLMRequested, ToolCallRequested): its LlmCommand or ToolCommand, encoded. The
     * workers read it from the decision itself (the `Sc-Command` header names their kind), so no command is stored
     * apart from it; every other reader leaves the bytes undecoded. Copies of events (a fork's) never carry one.
     */
    command: z.custom<Uint8Array>((v) => v instanceof Uint8Array, "must be bytes (an encoded command)").optional(),
    data,
  });
}

export const ParentRef = z.object({ runId: z.string(), callId: z.string() });
export type ParentRef = z.infer<typeof ParentRef>;

/**
 * A run forked from another: its first `events` events are copies of the original's up to `atSeq`. Until they
 * are all in its stream, nothing is decided for it.
 */
export const ForkRef = z.object({ runId: z.string(), atSeq: z.number().int().positive(), events: z.number().int().positive() });
export type ForkRef = z.infer<typeof ForkRef>;

export const RunEvent = z.discriminatedUnion("type", [
  event(
    "RunRequested",
    z.object({
      agent: z.string(),
      task: z.string().optional(),
      name: z.string().optional(),
      input: z.string(),
      depth: z.number().int().nonnegative(),
      rootRunId: z.string(),
      parent: ParentRef.optional(),
      /** Hard limits of this run (with the agent's: the stricter wins). */
      limits: Limits.optional(),
      /** Spawned (spawn_task): the parent goes on without waiting, and hears of the end through ChildRunEnded. */
      detached: z.boolean().optional(),
      forkOf: ForkRef.optional(),
    }),
  ),
  event("RunStarted", z.object({ agent: AgentSnapshot })),
  event("LLMRequested", z.object({ step: z.number().int().positive(), llm: z.string(), messageCount: z.number().int().nonnegative() })),
  event(
    "LLMResponded",
    z.object({
      step: z.number().int().positive(),
      content: z.string().nullable(),
      toolCalls: z.array(ToolCallRecord),
      usage: Usage,
      model: z.string(),
      finishReason: z.string().nullable(),
      durationMs: z.number().nonnegative(),
      /** At the llm's configured prices; absent: unknown (counted as 0). */
      costUsd: z.number().nonnegative().optional(),
    }),
  ),
  event("LLMFailed", z.object({ step: z.number().int().positive(), error: z.string(), retryable: z.boolean() })),
  event(
    "ToolCallRequested",
    z.object({
      step: z.number().int().positive(),
      callId: z.string(),
      toolCallId: z.string(),
      tool: z.string(),
      args: z.unknown(),
      kind: z.enum(["tool", "agent", "invalid"]),
    }),
  ),
  event(
    "ToolCallAwaitingApproval",
    z.object({
      callId: z.string(),
      tool: z.string(),
      /** sha256 of the arguments: an approval may name it, so it approves exactly what it saw. */
      digest: z.string(),
      dueAt: z.number().optional(),
      onTimeout: OnTimeout.optional(),
    }),
  ),
  event("ToolCallApproved", z.object({ callId: z.string(), by: z.string().optional(), comment: z.string().optional() })),
  /** A rejection is the call's result: the agent reads who rejected it and why, and carries on. */
  event("ToolCallRejected", z.object({ callId: z.string(), by: z.string().optional(), comment: z.string().optional() })),
  event("HumanInputRequested", z.object({ callId: z.string(), question: z.string(), dueAt: z.number().optional(), onTimeout: OnTimeout.optional() })),
  event("HumanInputReceived", z.object({ callId: z.string(), answer: z.string(), by: z.string().optional() })),
  /** The call's arguments went out with a one-time token; its result comes back with that token. */
  event("ToolCallAwaitingCallback", z.object({ callId: z.string(), token: z.string(), dueAt: z.number().optional(), onTimeout: OnTimeout.optional() })),
  /** A durable timer of a call (sleep_until). Its due time lives in the run's stream; the timers bucket only wakes the scheduler. */
  event("TimerScheduled", z.object({ callId: z.string(), dueAt: z.number() })),
  /** A call's deadline passed: a sleep ends (completed), a wait times out (rejected or failed). Carries the call's result. */
  event(
    "TimerFired",
    z.object({ callId: z.string(), dueAt: z.number(), outcome: z.enum(["completed", "rejected", "failed"]), result: z.string() }),
  ),
  /** `childSpend`: a delegated child's result carries what it (and its descendants) spent, rolled up into the parent. */
  event(
    "ToolCallCompleted",
    z.object({
      callId: z.string(),
      /** The result, or with `resultRef` its preview: the whole is in the object store. */
      result: z.string(),
      resultRef: BlobRef.optional(),
      durationMs: z.number().nonnegative().optional(),
      childSpend: Spend.optional(),
    }),
  ),
  event("ToolCallFailed", z.object({ callId: z.string(), error: z.string(), childSpend: Spend.optional() })),
  /** `detached`: spawned by spawn_task, the call completes at once and the parent does not wait. */
  event(
    "ChildRunRequested",
    z.object({ callId: z.string(), childRunId: z.string(), agent: z.string(), input: z.string(), task: z.string().optional(), detached: z.boolean().optional() }),
  ),
  /** A spawned child ended: appended to its parent (wakes a wait_for), with what the child's tree spent. */
  event(
    "ChildRunEnded",
    z.object({
      childRunId: z.string(),
      status: z.enum(["Completed", "Failed", "Cancelled"]),
      output: z.string().optional(),
      error: z.string().optional(),
      spend: Spend,
    }),
  ),
  /** wait_for: the call waits until these spawned runs have ended. */
  event("TasksAwaited", z.object({ callId: z.string(), runIds: z.array(z.string()) })),
  /** cancel_task: the child is cancelled (an effect appends RunCancelled to it). */
  event("TaskCancelRequested", z.object({ callId: z.string(), childRunId: z.string() })),
  /**
   * A limit was reached before the next LLM call. `fail`: RunFailed follows; `pause`: the run is Paused until
   * resumed (by a person, or at `until` when a budget window rolls over).
   */
  event(
    "BudgetExceeded",
    z.object({ limit: LimitName, value: z.number(), used: z.number(), action: z.enum(["fail", "pause"]), until: z.number().optional() }),
  ),
  /** A paused run goes on: `raise` adds to its limits, `lift` drops limits for the rest of the run; `auto`: its window rolled over. */
  event(
    "RunResumed",
    z.object({ by: z.string().optional(), raise: LimitRaise.optional(), lift: z.array(LimitName).optional(), auto: z.boolean().optional() }),
  ),
  event("RunCompleted", z.object({ output: z.string() })),
  event("RunFailed", z.object({ reason: z.string() })),
  event("RunCancelled", z.object({ reason: z.string().optional() })),
]);
export type RunEvent = z.infer<typeof RunEvent>;

const KNOWN_TYPES: ReadonlySet<string> = new Set(RunEvent.options.map((o) => o.shape.type.value));

/** An event's envelope, checked cheaply (for what a typed writer wrote, see `decodeTyped`): a known type of version 1, with its data. */
export function isEventShaped(value: unknown): boolean {
  const e = value as Record<string, unknown> | null;
  return (
    typeof e === "object" &&
    e !== null &&
    typeof e.type === "string" &&
    KNOWN_TYPES.has(e.type) &&
    e.v === 1 &&
    typeof e.id === "string" &&
    typeof e.runId === "string" &&
    typeof e.at === "number" &&
    typeof e.data === "object" &&
    e.data !== null
  );
}
export type EventType = RunEvent["type"];
export type EventOf<T extends EventType> = Extract<RunEvent, { type: T }>;
export type EventData<T extends EventType> = EventOf<T>["data"];
/**
 * An event as read back from the stream, with its stream sequence. `result`: it is on the run's results subject (a
 * worker's result of a call), outside what decisions are guarded by.
 */
/** An event as stored: its stream sequence, and the subject it is on: the results (`result`), a worker kind's lane (`lane`), or `.ev`. */
export type RecordedEvent = RunEvent & { seq: number; result?: true; lane?: "llm" | "tool" };

/** The event as people read it (JSON lines, archives): without the bytes of the command it carried. */
export function shownEvent<E extends { command?: Uint8Array | undefined }>(event: E): Omit<E, "command"> {
  const { command: _command, ...shown } = event;
  return shown;
}

/** The first event of a top-level run. Appended with expected last sequence 0: a run is requested once. */
export function runRequested(
  runId: string,
  at: number,
  data: { agent: string; task: string; input: string; name?: string | undefined; limits?: Limits | undefined },
  trace?: string,
): EventOf<"RunRequested"> {
  const { name, limits, ...rest } = data;
  return {
    id: `${runId}:requested`,
    type: "RunRequested",
    v: 1,
    runId,
    at,
    ...(trace !== undefined && { trace }),
    data: {
      ...rest,
      depth: 0,
      rootRunId: runId,
      ...(name !== undefined && { name }),
      ...(limits !== undefined && Object.keys(limits).length > 0 && { limits }),
    },
  };
}

export const EVENT_TYPES = RunEvent.options.map((o) => o.shape.type.value) as EventType[];

