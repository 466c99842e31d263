import { Duration, evolve, initialState, isTerminal, viewOf, type Limits } from "@smallchain/shared";
import { Exit, UserError, withClient, type GlobalOptions } from "../context.js";
import { LiveMessage } from "@smallchain/shared";
import { eventLine } from "../format.js";
import { initialProgress, progressLine, withEvent, withLive } from "../progress.js";
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
    // On a terminal, a progress line (step, tokens, cost, status) stays below the events and follows live tokens.
    const tty = process.stderr.isTTY === true && opts.output !== "json";
    const t0 = Date.now();
    let progress = initialProgress();
    let drawn = 0;
    const clear = () => tty && process.stderr.write("\r\x1b[2K");
    const draw = (force = false) => {
      if (!tty || (!force && Date.now() - drawn < 100)) return;
      drawn = Date.now();
      process.stderr.write(`\r\x1b[2K${progressLine(progress, Date.now() - t0)}`);
    };
    const live = tty
      ? client.nc.subscribe(client.names.liveSubject(started.runId), {
          callback: (err, m) => {
            const parsed = err ? undefined : LiveMessage.safeParse(m.json());
            if (!parsed?.success) return;
            progress = withLive(progress, parsed.data);
            draw();
          },
        })
      : undefined;
    const ticker = tty ? setInterval(() => draw(true), 1000) : undefined;
    // The run's state is folded from the events followed here, as the projector folds its view: the answer
    // is printed as soon as the run ends, whether or not a projector is running (or has caught up).
    let state = initialState(started.runId);
    try {
      for await (const event of readEvents(client, { runId: started.runId, follow: true, until: endsRun, signal: abort.signal })) {
        state = evolve(state, event);
        if (opts.output === "json") continue;
        clear();
        process.stderr.write(`${eventLine(event, { color: process.stderr.isTTY })}\n`);
        progress = withEvent(progress, event, true);
        draw(true);
      }
    } finally {
      clearTimeout(timer);
      clearInterval(ticker);
      live?.unsubscribe();
      clear();
    }
    if (!isTerminal(state)) {
      throw new UserError(`run ${started.runId} did not finish within ${timeoutMs / 1000}s (status: ${state.status})`, Exit.Error);
    }
    const view = viewOf(state);
    if (opts.output === "json") process.stdout.write(`${JSON.stringify(view, null, 2)}\n`);
    else process.stdout.write(`${view.status === "Completed" ? (view.output ?? "") : `${view.status}: ${view.error ?? ""}`}\n`);
    if (view.status !== "Completed") process.exitCode = Exit.RunNotCompleted;
  });
}
