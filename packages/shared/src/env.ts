/** A duration in ms from the environment: `fallback` when unset, negative or not a number. */
export function msFromEnv(name: string, fallback: number, env: NodeJS.ProcessEnv = process.env): number {
  const ms = Number(env[name] ?? fallback);
  return Number.isFinite(ms) && ms >= 0 ? ms : fallback;
}
