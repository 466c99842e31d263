// Children are spawned detached (their own process group) so a kill reaches grandchildren too. The flip side is
// that they no longer die with this process, so live groups are killed when it exits.
const live = new Set<number>();
let exitHookInstalled = false;

export function trackGroup(pid: number): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once("exit", () => {
      for (const leader of live) killGroup(leader);
    });
  }
  live.add(pid);
}

export function untrackGroup(pid: number): void {
  live.delete(pid);
}

export function killGroup(pid: number): void {
  try {
    process.kill(-pid, "SIGKILL");
  } catch {
    // ESRCH: every process in the group is already gone.
  }
}
