import type { ParentRef, RecordedEvent, RunEvent } from "../events.js";
import type { ChatMessage, ToolCallRecord } from "./messages.js";
import type { AgentSnapshot } from "./spec.js";

export type RunStatus = "Requested" | "Running" | "Completed" | "Failed" | "Cancelled";
export const TERMINAL_STATUSES: readonly RunStatus[] = ["Completed", "Failed", "Cancelled"];

export type CallStatus = "pending" | "requested" | "delegated" | "completed" | "failed";

/** One tool call of the current step. `pending`: the model asked for it, the scheduler has not recorded it yet. */
export type CallState = {
  callId: string;
  toolCallId: string;
  tool: string;
  arguments: string;
  status: CallStatus;
  childRunId?: string;
};

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
  output?: string;
  error?: string;
  createdAt: number;
  updatedAt: number;
  /** Messages added since the last LLMRequested: the next LLM command carries them (bounded by one step). */
  newMessages: ChatMessage[];
  /** The messages the current LLM call adds to the window it had at the previous call. */
  llmDelta: ChatMessage[];
  /** Stream sequence of the last folded event; the scheduler appends with it as the expected last sequence. */
  lastSeq: number;
  eventCount: number;
};

export function isTerminal(state: Pick<RunState, "status">): boolean {
  return TERMINAL_STATUSES.includes(state.status);
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
    createdAt: 0,
    updatedAt: 0,
    newMessages: [],
    llmDelta: [],
    lastSeq: 0,
    eventCount: 0,
  };
}

/** Folds one recorded event into the run view. Pure; events at or below `lastSeq` are already in it. */
export function evolve(state: RunState, event: RecordedEvent): RunState {
  if (event.seq <= state.lastSeq) return state;
  const added = messagesOf(state, event);
  const next: RunState = {
    ...apply(state, event),
    messageCount: state.messageCount + added.length,
    lastSeq: event.seq,
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
      return { ...state, usage, turn };
    }
    case "LLMFailed":
      return { ...state, turn: { phase: "llmFailed", step: event.data.step, error: event.data.error } };
    case "ToolCallRequested":
      return withCall(state, event.data.callId, (c) => ({ ...c, status: c.status === "pending" ? "requested" : c.status }));
    case "ChildRunRequested":
      return withCall(state, event.data.callId, (c) =>
        c.status === "completed" || c.status === "failed" ? c : { ...c, status: "delegated", childRunId: event.data.childRunId },
      );
    case "ToolCallCompleted":
    case "ToolCallFailed": {
      // A late duplicate result (another worker's, after the dedupe window) changes nothing.
      const call = findCall(state, event.data.callId);
      if (!call || call.status === "completed" || call.status === "failed") return state;
      const ok = event.type === "ToolCallCompleted";
      return {
        ...withCall(state, event.data.callId, (c) => ({ ...c, status: ok ? "completed" : "failed" })),
        lastToolResult: ok ? event.data.result : `error: ${event.data.error}`,
      };
    }
    case "RunCompleted":
      return { ...state, status: "Completed", output: event.data.output, turn: { phase: "idle" } };
    case "RunFailed":
      return { ...state, status: "Failed", error: event.data.reason };
    case "RunCancelled":
      return { ...state, status: "Cancelled", ...(event.data.reason !== undefined && { error: event.data.reason }) };
    default:
      return assertNever(event);
  }
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

/** Finds a call of the current step. */
export function findCall(state: RunState, callId: string): CallState | undefined {
  return state.turn.phase === "tools" ? state.turn.calls.find((c) => c.callId === callId) : undefined;
}

/**
 * The context-window messages one event adds, given the state before it. The projector stores them,
 * one KV entry each; the scheduler counts them. A result for a call that is no longer open adds nothing.
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
    case "ToolCallFailed": {
      const call = findCall(state, event.data.callId);
      if (!call || call.status === "completed" || call.status === "failed") return [];
      const content = event.type === "ToolCallCompleted" ? event.data.result : `error: ${event.data.error}`;
      return [{ role: "tool", tool_call_id: call.toolCallId, content }];
    }
    case "RunRequested":
    case "LLMRequested":
    case "LLMFailed":
    case "ToolCallRequested":
    case "ChildRunRequested":
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
