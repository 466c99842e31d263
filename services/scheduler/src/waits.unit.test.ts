import { argsDigest, findCall, type EventOf, type EventType, type RunEvent } from "@smallchain/shared";
import { describe, expect, it } from "vitest";
import { decide } from "./decide.js";
import { effectsOf } from "./effects.js";
import { RUN_ID, RunHistory, T0, addTool, agentSnapshot, approvedAddTool, callbackTool, humanTool, operatorTool, sleepTool, toolCall } from "./testing.js";

const NOW = T0 + 1_000_000;
const agent = agentSnapshot({ tools: [addTool, approvedAddTool, humanTool, sleepTool, callbackTool, { ...operatorTool, approval: { onTimeout: "fail" } }] });
const tokens = () => {
  let i = 0;
  return () => `secret${++i}`;
};

function ofType<T extends EventType>(events: RunEvent[], type: T): EventOf<T>[] {
  return events.filter((e): e is EventOf<T> => e.type === type);
}

/** A run whose first LLM call asked for these tool calls. */
function stepWith(...calls: Parameters<typeof toolCall>[]): RunHistory {
  return new RunHistory()
    .requested()
    .started(agent)
    .llmRequested(1)
    .responded(1, { toolCalls: calls.map((c) => toolCall(...c)) });
}

/** Records what the scheduler decides, as it would. */
function settle(run: RunHistory, now = NOW): RunHistory {
  for (let i = 0; i < 10; i++) {
    const events = decide(run.state, { now, newToken: tokens() });
    if (events.length === 0) return run;
    run.record(...events);
  }
  throw new Error("decisions did not settle");
}

describe("approvals", () => {
  it("records the call, then waits for approval with a deadline and the arguments' digest, issuing no command", () => {
    const run = stepWith(["c1", "careful_add", { a: 1, b: 2 }]);

    const events = decide(run.state, { now: NOW });

    expect(events.map((e) => e.type)).toEqual(["ToolCallRequested", "ToolCallAwaitingApproval"]);
    expect(ofType(events, "ToolCallAwaitingApproval")[0]?.data).toEqual({
      callId: "s1c0",
      tool: "careful_add",
      digest: argsDigest({ a: 1, b: 2 }),
      dueAt: NOW + 3_600_000,
      onTimeout: "reject",
    });
    run.record(...events);
    expect(findCall(run.state, "s1c0")?.status).toBe("awaitingApproval");
    expect(run.events.flatMap((e) => effectsOf(run.state, e, NOW)).filter((e) => e.kind === "tool")).toEqual([]);
    expect(decide(run.state, { now: NOW })).toEqual([]);
  });

  it("after a crash between the two appends records just the approval wait, and never issues the command", () => {
    const run = stepWith(["c1", "careful_add", { a: 1, b: 2 }]);
    const [requested] = decide(run.state, { now: NOW });
    run.record(requested!);

    expect(effectsOf(run.state, run.last, NOW)).toEqual([]);
    expect(decide(run.state, { now: NOW }).map((e) => e.type)).toEqual(["ToolCallAwaitingApproval"]);
  });

  it("issues the tool command once approved, with the recorded arguments", () => {
    const run = settle(stepWith(["c1", "careful_add", { a: 1, b: 2 }])).add("ToolCallApproved", { callId: "s1c0", by: "ann" });

    const effects = effectsOf(run.state, run.last, NOW);

    expect(effects).toContainEqual({ kind: "untimer", runId: RUN_ID, callId: "s1c0" });
    expect(effects).toContainEqual({
      kind: "tool",
      command: { id: `${RUN_ID}:tool:s1c0`, runId: RUN_ID, callId: "s1c0", step: 1, tool: approvedAddTool, args: { a: 1, b: 2 } },
    });
    expect(decide(run.state, { now: NOW })).toEqual([]);
  });

  it("hands a rejection to the model as the call's result, with who and why, and moves on", () => {
    const run = settle(stepWith(["c1", "careful_add", { a: 1, b: 2 }])).add("ToolCallRejected", { callId: "s1c0", by: "ann", comment: "use subtract" });

    expect(findCall(run.state, "s1c0")?.status).toBe("rejected");
    expect(run.state.newMessages.at(-1)).toEqual({
      role: "tool",
      tool_call_id: "c1",
      content: "The tool call was rejected by ann and did not run. Comment: use subtract",
    });
    expect(decide(run.state, { now: NOW }).map((e) => e.type)).toEqual(["LLMRequested"]);
  });

  it("rejects by itself when nobody decides before the deadline", () => {
    const run = settle(stepWith(["c1", "careful_add", { a: 1, b: 2 }]));

    expect(decide(run.state, { now: NOW + 3_599_999 })).toEqual([]);
    const [fired] = decide(run.state, { now: NOW + 3_600_000 });

    expect(fired).toMatchObject({ id: `${RUN_ID}:done:s1c0`, type: "TimerFired", data: { callId: "s1c0", outcome: "rejected" } });
    run.record(fired!);
    expect(findCall(run.state, "s1c0")?.status).toBe("rejected");
  });

  it("delegates an approved agent call to its child run", () => {
    const run = settle(stepWith(["c1", "calculator_operator", { message: "add 1 and 2" }]));
    expect(findCall(run.state, "s1c0")?.status).toBe("awaitingApproval");

    run.add("ToolCallApproved", { callId: "s1c0" });

    expect(decide(run.state, { now: NOW }).map((e) => e.type)).toEqual(["ChildRunRequested"]);
  });
});

describe("human input", () => {
  it("asks the question and waits without a deadline when the tool has none", () => {
    const run = stepWith(["c1", "ask", { question: "Which account?" }]);

    const events = decide(run.state, { now: NOW });

    expect(events.map((e) => e.type)).toEqual(["ToolCallRequested", "HumanInputRequested"]);
    expect(ofType(events, "HumanInputRequested")[0]?.data).toEqual({ callId: "s1c0", question: "Which account?" });
    run.record(...events);
    expect(decide(run.state, { now: NOW + 365 * 86_400_000 })).toEqual([]);
  });

  it("gives the answer to the model as the tool's result", () => {
    const run = settle(stepWith(["c1", "ask", { question: "Which account?" }])).add("HumanInputReceived", { callId: "s1c0", answer: "savings" });

    expect(run.state.newMessages.at(-1)).toEqual({ role: "tool", tool_call_id: "c1", content: "savings" });
    expect(decide(run.state, { now: NOW }).map((e) => e.type)).toEqual(["LLMRequested"]);
  });
});

describe("sleep_until", () => {
  it("schedules a timer at the given time and wakes at it, not before", () => {
    const due = "2030-01-01T00:00:00.000Z";
    const run = settle(stepWith(["c1", "sleep_until", { time: due }]));

    expect(findCall(run.state, "s1c0")).toMatchObject({ status: "sleeping", deadline: { dueAt: Date.parse(due), onTimeout: "wake" } });
    expect(effectsOf(run.state, run.last, NOW)).toEqual([{ kind: "timer", runId: RUN_ID, callId: "s1c0", dueAt: Date.parse(due) }]);

    const later = Date.parse(due) + 5;
    const [fired] = decide(run.state, { now: later });
    expect(fired).toMatchObject({ type: "TimerFired", data: { outcome: "completed", result: `It is ${new Date(later).toISOString()}; slept until ${due}.` } });
  });

  it("wakes at once when the time has passed", () => {
    const run = settle(stepWith(["c1", "sleep_until", { time: new Date(T0).toISOString() }]));

    expect(run.events.map((e) => e.type).slice(-3)).toEqual(["TimerScheduled", "TimerFired", "LLMRequested"]);
  });

  it("fails the call, saying what it needs, when the time is not a timestamp", () => {
    const run = settle(stepWith(["c1", "sleep_until", { time: "tomorrow-ish" }]));

    const failed = ofType([...run.events], "ToolCallFailed")[0];
    expect(failed?.data.error).toContain("ISO 8601");
    expect(failed?.data.error).toContain("tomorrow-ish");
  });
});

describe("callbacks", () => {
  it("waits with a token naming the run and call, and hands the arguments out with it", () => {
    const run = settle(stepWith(["c1", "pay", { invoice: 42 }]));
    const wait = ofType([...run.events], "ToolCallAwaitingCallback")[0]!;

    expect(wait.data).toEqual({ callId: "s1c0", token: `${RUN_ID}-s1c0-secret1`, dueAt: NOW + 60_000, onTimeout: "fail" });
    expect(findCall(run.state, "s1c0")?.tokenDigest).toMatch(/^[0-9a-f]{64}$/);
    const effects = effectsOf(run.state, wait as never, NOW);
    expect(effects).toContainEqual({ kind: "timer", runId: RUN_ID, callId: "s1c0", dueAt: NOW + 60_000 });
    expect(effects).toContainEqual({
      kind: "tool",
      command: { id: `${RUN_ID}:tool:s1c0`, runId: RUN_ID, callId: "s1c0", step: 1, tool: callbackTool, args: { invoice: 42 }, token: `${RUN_ID}-s1c0-secret1` },
    });
  });

  it("fails the call when no callback arrives in time", () => {
    const run = settle(stepWith(["c1", "pay", { invoice: 42 }]));

    run.record(...decide(run.state, { now: NOW + 60_000 }));

    expect(findCall(run.state, "s1c0")?.status).toBe("failed");
    expect(run.state.newMessages.at(-1)?.content).toMatch(/^error: timed out: not answered by its callback by /);
  });
});

describe("parallel waits", () => {
  it("calls the model again only when every call of the step has its result", () => {
    const run = settle(
      stepWith(["c1", "add", { a: 1, b: 2 }], ["c2", "careful_add", { a: 3, b: 4 }], ["c3", "ask", { question: "ok?" }], ["c4", "careful_add", { a: 5, b: 6 }]),
    );
    const statuses = () => (run.state.turn.phase === "tools" ? run.state.turn.calls.map((c) => c.status) : []);
    expect(statuses()).toEqual(["requested", "awaitingApproval", "awaitingHuman", "awaitingApproval"]);

    run.completed("s1c0", "3").add("ToolCallApproved", { callId: "s1c1" }).add("ToolCallRejected", { callId: "s1c3", comment: "no" });
    expect(decide(run.state, { now: NOW })).toEqual([]);
    run.completed("s1c1", "7");
    expect(decide(run.state, { now: NOW })).toEqual([]);
    run.add("HumanInputReceived", { callId: "s1c2", answer: "yes" });

    expect(statuses()).toEqual(["completed", "completed", "completed", "rejected"]);
    expect(decide(run.state, { now: NOW }).map((e) => e.type)).toEqual(["LLMRequested"]);
    expect(run.state.newMessages.filter((m) => m.role === "tool").map((m) => m.content)).toEqual([
      "3",
      "The tool call was rejected and did not run. Comment: no",
      "7",
      "yes",
    ]);
  });

  it("ignores a second result for a call that has one", () => {
    const run = settle(stepWith(["c1", "careful_add", { a: 1, b: 2 }])).add("ToolCallRejected", { callId: "s1c0" });
    const before = run.state;

    run.add("ToolCallApproved", { callId: "s1c0" }).add("TimerFired", { callId: "s1c0", dueAt: NOW, outcome: "rejected", result: "late" });

    expect(findCall(run.state, "s1c0")?.status).toBe("rejected");
    expect(run.state.messageCount).toBe(before.messageCount);
  });
});
