import { BUILTIN_TOOLS, type EventOf, type EventType, type RunEvent, type ToolSnapshot } from "@smallchain/shared";
import { describe, expect, it } from "vitest";
import { BUDGET_TIMER, decide, type DecideInput } from "./decide.js";
import { effectsOf } from "./effects.js";
import { RUN_ID, RunHistory, T0, addTool, agentSnapshot, toolCall } from "./testing.js";

const NOW = T0 + 1_000_000;
const HOUR = 3_600_000;

function builtin(name: keyof typeof BUILTIN_TOOLS): ToolSnapshot {
  return { kind: "builtin", name, description: BUILTIN_TOOLS[name].description, parameters: BUILTIN_TOOLS[name].parameters, builtin: name };
}

function ofType<T extends EventType>(events: readonly RunEvent[], type: T): EventOf<T>[] {
  return events.filter((e): e is EventOf<T> => e.type === type);
}

const usage = (promptTokens: number, completionTokens: number) => ({ promptTokens, completionTokens, cachedTokens: 0 });

/** A run of `agent` that just got a tool call answered at step `steps` (each step cost `cost` and 150 tokens). */
function afterSteps(agent = agentSnapshot(), steps: number, cost = 0.01, runLimits?: EventOf<"RunRequested">["data"]["limits"]): RunHistory {
  const run = new RunHistory().requested(runLimits ? { limits: runLimits } : {}).started(agent);
  for (let step = 1; step <= steps; step++) {
    run.llmRequested(step);
    run.add("LLMResponded", {
      step,
      content: null,
      toolCalls: [toolCall(`c${step}`, "add", { a: 1, b: 2 })],
      usage: usage(100, 50),
      model: "m",
      finishReason: "tool_calls",
      durationMs: 1,
      costUsd: cost,
    });
    run.record(...decide(run.state, { now: NOW }).filter((e) => e.type === "ToolCallRequested"));
    run.completed(`s${step}c0`, "3");
  }
  return run;
}

/** Records what the scheduler would decide, given the same input each time. */
function settle(run: RunHistory, input: DecideInput): RunHistory {
  for (let i = 0; i < 10; i++) {
    const events = decide(run.state, input);
    if (events.length === 0) return run;
    run.record(...events);
  }
  throw new Error("decisions did not settle");
}

describe("spend accounting", () => {
  it("adds up each call's tokens and cost, and the spend of finished children", () => {
    const run = afterSteps(agentSnapshot(), 3, 0.0075);
    expect(run.state.usage.totalTokens).toBe(450);
    expect(run.state.costUsd).toBe(0.0225);

    const parent = new RunHistory()
      .requested()
      .started()
      .llmRequested(1)
      .responded(1, { toolCalls: [toolCall("d", "calculator_operator", { message: "add" })] });
    parent.record(...decide(parent.state, { now: NOW }));
    parent.add("ToolCallCompleted", { callId: "s1c0", result: "15", childSpend: { tokens: 300, costUsd: 0.015 } });

    expect(parent.state.descendants).toEqual({ tokens: 300, costUsd: 0.015 });
  });
});

describe("hard limits", () => {
  it("fails the run before the LLM call that max_tokens would exceed, saying which limit and how much was used", () => {
    const agent = agentSnapshot({ limits: { maxTokens: 300 } });
    expect(ofType(decide(afterSteps(agent, 1).state, { now: NOW }), "LLMRequested")).toHaveLength(1);

    const events = decide(afterSteps(agent, 2).state, { now: NOW });

    expect(events.map((e) => e.type)).toEqual(["BudgetExceeded", "RunFailed"]);
    expect(events[0]?.data).toEqual({ limit: "max_tokens", value: 300, used: 300, action: "fail" });
    expect(ofType(events, "RunFailed")[0]?.data.reason).toBe("max_tokens (300) reached: used 300");
  });

  it("takes the stricter of the agent's and the run's max_cost_usd", () => {
    const agent = agentSnapshot({ limits: { maxCostUsd: 1 } });
    const events = decide(afterSteps(agent, 2, 0.01, { maxCostUsd: 0.02 }).state, { now: NOW });
    expect(events[0]?.data).toMatchObject({ limit: "max_cost_usd", value: 0.02, used: 0.02 });
  });

  it("fails the run once max_duration has passed since it was requested", () => {
    const run = afterSteps(agentSnapshot(), 1, 0, { maxDurationMs: 60_000 });
    expect(ofType(decide(run.state, { now: T0 + 59_000 }), "LLMRequested")).toHaveLength(1);
    expect(decide(run.state, { now: T0 + 61_000 })[0]?.data).toMatchObject({ limit: "max_duration", value: 60_000 });
  });

  it("with on_exceeded pause, pauses the run instead, and goes on once resumed with a raised limit", () => {
    const run = afterSteps(agentSnapshot({ limits: { maxCostUsd: 0.02, onExceeded: "pause" } }), 2);

    const paused = decide(run.state, { now: NOW });
    expect(paused.map((e) => e.type)).toEqual(["BudgetExceeded"]);
    run.record(...paused);
    expect(run.state.status).toBe("Paused");
    expect(run.state.pause).toEqual({ limit: "max_cost_usd", value: 0.02, used: 0.02 });
    expect(decide(run.state, { now: NOW + HOUR })).toEqual([]);

    run.add("RunResumed", { by: "ann", raise: { costUsd: 0.01 } });
    expect(run.state.status).toBe("Running");
    expect(ofType(decide(run.state, { now: NOW }), "LLMRequested")[0]?.data.step).toBe(3);

    // The raised limit trips again a step later, with a fresh event id.
    const again = afterSteps(agentSnapshot({ limits: { maxCostUsd: 0.02, onExceeded: "pause" } }), 3);
    again.add("BudgetExceeded", { limit: "max_cost_usd", value: 0.02, used: 0.03, action: "pause" }).add("RunResumed", { raise: { costUsd: 0.01 } });
    expect(decide(again.state, { now: NOW })[0]).toMatchObject({ id: `${RUN_ID}:budget:1`, data: { value: 0.03, used: 0.03 } });
  });

  it("lifts the limit that paused the run when resumed without a raise", () => {
    const run = afterSteps(agentSnapshot({ maxSteps: 2, limits: { onExceeded: "pause" } }), 2);
    run.record(...decide(run.state, { now: NOW }));
    expect(run.state.pause?.limit).toBe("max_steps");

    run.add("RunResumed", { lift: ["max_steps"] });

    expect(ofType(decide(run.state, { now: NOW }), "LLMRequested")[0]?.data.step).toBe(3);
  });
});

describe("budget windows", () => {
  const agent = agentSnapshot({ budget: { perHourUsd: 0.05 } });
  const hourEnd = (Math.floor(NOW / HOUR) + 1) * HOUR;

  it("decides nothing for an agent with a budget until the scheduler brings its spend", () => {
    expect(decide(afterSteps(agent, 1).state, { now: NOW })).toEqual([]);
  });

  it("goes on while the hour's budget lasts", () => {
    const events = decide(afterSteps(agent, 1).state, { now: NOW, budget: { hourMs: HOUR, hourUsd: 0.049, dayUsd: 0.049 } });
    expect(events.map((e) => e.type)).toEqual(["LLMRequested"]);
  });

  it("pauses the run when the hour is spent, until the hour ends, and wakes it then through the timers bucket", () => {
    const run = afterSteps(agent, 1);
    const events = decide(run.state, { now: NOW, budget: { hourMs: HOUR, hourUsd: 0.05, dayUsd: 0.05 } });

    expect(events.map((e) => e.type)).toEqual(["BudgetExceeded"]);
    expect(events[0]?.data).toEqual({ limit: "per_hour_usd", value: 0.05, used: 0.05, action: "pause", until: hourEnd });
    run.record(...events);
    expect(run.state.status).toBe("Paused");
    expect(effectsOf(run.state, run.last, NOW)).toEqual([{ kind: "timer", runId: RUN_ID, callId: BUDGET_TIMER, dueAt: hourEnd }]);

    expect(decide(run.state, { now: hourEnd - 1 })).toEqual([]);
    const resumed = decide(run.state, { now: hourEnd });
    expect(resumed).toEqual([expect.objectContaining({ type: "RunResumed", data: { auto: true } })]);
    run.record(...resumed);
    expect(ofType(decide(run.state, { now: hourEnd, budget: { hourMs: HOUR, hourUsd: 0, dayUsd: 0.05 } }), "LLMRequested")).toHaveLength(1);
  });

  it("pauses until the day ends when the day is spent", () => {
    const daily = agentSnapshot({ budget: { perHourUsd: 1, perDayUsd: 0.1 } });
    const events = decide(afterSteps(daily, 1).state, { now: NOW, budget: { hourMs: HOUR, hourUsd: 0, dayUsd: 0.1 } });
    expect(events[0]?.data).toMatchObject({ limit: "per_day_usd", until: (Math.floor(NOW / (24 * HOUR)) + 1) * 24 * HOUR });
  });
});

describe("self-management builtins", () => {
  const agent = agentSnapshot({
    limits: { maxCostUsd: 1 },
    budget: { perHourUsd: 0.5 },
    tools: [addTool, ...(["check_current_spend_since", "spawn_task", "list_tasks", "wait_for", "cancel_task"] as const).map(builtin)],
  });
  const windows = { hourMs: HOUR, hourUsd: 0.2, dayUsd: 0.3 };
  /** A run that spent 0.01 and then called `name`. */
  const calling = (...calls: [string, unknown][]) => {
    const run = afterSteps(agent, 1);
    run.llmRequested(2).responded(2, { toolCalls: calls.map(([name, args], i) => toolCall(`k${i}`, name, args)) });
    return run;
  };

  it("check_current_spend_since answers the run's and the agent's spend since then, and what the limits and budget leave", () => {
    const run = calling(["check_current_spend_since", { time: new Date(T0 - HOUR).toISOString() }]);
    const spendSince = { s2c0: { since: T0 - HOUR, run: { tokens: 150, costUsd: 0.01 }, agent: { tokens: 900, costUsd: 0.06 } } };

    expect(decide(run.state, { now: NOW, budget: windows }).map((e) => e.type)).toEqual(["ToolCallRequested"]);
    settle(run, { now: NOW, budget: windows, spendSince });

    const result = JSON.parse(ofType(run.events, "ToolCallCompleted").at(-1)!.data.result);
    expect(result).toMatchObject({
      run: { cost_usd: 0.01, tokens: 150 },
      agent: { name: "assistant", cost_usd: 0.06, tokens: 900 },
      limits: { max_cost_usd: 1, cost_usd_remaining: 0.99 },
      budget: { per_hour_usd: 0.5, spent_this_hour_usd: 0.2, remaining_this_hour_usd: 0.3 },
    });
  });

  it("spawn_task starts a detached child and completes at once with its id; list_tasks shows it", () => {
    const run = calling(["spawn_task", { agent: "writer", message: "write a poem" }]);
    settle(run, { now: NOW, budget: windows });

    const requested = ofType(run.events, "ChildRunRequested")[0]!;
    expect(requested.data).toMatchObject({ callId: "s2c0", agent: "writer", input: "write a poem", detached: true });
    const childId = requested.data.childRunId;
    expect(JSON.parse(ofType(run.events, "ToolCallCompleted").at(-1)!.data.result)).toEqual({ run_id: childId, agent: "writer", status: "Running" });
    expect(run.state.children).toEqual([{ runId: childId, callId: "s2c0", agent: "writer", status: "Running" }]);

    const [effect] = effectsOf(run.state, { ...requested, seq: 99 }, NOW);
    expect(effect).toMatchObject({ kind: "append", expectNew: true, event: { type: "RunRequested", runId: childId, data: { parent: { runId: RUN_ID, callId: "s2c0" }, detached: true } } });
  });

  it("wait_for waits until the spawned runs end, then completes with their outputs", () => {
    const run = calling(["spawn_task", { agent: "writer", message: "a" }], ["spawn_task", { agent: "writer", message: "b" }]);
    settle(run, { now: NOW, budget: windows });
    const [a, b] = run.state.children!.map((c) => c.runId);
    run.llmRequested(3).responded(3, { toolCalls: [toolCall("w", "wait_for", { run_ids: [a, b] })] });
    settle(run, { now: NOW, budget: windows });
    expect(run.last.type).toBe("TasksAwaited");

    run.add("ChildRunEnded", { childRunId: a!, status: "Completed", output: "poem a", spend: { tokens: 10, costUsd: 0.001 } });
    expect(decide(run.state, { now: NOW, budget: windows })).toEqual([]);
    run.add("ChildRunEnded", { childRunId: b!, status: "Failed", error: "boom", spend: { tokens: 20, costUsd: 0.002 } });

    const [done] = decide(run.state, { now: NOW, budget: windows });
    expect(done?.type).toBe("ToolCallCompleted");
    expect(JSON.parse((done as EventOf<"ToolCallCompleted">).data.result)).toEqual([
      { run_id: a, agent: "writer", status: "Completed", output: "poem a" },
      { run_id: b, agent: "writer", status: "Failed", error: "boom" },
    ]);
    expect(run.state.descendants).toEqual({ tokens: 30, costUsd: 0.003 });
  });

  it("wait_for refuses ids of runs it did not spawn", () => {
    const run = calling(["wait_for", { run_ids: ["rstranger"] }]);
    settle(run, { now: NOW, budget: windows });
    expect(ofType(run.events, "ToolCallFailed")[0]?.data.error).toMatch(/unknown: rstranger/);
  });

  it("cancel_task cancels a spawned run through an effect on the child's stream", () => {
    const run = calling(["spawn_task", { agent: "writer", message: "a" }]);
    settle(run, { now: NOW, budget: windows });
    const child = run.state.children![0]!.runId;
    run.llmRequested(3).responded(3, { toolCalls: [toolCall("x", "cancel_task", { run_id: child })] });
    settle(run, { now: NOW, budget: windows });

    const cancel = (run.events as (RunEvent & { seq: number })[]).find((e) => e.type === "TaskCancelRequested")!;
    expect(effectsOf(run.state, cancel, NOW)).toEqual([
      expect.objectContaining({ kind: "append", event: expect.objectContaining({ type: "RunCancelled", runId: child, id: `${child}:cancelled` }) }),
    ]);
  });

  it("a cancelled run cancels the children it still runs, and a detached child reports its end and spend to its parent", () => {
    const run = calling(["spawn_task", { agent: "writer", message: "a" }]);
    settle(run, { now: NOW, budget: windows });
    const child = run.state.children![0]!.runId;
    run.add("RunCancelled", { reason: "cancelled by ann" });

    expect(effectsOf(run.state, run.last, NOW)).toEqual([
      { kind: "cancelled", runId: RUN_ID },
      expect.objectContaining({ event: expect.objectContaining({ type: "RunCancelled", runId: child, data: { reason: `its parent run ${RUN_ID} was cancelled` } }) }),
    ]);

    const spawnedChild = new RunHistory(child)
      .requested({ agent: "writer", depth: 1, parent: { runId: RUN_ID, callId: "s2c0" }, detached: true })
      .started(agentSnapshot({ name: "writer" }))
      .llmRequested(1)
      .add("LLMResponded", { step: 1, content: "hi", toolCalls: [], usage: usage(10, 5), model: "m", finishReason: "stop", durationMs: 1, costUsd: 0.002 })
      .add("RunCancelled", { reason: "its parent was cancelled" });
    expect(effectsOf(spawnedChild.state, spawnedChild.last, NOW)).toEqual([
      { kind: "cancelled", runId: child },
      expect.objectContaining({
        event: expect.objectContaining({ type: "ChildRunEnded", runId: RUN_ID, data: { childRunId: child, status: "Cancelled", error: "its parent was cancelled", spend: { tokens: 15, costUsd: 0.002 } } }),
      }),
    ]);
    // A cancel that arrives after the run ended changes nothing and does nothing.
    const ended = new RunHistory("rdone").requested().started().llmRequested(1).responded(1, { content: "x" }).add("RunCompleted", { output: "x" }).add("RunCancelled", {});
    expect(ended.state.status).toBe("Completed");
    expect(effectsOf(ended.state, ended.last, NOW)).toEqual([]);
  });
});
