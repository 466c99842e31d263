import type { KV } from "@nats-io/kv";
import { RetryableError, readContext, type ChatMessage } from "@smallchain/shared";

const WAITS_MS = [5, 10, 20, 50, 100, 200, 400, 800, 1000];

/**
 * Reads a run's context window from the `context` bucket. Keeps the windows it has read, so a step reads
 * only the messages added since the last one. The projector may be a few milliseconds behind the scheduler:
 * missing messages are awaited briefly, then the command is retried later.
 */
export class ContextReader {
  private readonly windows = new Map<string, ChatMessage[]>();

  constructor(
    private readonly context: KV,
    private readonly max = 2_000,
  ) {}

  /** The first `count` messages; `delta`, when given, are the last of them. */
  async read(runId: string, count: number, delta: ChatMessage[] = []): Promise<ChatMessage[]> {
    const stored = count - delta.length;
    const cached = this.windows.get(runId) ?? [];
    const window = cached.slice(0, stored);
    for (let attempt = 0; window.length < stored; attempt++) {
      const fetched = await readContext(this.context, runId, stored, window.length);
      for (const m of fetched) {
        if (!m) break;
        window.push(m);
      }
      if (window.length === stored) break;
      const wait = WAITS_MS[attempt];
      if (wait === undefined) {
        throw new RetryableError(`context window of run ${runId} is not projected yet (${window.length} of ${stored} messages)`, 1000);
      }
      await new Promise((r) => setTimeout(r, wait));
    }
    window.push(...delta);
    this.windows.delete(runId);
    this.windows.set(runId, window);
    if (this.windows.size > this.max) {
      const oldest = this.windows.keys().next().value;
      if (oldest !== undefined) this.windows.delete(oldest);
    }
    return window;
  }
}
