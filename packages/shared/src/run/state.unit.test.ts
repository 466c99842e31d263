import { describe, expect, it } from "vitest";
import { LlmConfig } from "../config/schema.js";
import type { EventData, EventType, RecordedEvent, RunEvent } from "../events.js";
import type { ChatMessage } from "./messages.js";
import type { AgentSnapshot } from "./spec.js";
import { decodeView, encodeView } from "./views.js";
import { awaitsWorkers, evolve, findCall, initialState, laneOf, laneSeq, messagesOf, pastInvalid, type RunState } from "./state.js";

const RUN_ID = "rtest";
const T0 = 1_700_000_000_000;

const agent: AgentSnapshot = {
  name: "assistant",
  systemPrompt: "you help with sums",
  maxSteps: 10,
  llm: LlmConfig.parse({ name: "test-llm", provider: "mock", replies: [{ content: "done" }] }),
  tools: [],
};

/** Builds a run's recorded events with increasing `seq` (and `at`), as read back from the stream. */
function history() {
  const events: RecordedEvent[] = [];
  const builder = {
    events,
    add<T extends EventType>(type: T, data: EventData<T>) {
      const seq = events.length + 1;
      events.push({ ...({ id: `${RUN_ID}:e${seq}`, type, v: 1, runId: RUN_ID, at: T0 + seq, data } as RunEvent), seq });
      return builder;
    },
    requested(input = "add 3 and 4") {
      return builder.add("RunRequested", { agent: "assistant", input, depth: 0, rootRunId: RUN_ID });
    },
    started(snapshot: AgentSnapshot = agent) {
      return builder.add("RunStarted", { agent: snapshot });
    },
    llm(step: number, messageCount = 0) {
      return builder.add("LLMRequested", { step, llm: "test-llm", messageCount });
    },
    responded(
      step: number,
      reply: { content?: string | null; toolCalls?: { id: string; name: string; arguments: string }[]; usage?: EventData<"LLMResponded">["usage"] },
    ) {
      return builder.add("LLMResponded", {
        step,
        content: reply.content ?? null,
        toolCalls: reply.toolCalls ?? [],
        usage: reply.usage ?? { promptTokens: 0, completionTokens: 0, cachedTokens: 0 },
        model: "mock",
        finishReason: null,
        durationMs: 1,
      });
    },
  };
  return builder;
}

function fold(events: readonly RecordedEvent[], from: RunState = initialState(RUN_ID)): RunState {
  return events.reduce(evolve, from);
}

/** The context window the events build, message by message. */
function windowOf(events: readonly RecordedEvent[]): ChatMessage[] {
  const messages: ChatMessage[] = [];
  let state = initialState(RUN_ID);
  for (const event of events) {
    if (event.seq <= state.lastSeq) continue;
    messages.push(...messagesOf(state, event));
    state = evolve(state, event);
  }
  return messages;
}

const twoCalls = [
  { id: "call_a", name: "add", arguments: '{"a":3,"b":4}' },
  { id: "call_b", name: "add", arguments: '{"a":5,"b":3}' },
];

/** A run through two steps with two tool calls, answered at the end. */
function fullRun() {
  return history()
    .requested()
    .started()
    .llm(1)
    .responded(1, { toolCalls: twoCalls, usage: { promptTokens: 100, completionTokens: 20, cachedTokens: 10 } })
    .add("ToolCallRequested", { step: 1, callId: "s1c0", toolCallId: "call_a", tool: "add", args: { a: 3, b: 4 }, kind: "tool" })
    .add("ToolCallRequested", { step: 1, callId: "s1c1", toolCallId: "call_b", tool: "add", args: { a: 5, b: 3 }, kind: "tool" })
    .add("ToolCallCompleted", { callId: "s1c0", result: "7" })
    .add("ToolCallCompleted", { callId: "s1c1", result: "8" })
    .llm(2)
    .responded(2, { content: "15", usage: { promptTokens: 150, completionTokens: 5, cachedTokens: 0 } })
    .add("RunCompleted", { output: "15" });
}

describe("evolve", () => {
  it("takes the run's identity and input from RunRequested", () => {
    const state = fold(history().add("RunRequested", { agent: "assistant", input: "hi", depth: 2, rootRunId: "rroot", name: "n", task: "t", parent: { runId: "rp", callId: "s1c0" } }).events);

    expect(state).toMatchObject({
      runId: RUN_ID,
      agentName: "assistant",
      input: "hi",
      depth: 2,
      rootRunId: "rroot",
      name: "n",
      task: "t",
      parent: { runId: "rp", callId: "s1c0" },
      status: "Requested",
      createdAt: T0 + 1,
      lastSeq: 1,
      eventCount: 1,
    });
  });

  it("ignores events at or below lastSeq, so folding them again changes nothing", () => {
    const { events } = fullRun();
    const state = fold(events);

    expect(fold(events, state)).toBe(state);
    for (const event of events) expect(evolve(state, event)).toBe(state);
  });

  it("ignores a redelivered event in the middle of a fold", () => {
    const { events } = fullRun();
    const withRepeats = events.flatMap((e) => [e, e]);

    expect(fold(withRepeats)).toEqual(fold(events));
  });

  it("records the stream sequence, the event count and the time of the last event", () => {
    const { events } = fullRun();

    expect(fold(events)).toMatchObject({ lastSeq: events.length, eventCount: events.length, updatedAt: events.at(-1)!.at });
  });

  it("guards decisions by the last event on the run's subject of decisions: the workers' results do not move it", () => {
    const results = new Set(["LLMResponded", "ToolCallCompleted"]);
    const events = fullRun().events.map((e) => (results.has(e.type) ? { ...e, result: true as const } : e));
    const byStep = events.map((_, i) => fold(events.slice(0, i + 1)));

    // RunRequested 1, RunStarted 2, LLMRequested 3, LLMResponded 4 (a result), ToolCallRequested 5 and 6, two results
    // 7 and 8, LLMRequested 9, LLMResponded 10 (a result), RunCompleted 11.
    expect(byStep.map((s) => s.guardSeq)).toEqual([1, 2, 3, 3, 5, 6, 6, 6, 9, 9, 11]);
    expect(byStep.map((s) => s.lastSeq)).toEqual(events.map((e) => e.seq));
    // Where the run is does not depend on which subject its events came on.
    expect({ ...fold(events), guardSeq: 0 }).toEqual({ ...fold(fullRun().events), guardSeq: 0 });
  });

  it("knows when a worker may still append a result: an LLM call out, or a tool call sent and not answered", () => {
    const { events } = fullRun();
    const outstanding = events.map((_, i) => awaitsWorkers(fold(events.slice(0, i + 1))));

    // After LLMRequested 3 and 9; after each ToolCallRequested (5, 6) until both results (7, 8) are in.
    expect(outstanding).toEqual([false, false, true, false, true, true, true, false, true, false, false]);
  });

  it("puts every write on the lane of the state it was made from, and guards each lane by its own last event", () => {
    const results = new Set(["LLMResponded", "ToolCallCompleted"]);
    const plain = fullRun().events;
    const lanes = plain.map((e, i) => (results.has(e.type) ? "res" : laneOf(fold(plain.slice(0, i)))));
    // Requested: .ev; an LLM call to decide: .llm; the step's two calls out: .tool; both in: .llm; answered: .ev.
    expect(lanes).toEqual(["ev", "ev", "llm", "res", "tool", "tool", "res", "res", "llm", "res", "ev"]);
    const events = plain.map((e, i) => {
      const lane = lanes[i];
      return lane === "res" ? { ...e, result: true as const } : lane === "llm" || lane === "tool" ? { ...e, lane } : e;
    });
    const byStep = events.map((_, i) => fold(events.slice(0, i + 1)));

    expect(byStep.map((s) => [s.guardSeq, s.llmSeq, s.toolSeq])).toEqual([
      [1, 0, 0],
      [2, 0, 0],
      [2, 3, 0],
      [2, 3, 0],
      [2, 3, 5],
      [2, 3, 6],
      [2, 3, 6],
      [2, 3, 6],
      [2, 9, 6],
      [2, 9, 6],
      [11, 9, 6],
    ]);
    expect(["ev", "llm", "tool"].map((l) => laneSeq(byStep[8]!, l as "ev" | "llm" | "tool"))).toEqual([2, 9, 6]);
    // Where the run is does not depend on which subjects its events came on.
    const where = (s: RunState) => ({ ...s, guardSeq: 0, llmSeq: 0, toolSeq: 0 });
    expect(where(fold(events))).toEqual(where(fold(plain)));
  });

  it("passes over a decision about a call a result had completed, stored on the tool lane after the next LLM call", () => {
    // A writer that had not seen the step's last result decides about its call (a timeout, say) while another, that
    // had, decides the next LLM call on the llm lane: both land, the result before them (docs/performance.md, session 18).
    const events = fullRun().events.slice(0, 9); // ... both results 7 and 8, LLMRequested 9
    const late: RecordedEvent = { id: `${RUN_ID}:late`, type: "ToolCallFailed", v: 1, runId: RUN_ID, at: T0 + 100, data: { callId: "s1c0", error: "timed out" }, seq: 10, lane: "tool" };
    const before = fold(events);
    const after = fold([...events, late]);

    expect(after).toMatchObject({ lastSeq: 10, toolSeq: 10, eventCount: before.eventCount + 1 });
    const where = (s: RunState) => ({ ...s, lastSeq: 0, toolSeq: 0, eventCount: 0, updatedAt: 0 });
    expect(where(after)).toEqual(where(before));
  });

  it("finds the same lane from a stored view as from the whole fold (Control checks inputs against the view)", () => {
    const { events } = fullRun();
    const lanes = events.map((_, i) => laneOf(fold(events.slice(0, i + 1))));
    expect(events.map((_, i) => laneOf(decodeView(encodeView(fold(events.slice(0, i + 1))))))).toEqual(lanes);
    expect(new Set(lanes)).toEqual(new Set(["ev", "llm", "tool"]));
  });

  it("puts every write of a run that is not running on .ev: requested, paused, ended", () => {
    const { events } = fullRun();
    expect(laneOf(initialState(RUN_ID))).toBe("ev");
    expect(laneOf(fold(events))).toBe("ev");
    expect(laneOf({ ...fold(events.slice(0, 3)), status: "Paused" })).toBe("ev");
    expect(laneOf({ ...fold(events.slice(0, 3)), status: "Running" })).toBe("llm");
  });

  it("steps past an undecodable event: reading resumes after it, and writes are guarded past it only on its lane", () => {
    const state = fold(fullRun().events.slice(0, 4)); // lastSeq 4, guardSeq 4

    expect(pastInvalid(state, 6, undefined)).toMatchObject({ lastSeq: 6, guardSeq: 4, llmSeq: 0, toolSeq: 0 });
    expect(pastInvalid(state, 6, "ev")).toMatchObject({ lastSeq: 6, guardSeq: 6 });
    expect(pastInvalid(state, 6, "llm")).toMatchObject({ lastSeq: 6, guardSeq: 4, llmSeq: 6, toolSeq: 0 });
    expect(pastInvalid(state, 6, "tool")).toMatchObject({ lastSeq: 6, guardSeq: 4, llmSeq: 0, toolSeq: 6 });
    expect(pastInvalid(state, 3, "ev")).toBe(state);
    expect(pastInvalid({ ...state, guardSeq: 2 }, 3, "ev")).toMatchObject({ lastSeq: 4, guardSeq: 3 });
    expect(pastInvalid(state, 3, "tool")).toMatchObject({ lastSeq: 4, toolSeq: 3 });
  });

  it("accumulates token usage over every LLMResponded", () => {
    const state = fold(fullRun().events);

    expect(state.usage).toEqual({ promptTokens: 250, completionTokens: 25, cachedTokens: 10, totalTokens: 275 });
  });

  it("follows the run through its statuses and steps", () => {
    const run = history().requested().started().llm(1);
    expect(fold(run.events)).toMatchObject({ status: "Running", step: 1, turn: { phase: "llm", step: 1 }, agent });

    run.responded(1, { content: "7" });
    expect(fold(run.events).turn).toEqual({ phase: "answered", step: 1, content: "7" });

    run.add("RunCompleted", { output: "7" });
    expect(fold(run.events)).toMatchObject({ status: "Completed", output: "7", turn: { phase: "idle" } });
  });

  it("opens one pending call per tool call of the answer, with Smallchain's call ids", () => {
    const state = fold(history().requested().started().llm(1).responded(1, { toolCalls: twoCalls }).events);

    expect(state.turn).toEqual({
      phase: "tools",
      step: 1,
      calls: [
        { callId: "s1c0", toolCallId: "call_a", tool: "add", arguments: '{"a":3,"b":4}', status: "pending" },
        { callId: "s1c1", toolCallId: "call_b", tool: "add", arguments: '{"a":5,"b":3}', status: "pending" },
      ],
    });
  });

  it("remembers the newest tool result, and a failure as an error", () => {
    const run = history().requested().started().llm(1).responded(1, { toolCalls: twoCalls });
    run.add("ToolCallCompleted", { callId: "s1c0", result: "7" });
    expect(fold(run.events).lastToolResult).toBe("7");

    run.add("ToolCallFailed", { callId: "s1c1", error: "boom" });
    const state = fold(run.events);
    expect(state.lastToolResult).toBe("error: boom");
    expect(findCall(state, "s1c1")?.status).toBe("failed");
  });

  it("keeps a delegated call delegated when its ToolCallRequested lands after the ChildRunRequested", () => {
    const run = history()
      .requested()
      .started()
      .llm(1)
      .responded(1, { toolCalls: [{ id: "call_a", name: "operator", arguments: '{"message":"m"}' }] })
      .add("ChildRunRequested", { callId: "s1c0", childRunId: "rchild", agent: "operator", input: "m" })
      .add("ToolCallRequested", { step: 1, callId: "s1c0", toolCallId: "call_a", tool: "operator", args: { message: "m" }, kind: "agent" });

    expect(findCall(fold(run.events), "s1c0")).toMatchObject({ status: "delegated", childRunId: "rchild" });
  });

  describe("messageCount", () => {
    it("counts the system prompt and the user message when the run starts", () => {
      expect(fold(history().requested().started().events).messageCount).toBe(2);
    });

    it("omits the system message when the system prompt is empty", () => {
      const { events } = history().requested().started({ ...agent, systemPrompt: "" });

      expect(fold(events).messageCount).toBe(1);
      expect(windowOf(events)).toEqual([{ role: "user", content: "add 3 and 4" }]);
    });

    it("tracks exactly the messages messagesOf adds, event after event", () => {
      const { events } = fullRun();
      let state = initialState(RUN_ID);
      let count = 0;
      for (const event of events) {
        count += messagesOf(state, event).length;
        state = evolve(state, event);
        expect(state.messageCount).toBe(count);
      }
      // system, user, assistant (tool calls), tool, tool, assistant (answer)
      expect(state.messageCount).toBe(6);
      expect(windowOf(events)).toEqual([
        { role: "system", content: "you help with sums" },
        { role: "user", content: "add 3 and 4" },
        { role: "assistant", content: null, tool_calls: twoCalls },
        { role: "tool", tool_call_id: "call_a", content: "7" },
        { role: "tool", tool_call_id: "call_b", content: "8" },
        { role: "assistant", content: "15" },
      ]);
    });

    it("adds no message for a duplicate result of a finished call", () => {
      const run = history().requested().started().llm(1).responded(1, { toolCalls: twoCalls });
      run.add("ToolCallCompleted", { callId: "s1c0", result: "7" });
      const before = fold(run.events).messageCount;

      run.add("ToolCallCompleted", { callId: "s1c0", result: "7" });
      expect(fold(run.events).messageCount).toBe(before);
      run.add("ToolCallFailed", { callId: "s1c0", error: "late timeout" });
      expect(fold(run.events).messageCount).toBe(before);
      expect(windowOf(run.events).filter((m) => m.role === "tool")).toHaveLength(1);
    });

    it("adds no message for a result of a call outside the current step", () => {
      const run = history().requested().started().llm(1).responded(1, { toolCalls: twoCalls });
      run.add("ToolCallCompleted", { callId: "s1c0", result: "7" }).add("ToolCallCompleted", { callId: "s1c1", result: "8" }).llm(2);
      const before = fold(run.events).messageCount;

      run.add("ToolCallCompleted", { callId: "s1c0", result: "7" }).add("ToolCallCompleted", { callId: "s9c0", result: "?" });

      expect(fold(run.events).messageCount).toBe(before);
    });

    it("adds nothing for events that are not messages", () => {
      const run = history().requested().started();
      const before = fold(run.events).messageCount;
      run
        .llm(1)
        .add("LLMFailed", { step: 1, error: "x", retryable: true })
        .add("RunFailed", { reason: "x" });

      expect(fold(run.events).messageCount).toBe(before);
    });
  });

  describe("rebuilding", () => {
    it("gives a deep-equal state when the same events are folded twice", () => {
      const { events } = fullRun();

      const first = fold(events);
      const second = fold(structuredClone(events));

      expect(second).toEqual(first);
      expect(second).not.toBe(first);
    });

    it("gives the same state folding in pieces as folding at once", () => {
      const { events } = fullRun();
      const half = Math.floor(events.length / 2);

      expect(fold(events.slice(half), fold(events.slice(0, half)))).toEqual(fold(events));
    });

    it("does not modify the state it folds into", () => {
      const { events } = fullRun();
      const before = fold(events.slice(0, 5));
      const snapshot = structuredClone(before);

      fold(events.slice(5), before);

      expect(before).toEqual(snapshot);
    });
  });
});

describe("stored views", () => {
  it("read a view stored before results had a subject of their own as guarded by its last event", () => {
    const { guardSeq: _, ...old } = fold(fullRun().events.slice(0, 8));

    expect(decodeView(encodeView(old as RunState))).toMatchObject({ lastSeq: 8, guardSeq: 8 });
    expect(decodeView(encodeView({ ...(old as RunState), guardSeq: 6 }))).toMatchObject({ lastSeq: 8, guardSeq: 6 });
  });
});
