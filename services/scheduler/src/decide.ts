import {
  argsDigest,
  assertNever,
  deriveRunId,
  isCallDone,
  parseCallArguments,
  totalSpend,
  windowOf,
  type ChildState,
  type LimitName,
  type Spend,
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
  /**
   * For agents with a budget, before an LLM call or a spend check: what all the agent's runs spent in the
   * current budget hour and day (from the spend bucket: this run's calls are in it; other runs' calls being
   * recorded at this moment may not be yet).
   */
  budget?: BudgetWindows;
  /** check_current_spend_since calls: what the run and its agent spent since the call's time, by call id. */
  spendSince?: Record<string, { since: number; run: Spend; agent: Spend }>;
  /** spawn_task calls that name a task: the task's agent (undefined: no such task), by task name. */
  taskAgents?: Record<string, string | undefined>;
};

export type BudgetWindows = { hourMs: number; hourUsd: number; dayUsd: number };

/** The timers-bucket key a budget pause wakes its run with (calls have ids like s1c0, so it cannot clash). */
export const BUDGET_TIMER = "budget";

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
    case "Paused": {
      // A budget window rolled over: go on by itself (a person resumes any other pause).
      const until = state.pause?.until;
      return until !== undefined && until <= input.now ? [ev("RunResumed", `resumed:${state.resumes + 1}`, { auto: true })] : [];
    }
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
      return nextLlmCall(state, agent, input, ev);
    case "llm":
      return [];
    case "llmFailed":
      return [ev("RunFailed", "failed", { reason: `LLM call of step ${turn.step} failed: ${turn.error}` })];
    case "answered":
      return [ev("RunCompleted", "completed", { output: turn.content ?? "" })];
    case "tools": {
      const events = turn.calls.flatMap((call) => decideCall(state, agent, call, turn.step, input, ev));
      if (events.length > 0) return events;
      return turn.calls.every(isCallDone) ? nextLlmCall(state, agent, input, ev) : [];
    }
    default:
      return assertNever(turn);
  }
}

/** Whether the run's next decision is an LLM call (before which limits and budgets are checked). */
export function wantsLlmCall(state: RunState): boolean {
  if (state.status === "Paused") return true;
  if (state.status !== "Running") return false;
  return state.turn.phase === "idle" || (state.turn.phase === "tools" && state.turn.calls.every(isCallDone));
}

type Exceeded = { limit: LimitName; value: number; used: number; until?: number };

/** The hard limits in force: the agent's and the run's (the stricter wins), plus what resumes added, minus what they lifted. */
export function limitsOf(state: RunState, agent: AgentSnapshot): { limit: LimitName; value: number | undefined; used: (now: number) => number }[] {
  const run = state.limits ?? {};
  const own = agent.limits ?? {};
  const raised = state.raised ?? { steps: 0, tokens: 0, costUsd: 0, durationMs: 0 };
  const lifted = new Set(state.lifted ?? []);
  const min = (a: number | undefined, b: number | undefined) => (a === undefined ? b : b === undefined ? a : Math.min(a, b));
  const plus = (name: LimitName, v: number | undefined, extra: number) => (lifted.has(name) || v === undefined ? undefined : v + extra);
  const spend = totalSpend(state);
  return [
    { limit: "max_steps", value: plus("max_steps", min(agent.maxSteps, run.maxSteps), raised.steps), used: () => state.step },
    { limit: "max_tokens", value: plus("max_tokens", min(own.maxTokens, run.maxTokens), raised.tokens), used: () => spend.tokens },
    { limit: "max_cost_usd", value: plus("max_cost_usd", min(own.maxCostUsd, run.maxCostUsd), raised.costUsd), used: () => spend.costUsd },
    { limit: "max_duration", value: plus("max_duration", min(own.maxDurationMs, run.maxDurationMs), raised.durationMs), used: (now) => now - state.createdAt },
  ];
}

function limitReached(state: RunState, agent: AgentSnapshot, now: number): Exceeded | undefined {
  for (const l of limitsOf(state, agent)) {
    if (l.value !== undefined && l.used(now) >= l.value) return { limit: l.limit, value: l.value, used: l.used(now) };
  }
  return undefined;
}

/** A spent budget window pauses the run until the window's end. "unknown": the scheduler has not read the spend. */
function budgetReached(state: RunState, agent: AgentSnapshot, input: DecideInput): Exceeded | "unknown" | undefined {
  const budget = agent.budget;
  if (!budget) return undefined;
  const lifted = new Set(state.lifted ?? []);
  const hour = budget.perHourUsd !== undefined && !lifted.has("per_hour_usd") ? budget.perHourUsd : undefined;
  const day = budget.perDayUsd !== undefined && !lifted.has("per_day_usd") ? budget.perDayUsd : undefined;
  if (hour === undefined && day === undefined) return undefined;
  const w = input.budget;
  if (!w) return "unknown";
  if (day !== undefined && w.dayUsd >= day) return { limit: "per_day_usd", value: day, used: w.dayUsd, until: windowOf("day", input.now, w.hourMs).end };
  if (hour !== undefined && w.hourUsd >= hour) return { limit: "per_hour_usd", value: hour, used: w.hourUsd, until: windowOf("hour", input.now, w.hourMs).end };
  return undefined;
}

function exceeded(state: RunState, agent: AgentSnapshot, over: Exceeded, ev: EventFactory): NewEvent[] {
  const windowed = over.until !== undefined;
  const action = windowed ? "pause" : (state.limits?.onExceeded ?? agent.limits?.onExceeded ?? "fail");
  const budget = ev("BudgetExceeded", `budget:${state.resumes}`, { ...over, action });
  if (action === "pause") return [budget];
  const reason =
    over.limit === "max_steps"
      ? `max_steps (${over.value}) reached without a final answer`
      : `${over.limit} (${over.value}) reached: used ${over.used}${over.limit === "max_duration" ? " ms" : ""}`;
  return [budget, ev("RunFailed", "failed", { reason })];
}

function nextLlmCall(state: RunState, agent: AgentSnapshot, input: DecideInput, ev: EventFactory): NewEvent[] {
  const over = limitReached(state, agent, input.now);
  if (over) return exceeded(state, agent, over, ev);
  const window = budgetReached(state, agent, input);
  if (window === "unknown") return [];
  if (window) return exceeded(state, agent, window, ev);
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
    case "awaitingTasks": {
      const awaited = (call.awaits ?? []).map((id) => state.children?.find((c) => c.runId === id));
      return awaited.every((c) => c && c.status !== "Running") ? [completed(call, JSON.stringify(awaited.map((c) => childSummary(c!))), ev)] : [];
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
  const args = parseCallArguments(call.arguments);
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
      return selfManagement(state, call, tool.builtin, args, input, ev);
    case "command":
    case "http":
    case "mcp":
      return [];
    default:
      return assertNever(tool);
  }
}

function completed(call: CallState, result: string, ev: EventFactory): NewEvent {
  return ev("ToolCallCompleted", `done:${call.callId}`, { callId: call.callId, result });
}

function childSummary(c: ChildState): Record<string, string> {
  return { run_id: c.runId, agent: c.agent, status: c.status, ...(c.output !== undefined && { output: c.output }), ...(c.error !== undefined && { error: c.error }) };
}

/** Builtins that read the run's spend or start, follow and stop runs it spawned. */
function selfManagement(state: RunState, call: CallState, builtin: string, args: unknown, input: DecideInput, ev: EventFactory): NewEvent[] {
  const a = (args ?? {}) as Record<string, unknown>;
  const children = state.children ?? [];
  const childOf = (id: unknown) => children.find((c) => c.runId === id);
  const spawned = () => children.map((c) => c.runId).join(", ") || "none";
  switch (builtin) {
    case "check_current_spend_since": {
      const since = typeof a.time === "string" ? Date.parse(a.time) : typeof a.time === "number" ? a.time : Number.NaN;
      if (!Number.isFinite(since)) return [failed(call, `check_current_spend_since needs "time" as an ISO 8601 timestamp, got ${JSON.stringify(a.time)}`, ev)];
      const found = input.spendSince?.[call.callId];
      if (!found) return [];
      return [completed(call, JSON.stringify(spendReport(state, since, found, input)), ev)];
    }
    case "spawn_task": {
      const message = typeof a.message === "string" ? a.message : JSON.stringify(args);
      let agent = typeof a.agent === "string" ? a.agent : undefined;
      const task = typeof a.task === "string" ? a.task : undefined;
      if (agent === undefined && task !== undefined) {
        if (!input.taskAgents || !(task in input.taskAgents)) return [];
        agent = input.taskAgents[task];
        if (agent === undefined) return [failed(call, `task "${task}" not found in the applied config`, ev)];
      }
      if (agent === undefined) return [failed(call, `spawn_task needs "agent" or "task"`, ev)];
      const id = childRunId(state.runId, call.callId);
      const result = completed(call, JSON.stringify({ run_id: id, agent, status: "Running" }), ev);
      // After a crash between the two appends the child is recorded already: just complete the call.
      if (childOf(id)) return [result];
      const requested = ev("ChildRunRequested", `child:${call.callId}`, {
        callId: call.callId,
        childRunId: id,
        agent,
        input: message,
        detached: true,
        ...(task !== undefined && { task }),
      });
      return [requested, result];
    }
    case "list_tasks":
      return [completed(call, JSON.stringify(children.map(childSummary)), ev)];
    case "wait_for": {
      const ids = Array.isArray(a.run_ids) ? a.run_ids : a.run_id !== undefined ? [a.run_id] : [];
      const unknown = ids.filter((id) => !childOf(id));
      if (ids.length === 0 || unknown.length > 0) {
        return [failed(call, `wait_for needs "run_ids" of runs this run spawned (unknown: ${unknown.map(String).join(", ") || "none given"}; spawned: ${spawned()})`, ev)];
      }
      const awaited = ids.map((id) => childOf(id)!);
      if (awaited.every((c) => c.status !== "Running")) return [completed(call, JSON.stringify(awaited.map(childSummary)), ev)];
      return [ev("TasksAwaited", `tasks-wait:${call.callId}`, { callId: call.callId, runIds: awaited.map((c) => c.runId) })];
    }
    case "cancel_task": {
      const child = childOf(a.run_id);
      if (!child) return [failed(call, `cancel_task needs "run_id" of a run this run spawned (spawned: ${spawned()})`, ev)];
      if (child.status !== "Running") return [completed(call, `run ${child.runId} has ended already (${child.status})`, ev)];
      const result = completed(call, `cancelling run ${child.runId} and everything it started`, ev);
      if (child.cancelRequested) return [result];
      return [ev("TaskCancelRequested", `cancel:${call.callId}`, { callId: call.callId, childRunId: child.runId }), result];
    }
    default:
      return [];
  }
}

/** What check_current_spend_since answers: spend since a time, and what the limits and budget windows leave. */
function spendReport(state: RunState, since: number, found: { run: Spend; agent: Spend }, input: DecideInput): Record<string, unknown> {
  const agent = state.agent!;
  const own = { tokens: state.usage.totalTokens, costUsd: state.costUsd };
  // The run's own totals are exact (and include calls the projector has not counted yet) when it started after `since`.
  const run = since <= state.createdAt ? own : found.run;
  const usd = (n: number) => Math.round(n * 1e9) / 1e9;
  const limits: Record<string, number> = {};
  for (const l of limitsOf(state, agent)) {
    if (l.value === undefined || l.limit === "max_steps") continue;
    limits[l.limit] = l.value;
    limits[`${l.limit.replace("max_", "")}_remaining`] = Math.max(0, usd(l.value - l.used(input.now)));
  }
  const budget: Record<string, number> = {};
  if (agent.budget && input.budget) {
    if (agent.budget.perHourUsd !== undefined) {
      budget.per_hour_usd = agent.budget.perHourUsd;
      budget.spent_this_hour_usd = input.budget.hourUsd;
      budget.remaining_this_hour_usd = Math.max(0, usd(agent.budget.perHourUsd - input.budget.hourUsd));
    }
    if (agent.budget.perDayUsd !== undefined) {
      budget.per_day_usd = agent.budget.perDayUsd;
      budget.spent_today_usd = input.budget.dayUsd;
      budget.remaining_today_usd = Math.max(0, usd(agent.budget.perDayUsd - input.budget.dayUsd));
    }
  }
  return {
    since: new Date(since).toISOString(),
    now: new Date(input.now).toISOString(),
    run: { cost_usd: run.costUsd, tokens: run.tokens },
    run_with_finished_children: { cost_usd: totalSpend(state).costUsd, tokens: totalSpend(state).tokens },
    agent: { name: agent.name, cost_usd: found.agent.costUsd, tokens: found.agent.tokens },
    ...(Object.keys(limits).length > 0 && { limits }),
    ...(Object.keys(budget).length > 0 && { budget }),
  };
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

type EventFactory = <T extends RunEvent["type"]>(type: T, key: string, data: Extract<RunEvent, { type: T }>["data"]) => RunEvent;

/** Event ids are `<run>:<key>`: the same decision always yields the same id, which JetStream deduplicates. */
function eventFactory(state: RunState, now: number): EventFactory {
  return (type, key, data) => ({ id: `${state.runId}:${key}`, type, v: 1, runId: state.runId, at: now, data }) as RunEvent;
}
