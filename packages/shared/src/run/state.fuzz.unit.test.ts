import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { LlmConfig } from "../config/schema.js";
import { RunEvent, type RecordedEvent } from "../events.js";
import type { AgentSnapshot } from "./spec.js";
import { evolve, initialState, messagesOf, type RunState } from "./state.js";

/** Cases per property; the figures in docs/reliability.md count them. */
const FOLD_RUNS = 1_000;
const RUN_ID = "rfuzz";

const agent: AgentSnapshot = {
  name: "assistant",
  systemPrompt: "you help",
  maxSteps: 5,
  llm: LlmConfig.parse({ name: "m", provider: "mock", replies: [{ content: "done" }] }),
  tools: [],
};

const text = fc.string({ maxLength: 12 });
const step = fc.integer({ min: 1, max: 4 });
// Few call ids, so results meet their requests (and duplicates and strays happen too).
const callId = fc.constantFrom("s1c0", "s1c1", "s2c0", "s3c0", "nope");
const usage = fc.record({ promptTokens: fc.nat(1_000), completionTokens: fc.nat(1_000), cachedTokens: fc.nat(1_000) });
const toolCall = fc.record({ id: text, name: text, arguments: text });

/** Any one valid event: right shape, arbitrary content and order. */
const anyEvent = fc.oneof(
  fc.record({
    type: fc.constant("RunRequested"),
    data: fc.record({ agent: text, input: text, depth: fc.nat(3), rootRunId: fc.constant(RUN_ID) }),
  }),
  fc.record({ type: fc.constant("RunStarted"), data: fc.constant({ agent }) }),
  fc.record({ type: fc.constant("LLMRequested"), data: fc.record({ step, llm: text, messageCount: fc.nat(20) }) }),
  fc.record({
    type: fc.constant("LLMResponded"),
    data: fc.record({
      step,
      content: fc.option(text, { nil: null }),
      toolCalls: fc.array(toolCall, { maxLength: 3 }),
      usage,
      model: text,
      finishReason: fc.option(text, { nil: null }),
      durationMs: fc.nat(),
    }),
  }),
  fc.record({ type: fc.constant("LLMFailed"), data: fc.record({ step, error: text, retryable: fc.boolean() }) }),
  fc.record({
    type: fc.constant("ToolCallRequested"),
    data: fc.record({ step, callId, toolCallId: text, tool: text, args: fc.jsonValue({ maxDepth: 2 }), kind: fc.constantFrom("tool", "agent", "invalid") }),
  }),
  fc.record({ type: fc.constant("ToolCallCompleted"), data: fc.record({ callId, result: text }) }),
  fc.record({ type: fc.constant("ToolCallFailed"), data: fc.record({ callId, error: text }) }),
  fc.record({ type: fc.constant("ChildRunRequested"), data: fc.record({ callId, childRunId: text, agent: text, input: text }) }),
  fc.record({ type: fc.constant("RunCompleted"), data: fc.record({ output: text }) }),
  fc.record({ type: fc.constant("RunFailed"), data: fc.record({ reason: text }) }),
  fc.record({ type: fc.constant("RunCancelled"), data: fc.record({ reason: fc.option(text, { nil: undefined }) }) }),
);

/** A run's events as read back: schema-valid, with sequences that mostly rise but may repeat (a redelivery). */
const history = fc.array(fc.tuple(anyEvent, fc.nat(2)), { maxLength: 40 }).map((items) => {
  let seq = 0;
  return items.map(([e, gap], i): RecordedEvent => {
    seq += gap;
    const event = RunEvent.parse({ id: `${RUN_ID}:e${i}`, v: 1, runId: RUN_ID, at: 1_000 + i, ...e });
    return { ...event, seq };
  });
});

function fold(events: RecordedEvent[]): { state: RunState; messages: number } {
  let state = initialState(RUN_ID);
  let messages = 0;
  for (const e of events) {
    if (e.seq > state.lastSeq) messages += messagesOf(state, e).length;
    state = evolve(state, e);
  }
  return { state, messages };
}

describe("evolve over arbitrary valid event sequences", () => {
  it("never throws, and folding the same events twice gives the same view", () => {
    fc.assert(
      fc.property(history, (events) => {
        const first = fold(events);
        const second = fold(structuredClone(events));
        expect(second).toEqual(first);
      }),
      { numRuns: FOLD_RUNS },
    );
  });

  it("counts exactly the messages it adds, folds each sequence once, and ignores what it has seen", () => {
    fc.assert(
      fc.property(history, (events) => {
        const { state, messages } = fold(events);
        expect(state.messageCount).toBe(messages);
        expect(state.lastSeq).toBe(Math.max(0, ...events.map((e) => e.seq)));
        expect(state.eventCount).toBe(new Set(events.map((e) => e.seq).filter((s) => s > 0)).size);
        // A redelivery of everything folded so far changes nothing.
        expect(events.reduce(evolve, state)).toBe(state);
      }),
      { numRuns: FOLD_RUNS },
    );
  });
});
