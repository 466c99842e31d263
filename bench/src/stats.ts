export type Summary = { count: number; p50: number; p99: number; mean: number };

export function summarize(samples: number[]): Summary {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
  const mean = sorted.reduce((a, b) => a + b, 0) / Math.max(1, sorted.length);
  return { count: sorted.length, p50: round(at(0.5)), p99: round(at(0.99)), mean: round(mean) };
}

export function round(n: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

/** Runs `task(i)` for i in 0..total-1 with at most `concurrency` at once. */
export async function pool(total: number, concurrency: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < total) await task(next++);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, total) }, lane));
}

/**
 * Steps per second inside a window: the steps that ended in it over its length. At "64 concurrent" the window is
 * the stretch in which 64 runs were in flight, without the ramp at either end (a pool that fills, then drains).
 */
export function rateOf(window: Window): number {
  return window.seconds > 0 ? Math.round(window.steps / window.seconds) : 0;
}

/** The steps that ended inside [from, to], and its length. */
export type Window = { steps: number; seconds: number };

export function windowOf(stepEnds: number[], from: number, to: number): Window {
  if (!(to > from)) return { steps: 0, seconds: 0 };
  return { steps: stepEnds.filter((t) => t > from && t <= to).length, seconds: (to - from) / 1000 };
}

/** What one measurement (of the raw chain or of Smallchain) holds besides its summary, to pool several. */
export type Samples = { steps: number; seconds: number; window: Window; latencies: number[] };

/** Several measurements as one: steps/s over their summed time and windows, latency over every sample. */
export function pooled(rounds: Samples[]): { steps: number; seconds: number; stepsPerSecond: number; steadyStepsPerSecond: number; latencyMs: Summary } {
  const sum = (f: (r: Samples) => number) => rounds.reduce((a, r) => a + f(r), 0);
  const steps = sum((r) => r.steps);
  const seconds = sum((r) => r.seconds);
  const windowSeconds = sum((r) => r.window.seconds);
  return {
    steps,
    seconds: round(seconds),
    stepsPerSecond: Math.round(steps / seconds),
    steadyStepsPerSecond: windowSeconds > 0 ? Math.round(sum((r) => r.window.steps) / windowSeconds) : Math.round(steps / seconds),
    latencyMs: summarize(rounds.flatMap((r) => r.latencies)),
  };
}
