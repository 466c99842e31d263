import { spawn, type ChildProcess } from "node:child_process";
import type { CommandExecutor } from "@smallchain/shared";
import type { ToolOutcome } from "./outcome.js";
import { HeadBuffer, TailBuffer } from "./output.js";
import { killGroup, trackGroup, untrackGroup } from "./process-group.js";

export type CommandContext = { idempotencyKey: string; runId: string; callId: string; signal?: AbortSignal };

export type Runtime = CommandExecutor["runtime"];
/** The executable started for each runtime. */
export type RuntimeBinaries = Record<Runtime, string>;

export const DEFAULT_BINARIES: RuntimeBinaries = { bash: "bash", node: process.execPath, python: "python3" };
const SCRIPT_ARGS: Record<Runtime, string[]> = {
  // Node's stdio pipes are sockets, and bash sources ~/.bashrc when stdin is a socket (its rshd heuristic).
  bash: ["--norc", "-c"],
  node: ["-e"],
  python: ["-c"],
};
const PASSED_THROUGH_ENV = ["PATH", "HOME", "LANG", "TZ"];
const STDERR_TAIL_BYTES = 2048;
const STDOUT_TAIL_CHARS = 2048;
/** After the process exits, how long to wait for its pipes to close: a descendant that escaped the group can hold them forever. */
const PIPE_GRACE_MS = 1000;

type Exit = { code: number | null; signal: NodeJS.Signals | null };

/**
 * Runs a tool script with the call's arguments as JSON on stdin, in a scrubbed environment.
 * `binaries` overrides the executable per runtime. Never throws, never rejects.
 */
export function runCommand(
  spec: CommandExecutor,
  args: unknown,
  ctx: CommandContext,
  binaries: Partial<RuntimeBinaries> = {},
): Promise<ToolOutcome> {
  const input = serialise(args);
  if (!input.ok) return Promise.resolve(input);
  if (ctx.signal?.aborted) return Promise.resolve({ ok: false, error: "cancelled" });

  const binary = binaries[spec.runtime] ?? DEFAULT_BINARIES[spec.runtime];
  let child: ChildProcess;
  try {
    child = spawn(binary, [...SCRIPT_ARGS[spec.runtime], spec.script], {
      env: scrubbedEnv(spec.env, ctx),
      stdio: "pipe",
      detached: true,
    });
  } catch (err) {
    return Promise.resolve(cannotStart(binary, err));
  }
  return supervise(child, binary, spec, input.json, ctx.signal);
}

function supervise(
  child: ChildProcess,
  binary: string,
  spec: CommandExecutor,
  input: string,
  signal: AbortSignal | undefined,
): Promise<ToolOutcome> {
  return new Promise((resolve) => {
    const stdout = new HeadBuffer(spec.max_output_bytes);
    const stderr = new TailBuffer(STDERR_TAIL_BYTES);
    const pid = child.pid; // undefined when the spawn failed
    let stopReason: string | undefined;
    let exit: Exit | undefined;
    let graceTimer: NodeJS.Timeout | undefined;
    let settled = false;

    const stop = (reason: string): void => {
      stopReason ??= reason;
      if (pid !== undefined) killGroup(pid);
    };
    const timer = setTimeout(() => stop(`timed out after ${spec.timeout_ms} ms`), spec.timeout_ms);
    const onAbort = (): void => stop("cancelled");
    signal?.addEventListener("abort", onAbort, { once: true });
    if (pid !== undefined) trackGroup(pid);

    const settle = (outcome: ToolOutcome): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(graceTimer);
      signal?.removeEventListener("abort", onAbort);
      if (pid !== undefined) untrackGroup(pid);
      child.stdout?.destroy();
      child.stderr?.destroy();
      resolve(outcome);
    };
    const finish = (): void => settle(outcomeOf(exit ?? { code: null, signal: null }, stopReason, stdout, stderr, spec));

    child.stdout?.on("data", (chunk: Buffer) => stdout.push(chunk));
    child.stderr?.on("data", (chunk: Buffer) => stderr.push(chunk));
    child.stdin?.on("error", () => {
      // EPIPE: the script exited without reading its arguments.
    });
    child.stdin?.end(input);

    // Without child.kill() or IPC, "error" only means the process could not be started.
    child.on("error", (err) => settle(cannotStart(binary, err)));
    child.on("exit", (code, sig) => {
      exit = { code, signal: sig };
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      // Background processes the script left behind are killed with it, not left running unsupervised.
      if (pid !== undefined) killGroup(pid);
      graceTimer = setTimeout(finish, PIPE_GRACE_MS);
    });
    child.on("close", (code, sig) => {
      exit ??= { code, signal: sig };
      finish();
    });
  });
}

function outcomeOf(
  exit: Exit,
  stopReason: string | undefined,
  stdout: HeadBuffer,
  stderr: TailBuffer,
  spec: CommandExecutor,
): ToolOutcome {
  const errorTail = stderr.text().trim();
  if (stopReason !== undefined) return failure(stopReason, errorTail);
  if (exit.code === 0) {
    const output = stdout.text().replace(/\r?\n$/, "");
    return { ok: true, output: stdout.truncated ? `${output}\n[output truncated at ${spec.max_output_bytes} bytes]` : output };
  }
  const how = exit.code !== null ? `exited with code ${exit.code}` : `killed by signal ${exit.signal ?? "unknown"}`;
  return failure(how, errorTail || stdout.text().trim().slice(-STDOUT_TAIL_CHARS));
}

function failure(what: string, detail: string): ToolOutcome {
  return { ok: false, error: detail ? `${what}: ${detail}` : what };
}

function cannotStart(binary: string, err: unknown): ToolOutcome {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const message = code === "ENOENT" ? "executable not found (ENOENT)" : err instanceof Error ? err.message : String(err);
  return { ok: false, error: `cannot start ${binary}: ${message}` };
}

function serialise(args: unknown): { ok: true; json: string } | { ok: false; error: string } {
  try {
    // stringify yields undefined (despite its type) for undefined, functions and symbols.
    const json: string | undefined = JSON.stringify(args);
    return { ok: true, json: json ?? "{}" };
  } catch (err) {
    return { ok: false, error: `arguments are not JSON: ${err instanceof Error ? err.message : String(err)}` };
  }
}

function scrubbedEnv(allowed: readonly string[], ctx: CommandContext): NodeJS.ProcessEnv {
  const entries: [string, string][] = [];
  for (const name of [...PASSED_THROUGH_ENV, ...allowed]) {
    const value = process.env[name];
    if (value !== undefined) entries.push([name, value]);
  }
  entries.push(
    ["SMALLCHAIN_IDEMPOTENCY_KEY", ctx.idempotencyKey],
    ["SMALLCHAIN_RUN_ID", ctx.runId],
    ["SMALLCHAIN_CALL_ID", ctx.callId],
  );
  // fromEntries, unlike assignment, treats a listed name like "__proto__" as an ordinary key.
  return Object.fromEntries(entries);
}
