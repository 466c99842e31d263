import { describe, expect, it, vi } from "vitest";
import {
  DecodeError,
  LlmConfig,
  RetryableError,
  TerminalError,
  contextWindowOf,
  evolve,
  initialState,
  type AgentSnapshot,
  type ChatMessage,
  type EventData,
  type EventType,
  type Logger,
  type RecordedEvent,
  type RunEvent,
} from "@smallchain/shared";
import { ContextReader, type RunReader } from "./context-reader.js";

const RUN = "rctx";

const agent: AgentSnapshot = {
  name: "adder",
  systemPrompt: "you add numbers",
  maxSteps: 10,
  llm: LlmConfig.parse({ name: "m", provider: "mock", replies: [{ content: "done" }] }),
  tools: [],
};

/** A run's stream as the scheduler and workers write it: four LLM calls, a tool call between each two. */
function runEvents(runId = RUN): RecordedEvent[] {
  const data: [EventType, unknown][] = [
    ["RunRequested", { agent: "adder", input: "add 3 and 4, then 5", depth: 0, rootRunId: runId }],
    ["RunStarted", { agent }],
    ["LLMRequested", { step: 1, llm: "m", messageCount: 2 }],
    ["LLMResponded", responded(1, [{ id: "call_a", name: "add", arguments: '{"a":3,"b":4}' }])],
    ["ToolCallRequested", { step: 1, callId: "s1c0", toolCallId: "call_a", tool: "add", args: { a: 3, b: 4 }, kind: "tool" }],
    ["ToolCallCompleted", { callId: "s1c0", result: "7" }],
    ["LLMRequested", { step: 2, llm: "m", messageCount: 4 }],
    ["LLMResponded", responded(2, [{ id: "call_b", name: "add", arguments: '{"a":7,"b":5}' }])],
    ["ToolCallRequested", { step: 2, callId: "s2c0", toolCallId: "call_b", tool: "add", args: { a: 7, b: 5 }, kind: "tool" }],
    ["ToolCallCompleted", { callId: "s2c0", result: "12" }],
    ["LLMRequested", { step: 3, llm: "m", messageCount: 6 }],
    ["LLMResponded", responded(3, [{ id: "call_c", name: "add", arguments: '{"a":12,"b":1}' }])],
    ["ToolCallRequested", { step: 3, callId: "s3c0", toolCallId: "call_c", tool: "add", args: { a: 12, b: 1 }, kind: "tool" }],
    ["ToolCallCompleted", { callId: "s3c0", result: "13" }],
    ["LLMRequested", { step: 4, llm: "m", messageCount: 8 }],
  ];
  return data.map(([type, d], i) => ({ ...({ id: `${runId}:e${i + 1}`, type, v: 1, runId, at: 1000 + i, data: d } as RunEvent), seq: i + 1 }));
}

function responded(step: number, toolCalls: EventData<"LLMResponded">["toolCalls"]): EventData<"LLMResponded"> {
  return { step, content: null, toolCalls, usage: { promptTokens: 1, completionTokens: 1, cachedTokens: 0 }, model: "m", finishReason: "tool_calls", durationMs: 1 };
}

type Command = { step: number; messageCount: number; delta: ChatMessage[]; seq: number };

/** The LLM commands of `events`, with the delta the scheduler puts in each (the state's llmDelta at LLMRequested). */
function commandsOf(events: RecordedEvent[]): Command[] {
  let state = initialState(events[0]!.runId);
  const commands: Command[] = [];
  for (const e of events) {
    state = evolve(state, e);
    if (e.type === "LLMRequested") commands.push({ step: e.data.step, messageCount: e.data.messageCount, delta: state.llmDelta, seq: e.seq });
  }
  return commands;
}

/** The window the model must be sent at a command: the fold of the stream up to its LLMRequested. */
function expectedWindow(events: RecordedEvent[], command: Command): ChatMessage[] {
  return contextWindowOf(events[0]!.runId, events.filter((e) => e.seq <= command.seq));
}

/** An event store holding `events` (appended to as a test goes on); `invalid` seqs are reported, not returned. */
function fakeStore(events: RecordedEvent[] = [], invalid: number[] = []) {
  const reads: { runId: string; fromSeq: number }[] = [];
  const store: RunReader & { events: RecordedEvent[]; reads: typeof reads } = {
    events,
    reads,
    async readRun(runId, fromSeq = 1, onInvalid) {
      reads.push({ runId, fromSeq });
      const out: RecordedEvent[] = [];
      for (const e of store.events) {
        if (e.runId !== runId || e.seq < fromSeq) continue;
        if (invalid.includes(e.seq)) onInvalid?.(new DecodeError(`event ${e.seq} is bad`), e.seq, e.result ? undefined : (e.lane ?? "ev"));
        else out.push(e);
      }
      return out;
    },
  };
  return store;
}

function fakeLog() {
  const warn = vi.fn();
  return { log: { warn } as unknown as Logger, warn };
}

describe("ContextReader", () => {
  const events = runEvents();
  const [step1, step2, step3, step4] = commandsOf(events) as [Command, Command, Command, Command];

  it("serves each step from the commands' deltas without reading the stream while it has the run", async () => {
    const store = fakeStore(events);
    const reader = new ContextReader(store, fakeLog().log);
    for (const c of [step1, step2, step3, step4]) {
      expect(await reader.read(RUN, c.messageCount, c.delta)).toEqual(expectedWindow(events, c));
    }
    expect(store.reads).toEqual([]);
    const call = (id: string, args: string) => ({ role: "assistant", content: null, tool_calls: [{ id, name: "add", arguments: args }] });
    expect(expectedWindow(events, step4)).toEqual([
      { role: "system", content: "you add numbers" },
      { role: "user", content: "add 3 and 4, then 5" },
      call("call_a", '{"a":3,"b":4}'),
      { role: "tool", tool_call_id: "call_a", content: "7" },
      call("call_b", '{"a":7,"b":5}'),
      { role: "tool", tool_call_id: "call_b", content: "12" },
      call("call_c", '{"a":12,"b":1}'),
      { role: "tool", tool_call_id: "call_c", content: "13" },
    ]);
  });

  it("folds the stream of a run it never saw, then reads only the events after the last one folded", async () => {
    // The stream as it stands when step 2 is asked for: up to its LLMRequested.
    const store = fakeStore(events.filter((e) => e.seq <= step2.seq));
    const reader = new ContextReader(store, fakeLog().log);

    expect(await reader.read(RUN, step2.messageCount, step2.delta)).toEqual(expectedWindow(events, step2));
    expect(store.reads).toEqual([{ runId: RUN, fromSeq: 1 }]);

    // Step 3 comes with its delta: nothing to read.
    store.events = events;
    expect(await reader.read(RUN, step3.messageCount, step3.delta)).toEqual(expectedWindow(events, step3));
    expect(store.reads).toHaveLength(1);

    // Step 4's messages are too big for its command: no delta, the gap is read from the stream, from after the
    // last event folded. Its events also bring step 3's messages, which the window has already: they stay put.
    expect(await reader.read(RUN, step4.messageCount)).toEqual(expectedWindow(events, step4));
    expect(store.reads).toEqual([
      { runId: RUN, fromSeq: 1 },
      { runId: RUN, fromSeq: step2.seq + 1 },
    ]);
  });

  it("builds the same windows from deltas, from the stream, and from both", async () => {
    const fromDeltas = new ContextReader(fakeStore([]), fakeLog().log);
    const fromStream = new ContextReader(fakeStore(events), fakeLog().log);
    const mixed = new ContextReader(fakeStore(events), fakeLog().log);
    for (const [i, c] of [step1, step2, step3, step4].entries()) {
      const want = expectedWindow(events, c);
      expect(await fromDeltas.read(RUN, c.messageCount, c.delta)).toEqual(want);
      expect(await fromStream.read(RUN, c.messageCount)).toEqual(want);
      expect(await mixed.read(RUN, c.messageCount, i % 2 === 0 ? [] : c.delta)).toEqual(want);
    }
    expect(await fromStream.read(RUN, step4.messageCount, step4.delta)).toEqual(expectedWindow(events, step4));
  });

  it("answers a redelivered command of an earlier step with that step's window", async () => {
    const store = fakeStore(events);
    const reader = new ContextReader(store, fakeLog().log);
    await reader.read(RUN, step3.messageCount);
    expect(await reader.read(RUN, step2.messageCount, step2.delta)).toEqual(expectedWindow(events, step2));
    expect(await reader.read(RUN, step1.messageCount)).toEqual(expectedWindow(events, step1));
    expect(await reader.read(RUN, step3.messageCount, step3.delta)).toEqual(expectedWindow(events, step3));
    expect(store.reads).toHaveLength(1);
  });

  it("throws RetryableError when the stream lacks messages before the delta, and reads on from there next time", async () => {
    // Only RunRequested is stored: RunStarted's two messages are missing for step 2.
    const store = fakeStore(events.slice(0, 1));
    const reader = new ContextReader(store, fakeLog().log);
    const err = await reader.read(RUN, step2.messageCount, step2.delta).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RetryableError);
    expect((err as RetryableError).message).toBe(`context window of run ${RUN}: its stream up to #1 has 0 messages, the command needs 2 before its 2 new ones`);

    // Read at once, then three more times over about half a second, before giving the command back.
    expect(store.reads.map((r) => r.fromSeq)).toEqual([1, 2, 2, 2]);

    store.events = events;
    expect(await reader.read(RUN, step2.messageCount, step2.delta)).toEqual(expectedWindow(events, step2));
    expect(store.reads.map((r) => r.fromSeq)).toEqual([1, 2, 2, 2, 2]);
  });

  it("reads again soon when the stream answers behind (a lagging replica), and serves the command then", async () => {
    const store = fakeStore(events.slice(0, 1));
    const reader = new ContextReader(store, fakeLog().log);
    // The replica catches up 50 ms later.
    setTimeout(() => (store.events = events), 50);
    expect(await reader.read(RUN, step2.messageCount, step2.delta)).toEqual(expectedWindow(events, step2));
    expect(store.reads.map((r) => r.fromSeq)).toEqual([1, 2, 2]);
  });

  it("refuses a command whose delta is longer than its window", async () => {
    const reader = new ContextReader(fakeStore(events), fakeLog().log);
    await expect(reader.read(RUN, 1, step1.delta)).rejects.toBeInstanceOf(TerminalError);
  });

  it("skips invalid events of the stream with a warning", async () => {
    const { log, warn } = fakeLog();
    // Event 9 (ToolCallRequested of step 2) cannot be decoded: the rest of the run still folds.
    const store = fakeStore(events, [9]);
    const reader = new ContextReader(store, log);
    expect(await reader.read(RUN, step2.messageCount)).toEqual(expectedWindow(events, step2));
    expect(warn).toHaveBeenCalledWith({ runId: RUN, seq: 9, err: "event 9 is bad" }, "skipping an invalid event of the run's stream");
  });

  it("keeps a bounded number of runs, forgetting the least recently used", async () => {
    const other = runEvents("rother");
    const store = fakeStore([...events, ...other]);
    const reader = new ContextReader(store, fakeLog().log, 1);
    await reader.read(RUN, step2.messageCount);
    await reader.read("rother", step2.messageCount);
    // RUN was forgotten: its stream is folded again from the start.
    expect(await reader.read(RUN, step3.messageCount)).toEqual(expectedWindow(events, step3));
    expect(store.reads).toEqual([
      { runId: RUN, fromSeq: 1 },
      { runId: "rother", fromSeq: 1 },
      { runId: RUN, fromSeq: 1 },
    ]);
  });

  it("folds each event once when two commands of a run catch up at the same time", async () => {
    const store = fakeStore(events);
    const reader = new ContextReader(store, fakeLog().log);
    const [a, b] = await Promise.all([reader.read(RUN, step2.messageCount), reader.read(RUN, step3.messageCount, step3.delta)]);
    expect(a).toEqual(expectedWindow(events, step2));
    expect(b).toEqual(expectedWindow(events, step3));
    // Both read the same events; the second fold of them changed nothing.
    expect(store.reads).toEqual([
      { runId: RUN, fromSeq: 1 },
      { runId: RUN, fromSeq: 1 },
    ]);
    expect(await reader.read(RUN, step3.messageCount)).toEqual(expectedWindow(events, step3));
  });

  describe("the agent's llm and tools", () => {
    const given = { llm: LlmConfig.parse({ name: "given", provider: "mock", replies: [{ content: "hi" }] }), tools: [] };
    const fromRunStarted = { llm: agent.llm, tools: [] };

    it("keeps what the first command carried, and serves the run's later commands from it without reading", async () => {
      const store = fakeStore(events);
      const reader = new ContextReader(store, fakeLog().log);
      await reader.read(RUN, step1.messageCount, step1.delta);
      expect(await reader.agentOf(RUN, given)).toEqual(given);
      await reader.read(RUN, step2.messageCount, step2.delta);
      expect(await reader.agentOf(RUN)).toEqual(given);
      expect(store.reads).toEqual([]);
    });

    it("takes them from the run's RunStarted when it folded the stream for the window", async () => {
      const store = fakeStore(events);
      const reader = new ContextReader(store, fakeLog().log);
      await reader.read(RUN, step3.messageCount, step3.delta);
      expect(await reader.agentOf(RUN)).toEqual(fromRunStarted);
      expect(store.reads).toHaveLength(1);
    });

    it("reads the stream for them if it holds the window from deltas alone", async () => {
      const store = fakeStore(events);
      const reader = new ContextReader(store, fakeLog().log);
      await reader.read(RUN, step1.messageCount, step1.delta);
      expect(store.reads).toEqual([]);
      expect(await reader.agentOf(RUN)).toEqual(fromRunStarted);
      expect(store.reads).toEqual([{ runId: RUN, fromSeq: 1 }]);
      // The window folded along the way is the same.
      expect(await reader.read(RUN, step2.messageCount, step2.delta)).toEqual(expectedWindow(events, step2));
    });

    it("throws RetryableError when neither the command nor the stream has them", async () => {
      const store = fakeStore(events.slice(0, 1));
      const reader = new ContextReader(store, fakeLog().log);
      await expect(reader.agentOf(RUN)).rejects.toThrow(
        new RetryableError(`run ${RUN}: its stream up to #1 has no RunStarted (the agent's llm and tools) and the command does not carry them`, 1000),
      );
    });
  });
});
