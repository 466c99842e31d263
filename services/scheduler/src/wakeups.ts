import type { KV } from "@nats-io/kv";
import { WakeUp, decode, type Logger } from "@smallchain/shared";

/** setTimeout takes at most 2^31-1 ms (about 24 days); longer waits re-arm. */
const MAX_DELAY = 2 ** 31 - 1;

/**
 * Wakes runs at their due times. The timers bucket is the durable list (every scheduler replica watches it,
 * so after a restart overdue entries fire at once); an in-memory timer per entry is only the alarm clock. A
 * wake-up decides through the run's stream with optimistic concurrency, so replicas waking together record
 * one result.
 */
export class WakeUps {
  private readonly armed = new Map<string, { dueAt: number; handle: NodeJS.Timeout }>();
  private stopWatch: (() => void) | undefined;
  private stopped = false;

  constructor(
    private readonly kv: KV,
    private readonly wake: (w: WakeUp, key: string) => Promise<void>,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  async start(): Promise<void> {
    const watch = await this.kv.watch({ key: ">" });
    this.stopWatch = () => watch.stop();
    void (async () => {
      for await (const e of watch) {
        if (e.operation !== "PUT") {
          this.disarm(e.key);
          continue;
        }
        try {
          this.arm(e.key, decode(WakeUp, e.value, `timer ${e.key}`));
        } catch (err) {
          this.log.warn({ key: e.key, err: (err as Error).message }, "ignoring an invalid timer entry");
        }
      }
    })().catch((err: unknown) => {
      if (!this.stopped) this.log.error({ err }, "timer watch ended");
    });
  }

  arm(key: string, w: WakeUp): void {
    if (this.stopped) return;
    const existing = this.armed.get(key);
    if (existing?.dueAt === w.dueAt) return;
    if (existing) clearTimeout(existing.handle);
    const delay = Math.max(0, w.dueAt - this.now());
    const handle = setTimeout(() => {
      this.armed.delete(key);
      if (delay > MAX_DELAY) return this.arm(key, w);
      this.wake(w, key).catch((err: unknown) => {
        this.log.warn({ key, err }, "waking a run failed; trying again in a second");
        this.arm(key, { ...w, dueAt: this.now() + 1000 });
      });
    }, Math.min(delay, MAX_DELAY));
    this.armed.set(key, { dueAt: w.dueAt, handle });
  }

  disarm(key: string): void {
    const existing = this.armed.get(key);
    if (!existing) return;
    clearTimeout(existing.handle);
    this.armed.delete(key);
  }

  get size(): number {
    return this.armed.size;
  }

  stop(): void {
    this.stopped = true;
    this.stopWatch?.();
    for (const { handle } of this.armed.values()) clearTimeout(handle);
    this.armed.clear();
  }
}
