import type { RecordedEvent } from "../events.js";
import type { ChatMessage, ToolCallRecord } from "./messages.js";
import { evolve, initialState, messagesOf } from "./state.js";

/** One LLM call of a run as the model saw it: the context window and tools it was sent, and what it answered. */
export type LlmCallReplay = {
  step: number;
  seq: number;
  at: number;
  llm: string;
  tools: string[];
  messages: ChatMessage[];
  response?: { content: string | null; toolCalls: ToolCallRecord[] } | { error: string };
};

/**
 * Folds a run's events and records, at each LLMRequested, the messages that call was sent (the first
 * `messageCount` of the window). Pure.
 */
export function replayLlmCalls(events: RecordedEvent[]): LlmCallReplay[] {
  const calls: LlmCallReplay[] = [];
  const window: ChatMessage[] = [];
  let state = initialState(events[0]?.runId ?? "");
  for (const event of events) {
    window.push(...messagesOf(state, event));
    state = evolve(state, event);
    if (event.type === "LLMRequested") {
      calls.push({
        step: event.data.step,
        seq: event.seq,
        at: event.at,
        llm: event.data.llm,
        tools: state.agent?.tools.map((t) => t.name) ?? [],
        messages: window.slice(0, event.data.messageCount),
      });
    } else if (event.type === "LLMResponded" || event.type === "LLMFailed") {
      const call = calls.find((c) => c.step === event.data.step);
      if (call) {
        call.response = event.type === "LLMResponded" ? { content: event.data.content, toolCalls: event.data.toolCalls } : { error: event.data.error };
      }
    }
  }
  return calls;
}
