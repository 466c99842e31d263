import {
  assertNever,
  deriveRunId,
  type AgentSnapshot,
  type CallState,
  type RunEvent,
  type RunState,
  type ToolSnapshot,
} from "@smallchain/shared";

/** What the scheduler brings to a decision: the clock, and the agent resolved from config when a run starts. */
export type DecideInput = {
  now: number;
  agent?: { ok: true; spec: AgentSnapshot } | { ok: false; error: string };
};

type NewEvent = RunEvent;

/**
 * The next events of a run, given its state: a pure function (no I/O, clock or randomness; ids derive from
 * the run). It looks at the whole state, not at the last event, so after a partial decision (a crash between
 * two appends) it decides just what is still missing.
 */
export function decide(state: RunState, input: DecideInput): NewEvent[] {
  if (state.eventCount === 0 || state.createdAt === 0) return [];
  const ev = eventFactory(state, input.now);
  switch (state.status) {
    case "Requested": {
      if (!input.agent) return [];
      if (!input.agent.ok) return [ev("RunFailed", "failed", { reason: input.agent.error })];
      return [ev("RunStarted", "started", { agent: input.agent.spec })];
    }
    case "Completed":
    case "Failed":
    case "Cancelled":
      return [];
    case "Running":
      return decideRunning(state, ev);
    default:
      return assertNever(state.status);
  }
}

function decideRunning(state: RunState, ev: EventFactory): NewEvent[] {
  const agent = state.agent;
  if (!agent) return [ev("RunFailed", "failed", { reason: "run started without an agent" })];
  const turn = state.turn;
  switch (turn.phase) {
    case "idle":
      return nextLlmCall(state, agent, ev);
    case "llm":
      return [];
    case "llmFailed":
      return [ev("RunFailed", "failed", { reason: `LLM call of step ${turn.step} failed: ${turn.error}` })];
    case "answered":
      return [ev("RunCompleted", "completed", { output: turn.content ?? "" })];
    case "tools": {
      const events = turn.calls.flatMap((call) => decideCall(state, agent, call, turn.step, ev));
      if (events.length > 0) return events;
      const open = turn.calls.some((c) => c.status !== "completed" && c.status !== "failed");
      return open ? [] : nextLlmCall(state, agent, ev);
    }
    default:
      return assertNever(turn);
  }
}

function nextLlmCall(state: RunState, agent: AgentSnapshot, ev: EventFactory): NewEvent[] {
  if (state.step >= agent.maxSteps) {
    return [ev("RunFailed", "failed", { reason: `max_steps (${agent.maxSteps}) reached without a final answer` })];
  }
  const step = state.step + 1;
  return [ev("LLMRequested", `llm:${step}`, { step, llm: agent.llm.name, messageCount: state.messageCount })];
}

function decideCall(state: RunState, agent: AgentSnapshot, call: CallState, step: number, ev: EventFactory): NewEvent[] {
  if (call.status !== "pending" && call.status !== "requested") return [];
  const events = callDecision(state, agent, call, step, ev);
  // A crash between ToolCallRequested and its follow-up (ToolCallFailed, ChildRunRequested): record just the follow-up.
  return call.status === "pending" ? events : events.slice(1);
}

/** Everything a call of the model leads to: its ToolCallRequested first, then a failure or a child run if any. */
function callDecision(state: RunState, agent: AgentSnapshot, call: CallState, step: number, ev: EventFactory): NewEvent[] {
  const requested = (kind: "tool" | "agent" | "invalid", args: unknown) =>
    ev("ToolCallRequested", `call:${call.callId}`, { step, callId: call.callId, toolCallId: call.toolCallId, tool: call.tool, args, kind });
  const failed = (error: string) => ev("ToolCallFailed", `done:${call.callId}`, { callId: call.callId, error });
  const tool = agent.tools.find((t) => t.name === call.tool);
  if (!tool) {
    const names = agent.tools.map((t) => t.name).join(", ") || "none";
    return [requested("invalid", call.arguments), failed(`unknown tool "${call.tool}" (tools of agent ${agent.name}: ${names})`)];
  }
  const args = parseArguments(call.arguments);
  if (!args.ok) return [requested("invalid", call.arguments), failed(args.error)];
  if (tool.kind === "agent") return [requested("agent", args.value), childRun(state, call, tool, args.value, ev)];
  return [requested("tool", args.value)];
}

function childRun(state: RunState, call: CallState, tool: ToolSnapshot & { kind: "agent" }, args: unknown, ev: EventFactory): NewEvent {
  const message = (args as { message?: unknown } | null)?.message;
  const input = typeof message === "string" ? message : JSON.stringify(args);
  return ev("ChildRunRequested", `child:${call.callId}`, {
    callId: call.callId,
    childRunId: childRunId(state.runId, call.callId),
    agent: tool.agent,
    input,
  });
}

export function childRunId(parentRunId: string, callId: string): string {
  return deriveRunId("child", parentRunId, callId);
}

function parseArguments(text: string): { ok: true; value: unknown } | { ok: false; error: string } {
  if (text.trim() === "") return { ok: true, value: {} };
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (err) {
    return { ok: false, error: `arguments are not valid JSON (${(err as Error).message}): ${text.slice(0, 200)}` };
  }
}

type EventFactory = <T extends RunEvent["type"]>(type: T, key: string, data: Extract<RunEvent, { type: T }>["data"]) => RunEvent;

/** Event ids are `<run>:<key>`: the same decision always yields the same id, which JetStream deduplicates. */
function eventFactory(state: RunState, now: number): EventFactory {
  return (type, key, data) => ({ id: `${state.runId}:${key}`, type, v: 1, runId: state.runId, at: now, data }) as RunEvent;
}
