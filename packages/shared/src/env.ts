/** A duration in ms from the environment: `fallback` when unset, negative or not a number. */
export function msFromEnv(name: string, fallback: number, env: NodeJS.ProcessEnv = process.env): number {
  const ms = Number(env[name] ?? fallback);
  return Number.isFinite(ms) && ms >= 0 ? ms : fallback;
}

/**
 * Whether the scheduler folds the views itself, so no projector runs (SC_SCHEDULER_PROJECTS=1; see Projection).
 * One setting for every process of an installation: the scheduler's, and `smallchain dev`, which then starts no
 * projector thread.
 */
export function schedulerProjectsFromEnv(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.SC_SCHEDULER_PROJECTS === "1";
}
