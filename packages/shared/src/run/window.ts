import type { RecordedEvent } from "../events.js";
import type { ChatMessage } from "./messages.js";
import { evolve, initialState, messagesOf, type RunState } from "./state.js";

/**
 * A run's context window folded from its event stream: `state` is the fold of the events read so far and
 * `messages[i]` is message `i` of the window. `messages` may run ahead of `state.messageCount` (messages an LLM
 * command carried), never behind it.
 */
export type FoldedWindow = { state: RunState; messages: ChatMessage[] };

export function emptyWindow(runId: string): FoldedWindow {
  return { state: initialState(runId), messages: [] };
}

/**
 * Folds `events` (the run's, in stream order) into `window`, in place. Each event's messages are set at their
 * index in the window (`messageCount` before the event, plus their position), never appended blindly: they may
 * be there already. Events at or below `state.lastSeq` are folded already and skipped.
 */
export function foldWindow(window: FoldedWindow, events: Iterable<RecordedEvent>): FoldedWindow {
  for (const event of events) {
    const prior = window.state;
    if (event.seq <= prior.lastSeq) continue;
    messagesOf(prior, event).forEach((m, i) => {
      window.messages[prior.messageCount + i] = m;
    });
    window.state = evolve(prior, event);
  }
  return window;
}

/** The context window after every one of `events` (a whole run's stream, in order). */
export function contextWindowOf(runId: string, events: Iterable<RecordedEvent>): ChatMessage[] {
  return foldWindow(emptyWindow(runId), events).messages;
}
