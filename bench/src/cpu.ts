import { readFileSync, readdirSync } from "node:fs";

const TICK = 100; // USER_HZ on Linux

/** CPU seconds (user + system) a process has used, or undefined where /proc cannot say. */
export function cpuSecondsOf(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command (which may hold spaces) start past the last ')'.
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / TICK;
  } catch {
    return undefined;
  }
}

/** The local nats-server's pid (BENCH_NATS_PID, else the only nats-server process this user can see), if any. */
export function natsServerPid(): number | undefined {
  if (process.env.BENCH_NATS_PID) return Number(process.env.BENCH_NATS_PID);
  try {
    const pids = readdirSync("/proc")
      .filter((d) => /^\d+$/.test(d))
      .filter((d) => {
        try {
          return readFileSync(`/proc/${d}/comm`, "utf8").trim() === "nats-server";
        } catch {
          return false;
        }
      });
    return pids.length === 1 ? Number(pids[0]) : undefined;
  } catch {
    return undefined;
  }
}

/** CPU used by named processes between start() and the returned function's call, in ms per `units`. */
export function cpuMeter(pids: Record<string, number | undefined>): () => (units: number) => Record<string, number> {
  const before = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuSecondsOf(pid)]));
  return () => {
    const after = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuSecondsOf(pid)]));
    return (units) => {
      const out: Record<string, number> = {};
      for (const [k, b] of Object.entries(before)) {
        const a = after[k];
        if (a !== undefined && b !== undefined) out[k] = Math.round(((a - b) * 1000 * 1000) / units) / 1000;
      }
      return out;
    };
  };
}
