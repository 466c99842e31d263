import type { KV } from "@nats-io/kv";
import type { Logger } from "pino";

/**
 * The runs cancelled lately, as every worker sees them: a key per run in the `cancelled` bucket (written by
 * the scheduler when it records RunCancelled; the bucket forgets keys after a day). Workers watch it, so asking
 * costs a set lookup per command, and a command in flight for a run that is cancelled now can be stopped.
 */
export class CancelledRuns {
  private readonly runs = new Set<string>();
  private readonly listeners = new Set<(runId: string) => void>();
  private stopWatch: (() => void) | undefined;

  private constructor(private readonly log: Logger) {}

  /** Starts watching; resolves once the runs cancelled so far are known. */
  static async watch(kv: KV, log: Logger): Promise<CancelledRuns> {
    const c = new CancelledRuns(log);
    const watch = await kv.watch({ key: ">" });
    c.stopWatch = () => watch.stop();
    const status = await kv.status();
    let ready!: () => void;
    const loaded = new Promise<void>((resolve) => (ready = resolve));
    if (status.values === 0) ready();
    void (async () => {
      for await (const e of watch) {
        if (e.operation === "PUT") c.add(e.key);
        if (e.delta === 0) ready();
      }
    })().catch((err: unknown) => log.warn({ err }, "watching cancelled runs ended"));
    await loaded;
    return c;
  }

  has(runId: string): boolean {
    return this.runs.has(runId);
  }

  /** Calls `listener` with each run cancelled from now on; returns how to stop listening. */
  onCancel(listener: (runId: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private add(runId: string): void {
    if (this.runs.has(runId)) return;
    this.runs.add(runId);
    // Bounded: a worker keeps the newest 100k; older cancellations are long past their commands.
    if (this.runs.size > 100_000) this.runs.delete(this.runs.values().next().value!);
    for (const l of this.listeners) l(runId);
    this.log.debug({ runId }, "run cancelled");
  }

  stop(): void {
    this.stopWatch?.();
  }
}
