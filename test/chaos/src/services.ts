import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root: the nearest folder above this file holding the services (from source or from dist/). */
function findRoot(): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); dir !== dirname(dir); dir = dirname(dir)) {
    if (existsSync(join(dir, "services", "scheduler", "package.json"))) return `${dir}/`;
  }
  throw new Error("cannot find the repository root (a folder with services/scheduler) above the chaos harness");
}

const ROOT = findRoot();

export type ServiceName = "scheduler" | "projector" | "llm-worker" | "tool-worker";

/**
 * One slot of the installation (e.g. "the second tool-worker"): a service process that can be killed -9 and
 * started again in its place. Output of every incarnation is kept for a failing run's message.
 */
export class ServiceSlot {
  private child: ChildProcess | undefined;
  private out = "";
  private startedAt = 0;
  incarnations = 0;

  constructor(
    readonly name: ServiceName,
    private readonly env: NodeJS.ProcessEnv,
  ) {}

  start(): void {
    const child = spawn(process.execPath, [`${ROOT}services/${this.name}/dist/main.js`], {
      env: { ...process.env, LOG_LEVEL: "info", ...this.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const mark = this.out.length;
    this.incarnations++;
    this.startedAt = mark;
    child.stdout?.on("data", (d: Buffer) => (this.out += d.toString()));
    child.stderr?.on("data", (d: Buffer) => (this.out += d.toString()));
    this.child = child;
  }

  /** The current incarnation logged that it started (its consumers exist). */
  get ready(): boolean {
    return this.out.slice(this.startedAt).includes(" started");
  }

  get alive(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  async waitReady(timeoutMs = 20_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (!this.ready) {
      if (!this.alive) throw new Error(`${this.name} exited before it started:\n${this.tail()}`);
      if (Date.now() > end) throw new Error(`${this.name} did not start within ${timeoutMs} ms:\n${this.tail()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async kill(signal: NodeJS.Signals): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.kill(signal);
    await exited;
  }

  output(): string {
    return this.out;
  }

  tail(chars = 4000): string {
    return this.out.slice(-chars);
  }
}
