import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { LlmConfig } from "../config/schema.js";
import type { EventStore } from "../eventstore.js";
import type { EventData, EventType, RecordedEvent, RunEvent } from "../events.js";
import { RunCache } from "./cache.js";
import type { AgentSnapshot } from "./spec.js";
import { evolve, initialState, type RunState } from "./state.js";

const RUN_ID = "rcache";
const quiet = pino({ level: "silent" });
const agent: AgentSnapshot = {
  name: "assistant",
  systemPrompt: "be brief",
  maxSteps: 10,
  llm: LlmConfig.parse({ name: "test-llm", provider: "mock", replies: [{ content: "done" }] }),
  tools: [],
};

const ev = <T extends EventType>(seq: number, type: T, data: EventData<T>): RecordedEvent =>
  ({ ...({ id: `${RUN_ID}:e${seq}`, type, v: 1, runId: RUN_ID, at: seq, data } as RunEvent), seq });

// One run whose events sit at stream sequences 1, 2, 10, 11, 20 (other runs' events in between).
const requested = ev(1, "RunRequested", { agent: "assistant", input: "hi", depth: 0, rootRunId: RUN_ID });
const started = ev(2, "RunStarted", { agent });
const llmRequested = ev(10, "LLMRequested", { step: 1, llm: "test-llm", messageCount: 2 });
const llmResponded = ev(11, "LLMResponded", {
  step: 1,
  content: "hello",
  toolCalls: [],
  usage: { promptTokens: 1, completionTokens: 1, cachedTokens: 0 },
  model: "mock",
  finishReason: "stop",
  durationMs: 1,
});
const completed = ev(20, "RunCompleted", { output: "hello" });
const all = [requested, started, llmRequested, llmResponded, completed];
const fold = (events: RecordedEvent[], from: RunState = initialState(RUN_ID)) => events.reduce(evolve, from);

/** The event store's reads over what the stream holds, counting direct gets. */
function fakeStore(stream: RecordedEvent[]) {
  const reads = { next: 0, run: 0 };
  const store = {
    async nextEvent(runId: string, fromSeq: number) {
      reads.next++;
      return stream.find((e) => e.runId === runId && e.seq >= fromSeq) ?? null;
    },
    async readRun(runId: string, fromSeq = 1) {
      reads.run++;
      return stream.filter((e) => e.runId === runId && e.seq >= fromSeq);
    },
  };
  return { store: store as unknown as EventStore, reads };
}

/** A message as the consumer delivers it: its consumer sequence, stream sequence and delivery count. */
const delivery = (deliverySequence: number, event: RecordedEvent, deliveryCount = 1) => ({ deliverySequence, streamSequence: event.seq, deliveryCount });

describe("RunCache", () => {
  it("does not fold an event past an earlier one that a dead incarnation took and that comes back later", async () => {
    // A restarted projector: the stored view holds the run's first two events. Its previous incarnation was
    // handed LLMRequested (10) and LLMResponded (11) and died before acking them. They come back after the ack
    // wait, with new consumer sequences that follow on without a hole, and the run's next event (20, the
    // scheduler's reaction to 11) arrives between the two redeliveries.
    const { store } = fakeStore(all);
    const cache = new RunCache(store, quiet, { loadInitial: async () => fold([requested, started]) });
    const handle = async (d: ReturnType<typeof delivery>, e: RecordedEvent) => {
      cache.delivered(d);
      return cache.withEvent(e);
    };
    await handle(delivery(100, llmRequested, 2), llmRequested);
    await handle(delivery(101, completed), completed);
    const last = await handle(delivery(102, llmResponded, 2), llmResponded);
    expect(last).toEqual(fold(all));
    expect(cache.get(RUN_ID)).toEqual(fold(all));
  });

  it("does not fold past an event that another replica took before a hole, once it comes back (scheduler: no stored view)", async () => {
    const { store } = fakeStore(all);
    const cache = new RunCache(store, quiet);
    cache.delivered(delivery(1, requested));
    await cache.withEvent(requested);
    cache.delivered(delivery(2, started));
    await cache.withEvent(started);
    // 10 and 11 went to another replica (a hole of two), which died; 10 comes back here first, then 20, then 11.
    cache.delivered(delivery(5, llmRequested, 2));
    await cache.withEvent(llmRequested);
    cache.delivered(delivery(6, completed));
    await cache.withEvent(completed);
    cache.delivered(delivery(7, llmResponded, 2));
    await cache.withEvent(llmResponded);
    expect(cache.get(RUN_ID)).toEqual(fold(all));
  });

  it("proves a run again after a dropped (failed) fold before trusting the next event", async () => {
    const { store } = fakeStore(all);
    let stored = fold([requested, started, llmRequested]);
    const cache = new RunCache(store, quiet, { loadInitial: async () => stored });
    cache.delivered(delivery(1, llmRequested));
    expect((await cache.withEvent(llmRequested)).lastSeq).toBe(10);
    // 11 is folded, but writing it fails: the projector drops the run and 11 comes back later.
    cache.delivered(delivery(2, llmResponded));
    await cache.withEvent(llmResponded);
    cache.drop(RUN_ID);
    stored = fold([requested, started, llmRequested]);
    cache.delivered(delivery(3, completed));
    expect(await cache.withEvent(completed)).toEqual(fold(all));
  });

  it("folds events delivered in order without reading the stream again", async () => {
    const { store, reads } = fakeStore(all);
    const cache = new RunCache(store, quiet);
    for (const [i, e] of all.entries()) {
      cache.delivered(delivery(i + 1, e));
      await cache.withEvent(e);
    }
    expect(cache.get(RUN_ID)).toEqual(fold(all));
    expect(reads).toEqual({ next: 0, run: 0 });
  });

  it("after a restart proves each run once, then folds its events delivered in order without reads", async () => {
    const { store, reads } = fakeStore(all);
    const cache = new RunCache(store, quiet, { loadInitial: async () => fold([requested, started]) });
    const rest = [llmRequested, llmResponded, completed];
    for (const [i, e] of rest.entries()) {
      cache.delivered(delivery(50 + i, e));
      await cache.withEvent(e);
    }
    expect(cache.get(RUN_ID)).toEqual(fold(all));
    expect(reads).toEqual({ next: 1, run: 0 });
  });

  it("proves a run again after one of its handlers failed (distrust), without reading it all", async () => {
    const { store, reads } = fakeStore(all);
    const cache = new RunCache(store, quiet);
    for (const [i, e] of [requested, started, llmRequested].entries()) {
      cache.delivered(delivery(i + 1, e));
      await cache.withEvent(e);
    }
    // 11 is delivered, but its handler fails before it is folded: it comes back after 20.
    cache.delivered(delivery(4, llmResponded));
    cache.distrust(RUN_ID);
    cache.delivered(delivery(5, completed));
    await cache.withEvent(completed);
    expect(cache.get(RUN_ID)).toEqual(fold(all));
    expect(reads).toEqual({ next: 1, run: 1 });
  });
});
