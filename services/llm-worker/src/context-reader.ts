import {
  RetryableError,
  TerminalError,
  emptyWindow,
  foldWindow,
  llmAgentOf,
  type ChatMessage,
  type EventStore,
  type FoldedWindow,
  type LlmAgent,
  type Logger,
} from "@smallchain/shared";

/** Pauses before each read of a run's stream that still misses messages: at once, then a little later. */
const CATCH_UP_WAITS_MS = [0, 25, 100, 400];

/** What the reader needs of the event store (a fake in unit tests). */
export type RunReader = Pick<EventStore, "readRun">;

/** A run's window as this worker holds it, and its agent's llm and tools once known. */
type RunWindow = FoldedWindow & { agent?: LlmAgent };

/**
 * Serves the context window of an LLM command from the run's event stream. Per run it keeps the fold of the
 * events read so far and the window, message by message at its index. A command's `delta` (its newest
 * messages) extends the window without a read; only when messages before the delta are missing does it read
 * the run's events after the last one folded (never the whole stream again), so a step costs the same early
 * and late in a run. A worker that never saw the run reads its stream once.
 */
export class ContextReader {
  /** By run, least recently used first. */
  private readonly windows = new Map<string, RunWindow>();

  constructor(
    private readonly store: RunReader,
    private readonly log: Logger,
    private readonly max = 2_000,
  ) {}

  /**
   * The first `count` messages of the run's window; `delta`, when given, are the last of them. The array
   * returned is the one kept for the run when it holds exactly those messages (the usual case): use it for
   * this command only.
   */
  async read(runId: string, count: number, delta: ChatMessage[] = []): Promise<ChatMessage[]> {
    const stored = count - delta.length;
    if (stored < 0) throw new TerminalError(`command of run ${runId} carries ${delta.length} new messages of a window of ${count}`);
    const window = this.held(runId);
    // A replica of a clustered stream may answer a read a moment behind the leader: a short read is read again
    // soon, before the command is handed back for a later delivery.
    for (const wait of CATCH_UP_WAITS_MS) {
      if (window.messages.length >= stored) break;
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      await this.catchUp(runId, window);
    }
    if (window.messages.length < stored) {
      // The decision that sent the command is in the stream before the command: a slow replica, if anything.
      throw new RetryableError(
        `context window of run ${runId}: its stream up to #${window.state.lastSeq} has ${window.messages.length} messages, the command needs ${stored} before its ${delta.length} new ones`,
        1000,
      );
    }
    // The delta's messages are those at `stored` on: set them there (equal to what a fold put there, if anything).
    delta.forEach((m, i) => {
      window.messages[stored + i] = m;
    });
    return window.messages.length === count ? window.messages : window.messages.slice(0, count);
  }

  /**
   * The llm and tools of the run's agent: `given` by a command that carries them (kept for the run's later
   * commands), else what this worker learnt before, else the RunStarted of the run's stream (read now if this
   * worker built the window from deltas alone, which a command without them should never leave it with).
   */
  async agentOf(runId: string, given?: LlmAgent): Promise<LlmAgent> {
    const window = this.held(runId);
    if (given) return (window.agent = given);
    if (window.agent) return window.agent;
    if (!window.state.agent) await this.catchUp(runId, window);
    const snapshot = window.state.agent;
    if (!snapshot) {
      throw new RetryableError(`run ${runId}: its stream up to #${window.state.lastSeq} has no RunStarted (the agent's llm and tools) and the command does not carry them`, 1000);
    }
    return (window.agent = llmAgentOf(snapshot));
  }

  private held(runId: string): RunWindow {
    const window = this.windows.get(runId) ?? emptyWindow(runId);
    this.remember(runId, window);
    return window;
  }

  /** Folds the run's events after the last one folded. */
  private async catchUp(runId: string, window: FoldedWindow): Promise<void> {
    const events = await this.store.readRun(runId, window.state.lastSeq + 1, (err, seq) =>
      this.log.warn({ runId, seq, err: err.message }, "skipping an invalid event of the run's stream"),
    );
    // Another command of the run may have folded some of them meanwhile: foldWindow skips those.
    foldWindow(window, events);
  }

  private remember(runId: string, window: RunWindow): void {
    this.windows.delete(runId);
    this.windows.set(runId, window);
    if (this.windows.size > this.max) {
      const oldest = this.windows.keys().next().value;
      if (oldest !== undefined) this.windows.delete(oldest);
    }
  }
}
