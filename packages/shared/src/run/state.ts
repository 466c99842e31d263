import { createHash } from "node:crypto";
import type { ForkRef, ParentRef, RecordedEvent, RunEvent } from "../events.js";
import type { Lane } from "../names.js";
import type { ChatMessage, ToolCallRecord } from "./messages.js";
import type { AgentSnapshot } from "./spec.js";
import { NO_SPEND, addSpend, roundUsd, type LimitName, type Limits, type Spend } from "./budget.js";

/** `Paused`: a limit or a budget window stopped the run before its next LLM call, until it is resumed. */
export type RunStatus = "Requested" | "Running" | "Paused" | "Completed" | "Failed" | "Cancelled";
export const TERMINAL_STATUSES: readonly RunStatus[] = ["Completed", "Failed", "Cancelled"];

/**
 * Where one call stands. `pending`: the model asked for it, the scheduler has not recorded it yet; `requested`:
 * recorded (a worker runs it, or a follow-up is still to be recorded); `awaiting*`/`sleeping`: waiting for a
 * person, the outside or a time; `approved`: may now run. The last three are results.
 */
export type CallStatus =
  | "pending"
  | "requested"
  | "awaitingApproval"
  | "approved"
  | "awaitingHuman"
  | "awaitingCallback"
  | "sleeping"
  | "delegated"
  | "awaitingTasks"
  | "completed"
  | "failed"
  | "rejected";

export const WAITING_CALL_STATUSES: readonly CallStatus[] = ["awaitingApproval", "awaitingHuman", "awaitingCallback", "sleeping", "awaitingTasks"];

/**
 * Whether a worker may still append a result for the run: its LLM call, or a tool call sent to the tool-worker
 * (requested, or approved), has no result folded yet. Only then can a result land unseen before a decision.
 */
export function awaitsWorkers(state: Pick<RunState, "turn">): boolean {
  const turn = state.turn;
  return turn.phase === "llm" || (turn.phase === "tools" && turn.calls.some((c) => c.status === "requested" || c.status === "approved"));
}

export function isCallDone(call: Pick<CallState, "status">): boolean {
  return call.status === "completed" || call.status === "failed" || call.status === "rejected";
}

/** When a wait ends by itself: `wake` ends a sleep; `reject`/`fail` end a wait nobody answered. */
export type Deadline = { dueAt: number; onTimeout: "wake" | "reject" | "fail" };

/** One tool call of the current step. */
export type CallState = {
  callId: string;
  toolCallId: string;
  tool: string;
  arguments: string;
  status: CallStatus;
  childRunId?: string;
  deadline?: Deadline;
  /** sha256 of the callback token: the view never holds the token itself. */
  tokenDigest?: string;
  /** wait_for: the spawned runs the call waits for. */
  awaits?: string[];
};

/** A run this run spawned (spawn_task), as list_tasks and wait_for see it. */
export type ChildState = {
  runId: string;
  callId: string;
  agent: string;
  status: "Running" | "Completed" | "Failed" | "Cancelled";
  /** Its output or error, clipped to MAX_CHILD_OUTPUT characters (the view must stay small). */
  output?: string;
  error?: string;
  /** cancel_task asked for it to be cancelled. */
  cancelRequested?: boolean;
};

export const MAX_CHILD_OUTPUT = 8_000;

/** Why a run is paused, and when it goes on by itself (a budget window's end). */
export type Pause = { limit: LimitName; value: number; used: number; until?: number };

/** Where the current step stands: waiting for the model, or for the tool calls the model asked for. */
export type Turn =
  | { phase: "idle" }
  | { phase: "llm"; step: number }
  | { phase: "llmFailed"; step: number; error: string }
  | { phase: "answered"; step: number; content: string | null }
  | { phase: "tools"; step: number; calls: CallState[] };

/**
 * The run view: a pure fold of the run's events. It never grows with the run's length (only the current
 * step's calls are kept), so it fits one KV value however long the run lives.
 */
export type RunState = {
  runId: string;
  name?: string;
  task?: string;
  agentName: string;
  input: string;
  depth: number;
  rootRunId: string;
  parent?: ParentRef;
  /** The run's W3C traceparent, when it was requested with tracing on. */
  trace?: string;
  /** A fork: the run it was copied from, where, and how many copied events begin its stream. */
  forkOf?: ForkRef;
  status: RunStatus;
  agent?: AgentSnapshot;
  /** LLM calls requested so far. */
  step: number;
  turn: Turn;
  /** Context-window length: messages 0..messageCount-1 exist. */
  messageCount: number;
  /** The newest tool result, for the mock provider's templates and `describe`. */
  lastToolResult?: string;
  usage: { promptTokens: number; completionTokens: number; cachedTokens: number; totalTokens: number };
  /** Own LLM spend in US dollars (calls of llms without prices count 0). */
  costUsd: number;
  /** What finished child runs (and theirs) spent, rolled up when they end. */
  descendants: Spend;
  /** The run's own hard limits (RunRequested); the agent's are in its snapshot. */
  limits?: Limits;
  /** Spawned by its parent, which does not wait for it. */
  detached?: boolean;
  pause?: Pause;
  /** Resumes so far; what they added to the limits, and the limits they lifted. */
  resumes: number;
  raised?: { steps: number; tokens: number; costUsd: number; durationMs: number };
  lifted?: LimitName[];
  /** Runs spawned by this run (spawn_task), oldest first. */
  children?: ChildState[];
  output?: string;
  error?: string;
  createdAt: number;
  updatedAt: number;
  /** Messages added since the last LLMRequested: the next LLM command carries them (bounded by one step). */
  newMessages: ChatMessage[];
  /** The messages the current LLM call adds to the window it had at the previous call. */
  llmDelta: ChatMessage[];
  /** Stream sequence of the last folded event (on either of the run's subjects): where reading the run resumes. */
  lastSeq: number;
  /**
   * Stream sequence of the last folded event on each of the run's lanes (see `laneOf`): `guardSeq` on `.ev`, the
   * others on `.llm` and `.tool` (0: none yet). A write made from this state goes to its lane, expecting that lane's.
   */
  guardSeq: number;
  llmSeq: number;
  toolSeq: number;
  eventCount: number;
};

export function isTerminal(state: Pick<RunState, "status">): boolean {
  return TERMINAL_STATUSES.includes(state.status);
}

/** A fork whose copied events are not all in its stream yet: nothing may be decided or carried out for it. */
export function isCopying(state: Pick<RunState, "forkOf" | "eventCount">): boolean {
  return state.forkOf !== undefined && state.eventCount < state.forkOf.events;
}

/**
 * The status people see: a running run that waits for someone says so (AwaitingApproval, AwaitingHuman,
 * AwaitingCallback, Sleeping), in that order of urgency when one step waits for several things.
 */
export function displayStatus(state: Pick<RunState, "status" | "turn">): string {
  if (state.status !== "Running" || state.turn.phase !== "tools") return state.status;
  const statuses = new Set(state.turn.calls.map((c) => c.status));
  if (statuses.has("awaitingApproval")) return "AwaitingApproval";
  if (statuses.has("awaitingHuman")) return "AwaitingHuman";
  if (statuses.has("awaitingCallback")) return "AwaitingCallback";
  if (statuses.has("sleeping")) return "Sleeping";
  if (statuses.has("awaitingTasks")) return "AwaitingTasks";
  return state.status;
}

/** The state before any event; only RunRequested may be folded into it. */
export function initialState(runId: string): RunState {
  return {
    runId,
    agentName: "",
    input: "",
    depth: 0,
    rootRunId: runId,
    status: "Requested",
    step: 0,
    turn: { phase: "idle" },
    messageCount: 0,
    usage: { promptTokens: 0, completionTokens: 0, cachedTokens: 0, totalTokens: 0 },
    costUsd: 0,
    descendants: NO_SPEND,
    resumes: 0,
    createdAt: 0,
    updatedAt: 0,
    newMessages: [],
    llmDelta: [],
    lastSeq: 0,
    guardSeq: 0,
    llmSeq: 0,
    toolSeq: 0,
    eventCount: 0,
  };
}

/** Where a state keeps each lane's last sequence. */
const LANE_FIELD = { ev: "guardSeq", llm: "llmSeq", tool: "toolSeq" } as const;

/** The last sequence of one of the run's lanes, as the state knows it: what a write to that lane expects. */
export function laneSeq(state: Pick<RunState, "guardSeq" | "llmSeq" | "toolSeq">, lane: Lane): number {
  return state[LANE_FIELD[lane]];
}

/**
 * The lane every write made from this state goes to: decisions and inputs alike (see `Names.runSubject`). A function
 * of the state alone, so two writers at one state write to one lane and only one of them lands; and every outcome
 * `decide` can have at a state is written to it. Where the next decision is an LLM call (the LLM workers read the
 * command from the lane): `llm`. While a step's calls are out (tool commands, approvals, questions, timers, children,
 * timeouts): `tool`. Otherwise (a request, a pause, an answer or a failure to record, a run that ended): `ev`.
 */
export function laneOf(state: Pick<RunState, "status" | "turn" | "forkOf" | "eventCount">): Lane {
  // Only what a stored view holds too (no agent snapshot): Control checks its inputs against the view and what followed.
  if (state.status !== "Running" || isCopying(state)) return "ev";
  const turn = state.turn;
  switch (turn.phase) {
    case "idle":
    case "llm":
      return "llm";
    case "tools":
      return turn.calls.every(isCallDone) ? "llm" : "tool";
    case "llmFailed":
    case "answered":
      return "ev";
    default:
      return assertNever(turn);
  }
}

/**
 * The state past an event that could not be decoded: it still occupies its place in the stream, so reading resumes
 * after it and, on a lane (`lane`; undefined: the results), writes to that lane are guarded past it.
 */
export function pastInvalid(state: RunState, seq: number, lane: Lane | undefined): RunState {
  const field = lane && LANE_FIELD[lane];
  if (seq <= state.lastSeq && (!field || seq <= state[field])) return state;
  return { ...state, lastSeq: Math.max(state.lastSeq, seq), ...(field && { [field]: Math.max(state[field], seq) }) };
}

/** Folds one recorded event into the run view. Pure; events at or below `lastSeq` are already in it. */
export function evolve(state: RunState, event: RecordedEvent): RunState {
  if (event.seq <= state.lastSeq) return state;
  const added = messagesOf(state, event);
  const next: RunState = {
    ...apply(state, event),
    messageCount: state.messageCount + added.length,
    lastSeq: event.seq,
    guardSeq: event.result || event.lane ? state.guardSeq : event.seq,
    llmSeq: event.lane === "llm" ? event.seq : state.llmSeq,
    toolSeq: event.lane === "tool" ? event.seq : state.toolSeq,
    eventCount: state.eventCount + 1,
    updatedAt: event.at,
  };
  if (event.type === "LLMRequested") {
    next.llmDelta = state.newMessages;
    next.newMessages = [];
  } else if (added.length > 0) {
    next.newMessages = [...state.newMessages, ...added];
  }
  return next;
}

function apply(state: RunState, event: RunEvent): RunState {
  switch (event.type) {
    case "RunRequested": {
      const d = event.data;
      return {
        ...state,
        agentName: d.agent,
        input: d.input,
        depth: d.depth,
        rootRunId: d.rootRunId,
        createdAt: event.at,
        ...(d.task !== undefined && { task: d.task }),
        ...(d.name !== undefined && { name: d.name }),
        ...(d.parent !== undefined && { parent: d.parent }),
        ...(event.trace !== undefined && { trace: event.trace }),
        ...(d.limits !== undefined && { limits: d.limits }),
        ...(d.detached === true && { detached: true }),
        ...(d.forkOf !== undefined && { forkOf: d.forkOf }),
      };
    }
    case "RunStarted":
      return { ...state, status: "Running", agent: event.data.agent };
    case "LLMRequested":
      return { ...state, step: event.data.step, turn: { phase: "llm", step: event.data.step } };
    case "LLMResponded": {
      const d = event.data;
      const usage = {
        promptTokens: state.usage.promptTokens + d.usage.promptTokens,
        completionTokens: state.usage.completionTokens + d.usage.completionTokens,
        cachedTokens: state.usage.cachedTokens + d.usage.cachedTokens,
        totalTokens: state.usage.totalTokens + d.usage.promptTokens + d.usage.completionTokens,
      };
      const turn: Turn =
        d.toolCalls.length === 0
          ? { phase: "answered", step: d.step, content: d.content }
          : { phase: "tools", step: d.step, calls: d.toolCalls.map((c, i) => pendingCall(d.step, i, c)) };
      return { ...state, usage, turn, costUsd: roundUsd(state.costUsd + (d.costUsd ?? 0)) };
    }
    case "LLMFailed":
      return { ...state, turn: { phase: "llmFailed", step: event.data.step, error: event.data.error } };
    case "ToolCallRequested":
      return withCall(state, event.data.callId, (c) => ({ ...c, status: c.status === "pending" ? "requested" : c.status }));
    case "ChildRunRequested": {
      const d = event.data;
      if (!d.detached) return withOpenCall(state, d.callId, (c) => ({ ...c, status: "delegated", childRunId: d.childRunId }));
      if (state.children?.some((c) => c.runId === d.childRunId)) return state;
      return { ...state, children: [...(state.children ?? []), { runId: d.childRunId, callId: d.callId, agent: d.agent, status: "Running" }] };
    }
    case "ChildRunEnded": {
      const d = event.data;
      const child = state.children?.find((c) => c.runId === d.childRunId);
      if (!child || child.status !== "Running") return state;
      const ended: ChildState = {
        ...child,
        status: d.status,
        ...(d.output !== undefined && { output: d.output.slice(0, MAX_CHILD_OUTPUT) }),
        ...(d.error !== undefined && { error: d.error.slice(0, MAX_CHILD_OUTPUT) }),
      };
      return { ...state, children: state.children!.map((c) => (c === child ? ended : c)), descendants: addSpend(state.descendants, d.spend) };
    }
    case "TasksAwaited":
      return withOpenCall(state, event.data.callId, (c) => ({ ...c, status: "awaitingTasks", awaits: event.data.runIds }));
    case "TaskCancelRequested":
      return { ...state, children: (state.children ?? []).map((c) => (c.runId === event.data.childRunId ? { ...c, cancelRequested: true } : c)) };
    case "BudgetExceeded": {
      const d = event.data;
      if (d.action !== "pause" || isTerminal(state)) return state;
      return { ...state, status: "Paused", pause: { limit: d.limit, value: d.value, used: d.used, ...(d.until !== undefined && { until: d.until }) } };
    }
    case "RunResumed": {
      if (state.status !== "Paused") return state;
      const { pause: _p, ...rest } = state;
      const r = event.data.raise ?? {};
      const raised = state.raised ?? { steps: 0, tokens: 0, costUsd: 0, durationMs: 0 };
      const lift = event.data.lift ?? [];
      return {
        ...rest,
        status: "Running",
        resumes: state.resumes + 1,
        raised: {
          steps: raised.steps + (r.steps ?? 0),
          tokens: raised.tokens + (r.tokens ?? 0),
          costUsd: roundUsd(raised.costUsd + (r.costUsd ?? 0)),
          durationMs: raised.durationMs + (r.durationMs ?? 0),
        },
        ...((lift.length > 0 || state.lifted) && { lifted: [...new Set([...(state.lifted ?? []), ...lift])] }),
      };
    }
    case "ToolCallAwaitingApproval": {
      const d = event.data;
      return withOpenCall(state, d.callId, (c) => waiting(c, "awaitingApproval", d.dueAt, d.onTimeout));
    }
    case "ToolCallApproved":
      return withCall(state, event.data.callId, (c) => (c.status === "awaitingApproval" ? withoutDeadline({ ...c, status: "approved" }) : c));
    case "HumanInputRequested": {
      const d = event.data;
      return withOpenCall(state, d.callId, (c) => waiting(c, "awaitingHuman", d.dueAt, d.onTimeout));
    }
    case "ToolCallAwaitingCallback": {
      const d = event.data;
      return withOpenCall(state, d.callId, (c) => ({ ...waiting(c, "awaitingCallback", d.dueAt, d.onTimeout), tokenDigest: tokenDigest(d.token) }));
    }
    case "TimerScheduled":
      return withOpenCall(state, event.data.callId, (c) => ({ ...c, status: "sleeping", deadline: { dueAt: event.data.dueAt, onTimeout: "wake" } }));
    case "ToolCallCompleted":
    case "ToolCallFailed":
    case "ToolCallRejected":
    case "HumanInputReceived":
    case "TimerFired": {
      // A late duplicate result (another worker's, after the dedupe window) changes nothing.
      const call = findCall(state, event.data.callId);
      if (!call || isCallDone(call)) return state;
      const { status, content } = resultOf(event);
      const childSpend = event.type === "ToolCallCompleted" || event.type === "ToolCallFailed" ? event.data.childSpend : undefined;
      return {
        ...withCall(state, event.data.callId, (c) => withoutDeadline({ ...c, status })),
        lastToolResult: content,
        ...(childSpend && { descendants: addSpend(state.descendants, childSpend) }),
      };
    }
    // A run ends once: a cancel (or a late result) that arrives after its end changes nothing.
    case "RunCompleted":
      return isTerminal(state) ? state : { ...state, status: "Completed", output: event.data.output, turn: { phase: "idle" } };
    case "RunFailed":
      return isTerminal(state) ? state : { ...state, status: "Failed", error: event.data.reason };
    case "RunCancelled":
      return isTerminal(state) ? state : { ...state, status: "Cancelled", ...(event.data.reason !== undefined && { error: event.data.reason }) };
    default:
      return assertNever(event);
  }
}

type ResultEvent = Extract<RunEvent, { type: "ToolCallCompleted" | "ToolCallFailed" | "ToolCallRejected" | "HumanInputReceived" | "TimerFired" }>;

/** A call's result: its final status, and what the model reads as the tool's answer. */
function resultOf(event: ResultEvent): { status: CallStatus; content: string } {
  switch (event.type) {
    case "ToolCallCompleted":
      return { status: "completed", content: event.data.result };
    case "ToolCallFailed":
      return { status: "failed", content: `error: ${event.data.error}` };
    case "ToolCallRejected":
      return { status: "rejected", content: rejectionText(event.data.by, event.data.comment) };
    case "HumanInputReceived":
      return { status: "completed", content: event.data.answer };
    case "TimerFired":
      return { status: event.data.outcome, content: event.data.outcome === "failed" ? `error: ${event.data.result}` : event.data.result };
    default:
      return assertNever(event);
  }
}

export function rejectionText(by: string | undefined, comment: string | undefined): string {
  return `The tool call was rejected${by ? ` by ${by}` : ""} and did not run.${comment ? ` Comment: ${comment}` : ""}`;
}

/** Identifies exactly which arguments an approval approves. */
export function argsDigest(args: unknown): string {
  return createHash("sha256").update(JSON.stringify(args ?? null)).digest("hex").slice(0, 16);
}

export function tokenDigest(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}

function waiting(call: CallState, status: CallStatus, dueAt: number | undefined, onTimeout: "reject" | "fail" | undefined): CallState {
  const next: CallState = { ...withoutDeadline(call), status };
  if (dueAt !== undefined) next.deadline = { dueAt, onTimeout: onTimeout ?? "fail" };
  return next;
}

function withoutDeadline(call: CallState): CallState {
  if (call.deadline === undefined) return call;
  const { deadline: _d, ...rest } = call;
  return rest;
}

/** The call id Smallchain uses: stable, unique in the run, safe in subjects and keys (the model's own id may not be). */
export function callIdOf(step: number, index: number): string {
  return `s${step}c${index}`;
}

function pendingCall(step: number, index: number, call: ToolCallRecord): CallState {
  return {
    callId: callIdOf(step, index),
    toolCallId: call.id,
    tool: call.name,
    arguments: call.arguments,
    status: "pending",
  };
}

function withCall(state: RunState, callId: string, update: (call: CallState) => CallState): RunState {
  if (state.turn.phase !== "tools") return state;
  const calls = state.turn.calls.map((c) => (c.callId === callId ? update(c) : c));
  return { ...state, turn: { ...state.turn, calls } };
}

/** A call's arguments as the model wrote them: JSON, or empty for none. The error quotes what was wrong. */
export function parseCallArguments(text: string): { ok: true; value: unknown } | { ok: false; error: string } {
  if (text.trim() === "") return { ok: true, value: {} };
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (err) {
    return { ok: false, error: `arguments are not valid JSON (${(err as Error).message}): ${text.slice(0, 200)}` };
  }
}

/** A recorded call's arguments, parsed; the text itself when it is not JSON. */
export function callArguments(text: string): unknown {
  const parsed = parseCallArguments(text);
  return parsed.ok ? parsed.value : text;
}

/** Updates a call that has no result yet (a late event for a finished call changes nothing). */
function withOpenCall(state: RunState, callId: string, update: (call: CallState) => CallState): RunState {
  return withCall(state, callId, (c) => (isCallDone(c) ? c : update(c)));
}

/** Finds a call of the current step. */
export function findCall(state: RunState, callId: string): CallState | undefined {
  return state.turn.phase === "tools" ? state.turn.calls.find((c) => c.callId === callId) : undefined;
}

/**
 * The context-window messages one event adds, given the state before it: whoever needs a run's window folds
 * them from its stream (see run/window.ts); the scheduler counts them. A result for a call that is no longer
 * open adds nothing.
 */
export function messagesOf(state: RunState, event: RunEvent): ChatMessage[] {
  switch (event.type) {
    case "RunStarted": {
      const system = event.data.agent.systemPrompt;
      const user: ChatMessage = { role: "user", content: state.input };
      return system ? [{ role: "system", content: system }, user] : [user];
    }
    case "LLMResponded": {
      const { content, toolCalls } = event.data;
      return [{ role: "assistant", content, ...(toolCalls.length > 0 && { tool_calls: toolCalls }) }];
    }
    case "ToolCallCompleted":
    case "ToolCallFailed":
    case "ToolCallRejected":
    case "HumanInputReceived":
    case "TimerFired": {
      const call = findCall(state, event.data.callId);
      if (!call || isCallDone(call)) return [];
      const ref = event.type === "ToolCallCompleted" ? event.data.resultRef : undefined;
      return [{ role: "tool", tool_call_id: call.toolCallId, content: resultOf(event).content, ...(ref && { ref }) }];
    }
    case "ToolCallAwaitingApproval":
    case "ToolCallApproved":
    case "HumanInputRequested":
    case "ToolCallAwaitingCallback":
    case "TimerScheduled":
    case "RunRequested":
    case "LLMRequested":
    case "LLMFailed":
    case "ToolCallRequested":
    case "ChildRunRequested":
    case "ChildRunEnded":
    case "TasksAwaited":
    case "TaskCancelRequested":
    case "BudgetExceeded":
    case "RunResumed":
    case "RunCompleted":
    case "RunFailed":
    case "RunCancelled":
      return [];
    default:
      return assertNever(event);
  }
}

export function assertNever(value: never): never {
  throw new Error(`unhandled case: ${JSON.stringify(value)}`);
}

/** What the run and its finished descendants spent. */
export function totalSpend(state: Pick<RunState, "usage" | "costUsd" | "descendants">): Spend {
  return addSpend({ tokens: state.usage.totalTokens, costUsd: state.costUsd }, state.descendants);
}
