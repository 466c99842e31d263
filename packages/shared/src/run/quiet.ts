import { isTerminal, type RunState } from "./state.js";

/** How often the runs held are looked at for one due a check (see QuietRuns). */
export const QUIET_SWEEP_EVERY_MS = 2_000;
const FIRST_CHECK_MS = 10_000;
const MAX_QUIET_MS = 10 * 60_000;

/**
 * The runs a process holds that have not ended, and how long each has been quiet: a safety net for an event no
 * delivery brings (seen once when a cluster node died holding a consumer's state). A quiet run is due a check (read
 * past what is held of it) after 10 s, then ever more rarely (20 s, 40 s, ... as its quiet so far doubles), and is
 * forgotten after 10 min of quiet, or once it is no longer held or has ended. The scheduler's sweep and the
 * projection's use it; a run that waits for a model, a person or a timer costs a handful of reads per quiet spell.
 */
export class QuietRuns {
  private readonly runs = new Map<string, { since: number; checkAt: number }>();
  constructor(private readonly now: () => number = Date.now) {}

  /** Something of the run was just handled: its quiet starts again. */
  touch(runId: string): void {
    const t = this.now();
    this.runs.set(runId, { since: t, checkAt: t + FIRST_CHECK_MS });
  }

  forget(runId: string): void {
    this.runs.delete(runId);
  }

  /** The runs due a check now, with the state held of each (`held`), each one's next check pushed back. */
  due(held: (runId: string) => RunState | undefined): [string, RunState][] {
    const t = this.now();
    const out: [string, RunState][] = [];
    for (const [runId, q] of this.runs) {
      if (t < q.checkAt) continue;
      const state = held(runId);
      if (!state || isTerminal(state) || t - q.since > MAX_QUIET_MS) {
        this.runs.delete(runId);
        continue;
      }
      this.runs.set(runId, { since: q.since, checkAt: t + Math.max(FIRST_CHECK_MS, (t - q.since) * 2) });
      out.push([runId, state]);
    }
    return out;
  }
}
