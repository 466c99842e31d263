import {
  argsDigest,
  assertNever,
  deriveRunId,
  isCallDone,
  isCopying,
  type Deadline,
  type WaitPolicy,
  type AgentSnapshot,
  type CallState,
  type RunEvent,
  type RunState,
  type ToolSnapshot,
} from "@smallchain/shared";

/**
 * What the scheduler brings to a decision: the clock, the agent resolved from config when a run starts, and
 * a source of unguessable callback tokens (randomness stays outside the decider; a decision recorded once
 * keeps its token, since its event id is deterministic).
 */
export type DecideInput = {
  now: number;
  agent?: { ok: true; spec: AgentSnapshot } | { ok: false; error: string };
  newToken?: () => string;
};

type NewEvent = RunEvent;

/**
 * The next events of a run, given its state: a pure function (no I/O, clock or randomness; ids derive from
 * the run). It looks at the whole state, not at the last event, so after a partial decision (a crash between
 * two appends) it decides just what is still missing.
 */
export function decide(state: RunState, input: DecideInput): NewEvent[] {
  if (state.eventCount === 0 || state.createdAt === 0 || isCopying(state)) return [];
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
      return decideRunning(state, input, ev);
    default:
      return assertNever(state.status);
  }
}

function decideRunning(state: RunState, input: DecideInput, ev: EventFactory): NewEvent[] {
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
      const events = turn.calls.flatMap((call) => decideCall(state, agent, call, turn.step, input, ev));
      if (events.length > 0) return events;
      return turn.calls.every(isCallDone) ? nextLlmCall(state, agent, ev) : [];
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

/**
 * What a call needs next, from where it stands. Each call moves along a short chain (requested, then at most
 * one follow-up: an approval wait, a child run, a human question, a callback or a timer), so after a crash
 * between two appends the decider records just what is missing.
 */
function decideCall(state: RunState, agent: AgentSnapshot, call: CallState, step: number, input: DecideInput, ev: EventFactory): NewEvent[] {
  switch (call.status) {
    case "pending":
    case "requested": {
      const plan = planCall(agent, call);
      const requested = ev("ToolCallRequested", `call:${call.callId}`, {
        step,
        callId: call.callId,
        toolCallId: call.toolCallId,
        tool: call.tool,
        args: plan.ok ? plan.args : call.arguments,
        kind: plan.ok ? (plan.tool.kind === "agent" ? "agent" : "tool") : "invalid",
      });
      const next = plan.ok ? afterRequest(state, call, plan.tool, plan.args, input, ev) : [failed(call, plan.error, ev)];
      return call.status === "pending" ? [requested, ...next] : next;
    }
    case "approved": {
      const plan = planCall(agent, call);
      return plan.ok ? execution(state, call, plan.tool, plan.args, input, ev) : [failed(call, plan.error, ev)];
    }
    case "awaitingApproval":
    case "awaitingHuman":
    case "awaitingCallback":
    case "sleeping":
      return call.deadline && call.deadline.dueAt <= input.now ? [timerFired(call, call.deadline, input.now, ev)] : [];
    case "delegated":
    case "completed":
    case "failed":
    case "rejected":
      return [];
    default:
      return assertNever(call.status);
  }
}

type Plan = { ok: true; tool: ToolSnapshot; args: unknown } | { ok: false; error: string };

function planCall(agent: AgentSnapshot, call: CallState): Plan {
  const tool = agent.tools.find((t) => t.name === call.tool);
  if (!tool) {
    const names = agent.tools.map((t) => t.name).join(", ") || "none";
    return { ok: false, error: `unknown tool "${call.tool}" (tools of agent ${agent.name}: ${names})` };
  }
  const args = parseArguments(call.arguments);
  return args.ok ? { ok: true, tool, args: args.value } : args;
}

function failed(call: CallState, error: string, ev: EventFactory): NewEvent {
  return ev("ToolCallFailed", `done:${call.callId}`, { callId: call.callId, error });
}

/** Once recorded: wait for approval if the tool needs it, else go ahead. */
function afterRequest(state: RunState, call: CallState, tool: ToolSnapshot, args: unknown, input: DecideInput, ev: EventFactory): NewEvent[] {
  if (!tool.approval) return execution(state, call, tool, args, input, ev);
  return [
    ev("ToolCallAwaitingApproval", `approval-wait:${call.callId}`, {
      callId: call.callId,
      tool: tool.name,
      digest: argsDigest(args),
      ...deadline(tool.approval, input.now),
    }),
  ];
}

/** What running the call takes besides a tool-worker command (which the recorded events imply). */
function execution(state: RunState, call: CallState, tool: ToolSnapshot, args: unknown, input: DecideInput, ev: EventFactory): NewEvent[] {
  switch (tool.kind) {
    case "agent":
      return [childRun(state, call, tool, args, ev)];
    case "callback": {
      if (!input.newToken) return [];
      const token = `${state.runId}-${call.callId}-${input.newToken()}`;
      return [ev("ToolCallAwaitingCallback", `callback-wait:${call.callId}`, { callId: call.callId, token, ...deadline(tool.wait, input.now) })];
    }
    case "builtin":
      if (tool.builtin === "human_input") {
        const question = (args as { question?: unknown } | null)?.question;
        return [
          ev("HumanInputRequested", `human-wait:${call.callId}`, {
            callId: call.callId,
            question: typeof question === "string" ? question : JSON.stringify(args),
            ...deadline(tool.wait, input.now),
          }),
        ];
      }
      if (tool.builtin === "sleep_until") {
        const time = (args as { time?: unknown } | null)?.time;
        const dueAt = typeof time === "string" ? Date.parse(time) : typeof time === "number" ? time : Number.NaN;
        if (!Number.isFinite(dueAt)) {
          return [failed(call, `sleep_until needs "time" as an ISO 8601 timestamp (e.g. 2026-01-31T09:00:00Z), got ${JSON.stringify(time)}`, ev)];
        }
        return [ev("TimerScheduled", `timer:${call.callId}`, { callId: call.callId, dueAt })];
      }
      return [];
    case "command":
    case "http":
    case "mcp":
      return [];
    default:
      return assertNever(tool);
  }
}

function deadline(policy: WaitPolicy | undefined, now: number): { dueAt?: number; onTimeout?: "reject" | "fail" } {
  if (policy?.timeoutMs === undefined) return {};
  return { dueAt: now + policy.timeoutMs, onTimeout: policy.onTimeout };
}

/** A deadline passed: the call's result says what happened. */
function timerFired(call: CallState, due: Deadline, now: number, ev: EventFactory): NewEvent {
  const at = new Date(due.dueAt).toISOString();
  const base = { callId: call.callId, dueAt: due.dueAt };
  if (due.onTimeout === "wake") {
    return ev("TimerFired", `done:${call.callId}`, { ...base, outcome: "completed", result: `It is ${new Date(now).toISOString()}; slept until ${at}.` });
  }
  const what =
    call.status === "awaitingApproval" ? "approved or rejected" : call.status === "awaitingHuman" ? "answered by a human" : "answered by its callback";
  return due.onTimeout === "reject"
    ? ev("TimerFired", `done:${call.callId}`, { ...base, outcome: "rejected", result: `The tool call was not ${what} by ${at} and did not run.` })
    : ev("TimerFired", `done:${call.callId}`, { ...base, outcome: "failed", result: `timed out: not ${what} by ${at}` });
}

function childRun(state: RunState, call: CallState, tool: Extract<ToolSnapshot, { kind: "agent" }>, args: unknown, ev: EventFactory): NewEvent {
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
