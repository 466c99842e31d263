import { Duration, type Limits } from "@smallchain/shared";
import { Exit, UserError, withClient, type GlobalOptions } from "../context.js";
import { eventLine } from "../format.js";
import { endsRun, readEvents } from "./follow.js";

export type RunOptions = GlobalOptions & {
  message?: string;
  name?: string;
  wait?: boolean;
  timeout?: string;
  output?: string;
  maxSteps?: string;
  maxTokens?: string;
  maxCost?: string;
  maxDuration?: string;
  onExceeded?: "fail" | "pause";
};

export function positive(value: string | undefined, flag: string, integer = true): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) throw new UserError(`${flag} must be a positive ${integer ? "whole " : ""}number, got "${value}"`);
  return n;
}

export function duration(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const parsed = Duration.safeParse(/^\d+$/.test(value) ? Number(value) : value);
  if (!parsed.success) throw new UserError(`${flag}: "${value}" is not a duration (examples: 90s, 5m, 2h, 1d)`);
  return parsed.data;
}

function limitsOf(opts: RunOptions): Limits | undefined {
  const limits: Limits = {};
  const steps = positive(opts.maxSteps, "--max-steps");
  const tokens = positive(opts.maxTokens, "--max-tokens");
  const cost = positive(opts.maxCost, "--max-cost", false);
  const ms = duration(opts.maxDuration, "--max-duration");
  if (steps !== undefined) limits.maxSteps = steps;
  if (tokens !== undefined) limits.maxTokens = tokens;
  if (cost !== undefined) limits.maxCostUsd = cost;
  if (ms !== undefined) limits.maxDurationMs = ms;
  if (opts.onExceeded !== undefined) limits.onExceeded = opts.onExceeded;
  return Object.keys(limits).length > 0 ? limits : undefined;
}

export async function run(task: string, opts: RunOptions): Promise<void> {
  const limits = limitsOf(opts);
  await withClient(opts, async (client) => {
    const started = await client.startRun({
      task,
      ...(opts.message !== undefined && { message: opts.message }),
      ...(opts.name !== undefined && { name: opts.name }),
      ...(limits !== undefined && { limits }),
    });
    if (!opts.wait) {
      process.stdout.write(opts.output === "json" ? `${JSON.stringify(started)}\n` : `${started.runId}\n`);
      return;
    }
    if (opts.output !== "json") process.stderr.write(`run ${started.runId} started; waiting for it to finish\n`);
    const timeoutMs = Number(opts.timeout ?? 600) * 1000;
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), timeoutMs);
    try {
      for await (const event of readEvents(client, { runId: started.runId, follow: true, until: endsRun, signal: abort.signal })) {
        if (opts.output !== "json") process.stderr.write(`${eventLine(event, { color: process.stderr.isTTY })}\n`);
      }
    } finally {
      clearTimeout(timer);
    }
    const view = await client.waitForRun(started.runId, { timeoutMs: 5_000 }).catch(() => client.getRun(started.runId));
    if (!view || view.status === "Requested" || view.status === "Running") {
      throw new UserError(`run ${started.runId} did not finish within ${timeoutMs / 1000}s`, Exit.Error);
    }
    if (opts.output === "json") process.stdout.write(`${JSON.stringify(view, null, 2)}\n`);
    else process.stdout.write(`${view.status === "Completed" ? (view.output ?? "") : `${view.status}: ${view.error ?? ""}`}\n`);
    if (view.status !== "Completed") process.exitCode = Exit.RunNotCompleted;
  });
}
