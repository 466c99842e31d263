import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { ServiceName as StackService } from "./stack.js";

/** Every service that runs as its own process. */
export type ServiceName = StackService | "gateway";

export const ROOT = fileURLToPath(new URL("../../", import.meta.url));
export const CLI = `${ROOT}packages/cli/bin/smallchain.js`;

export type ServiceProcess = {
  name: ServiceName;
  child: ChildProcess;
  /** Everything it wrote, for a failing test's message. */
  output(): string;
  kill(signal?: NodeJS.Signals): Promise<void>;
};

/** Starts a service from its built dist/ as its own OS process (npm test builds first). */
export function spawnService(name: ServiceName, env: NodeJS.ProcessEnv): ServiceProcess {
  const child = spawn(process.execPath, [`${ROOT}services/${name}/dist/main.js`], {
    env: { ...process.env, LOG_LEVEL: "info", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout?.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return {
    name,
    child,
    output: () => out,
    async kill(signal = "SIGTERM") {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(signal);
      await exited;
    },
  };
}

/** Resolves once the service logged that it started (its consumers exist). */
export async function started(p: ServiceProcess, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!p.output().includes(" started")) {
    if (p.child.exitCode !== null) throw new Error(`${p.name} exited: ${p.output()}`);
    if (Date.now() > end) throw new Error(`${p.name} did not start: ${p.output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export type CliResult = { code: number; stdout: string; stderr: string };

/** Runs the `smallchain` CLI as a user would. */
export function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("exit", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** Waits until `check` returns a value other than undefined/false. */
export async function eventually<T>(check: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 15_000, what = "condition"): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Starts services as processes, adds them to `procs` (which the test kills afterwards), and waits until each has started. */
export async function spawnAll(procs: ServiceProcess[], names: ServiceName[], env: NodeJS.ProcessEnv): Promise<ServiceProcess[]> {
  const ps = names.map((n) => spawnService(n, env));
  procs.push(...ps);
  await Promise.all(ps.map((p) => started(p)));
  return ps;
}
