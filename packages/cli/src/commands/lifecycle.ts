import type { Accepted, LimitRaise } from "@smallchain/shared";
import { who, withClient, type GlobalOptions } from "../context.js";
import { duration, positive } from "./run.js";

type Opts = GlobalOptions & { by?: string; output?: string };


function report(accepted: Accepted, what: string, opts: { output?: string }): void {
  if (opts.output === "json") process.stdout.write(`${JSON.stringify({ ok: true, runId: accepted.runId, event: accepted.event.type, seq: accepted.event.seq })}\n`);
  else process.stdout.write(`${what} run ${accepted.runId}\n`);
}

export async function resume(runId: string, opts: Opts & { addCost?: string; addTokens?: string; addSteps?: string; addDuration?: string }): Promise<void> {
  const raise: LimitRaise = {};
  const cost = positive(opts.addCost, "--add-cost", false);
  const tokens = positive(opts.addTokens, "--add-tokens");
  const steps = positive(opts.addSteps, "--add-steps");
  const ms = duration(opts.addDuration, "--add-duration");
  if (cost !== undefined) raise.costUsd = cost;
  if (tokens !== undefined) raise.tokens = tokens;
  if (steps !== undefined) raise.steps = steps;
  if (ms !== undefined) raise.durationMs = ms;
  await withClient(opts, async (client) => {
    const accepted = await client.control.resume(runId, { by: who(opts), ...(Object.keys(raise).length > 0 && { raise }) });
    report(accepted, "resumed", opts);
  });
}

export async function cancel(runId: string, opts: Opts & { reason?: string }): Promise<void> {
  await withClient(opts, async (client) => {
    const accepted = await client.control.cancel(runId, { by: who(opts), ...(opts.reason !== undefined && { reason: opts.reason }) });
    report(accepted, "cancelled", opts);
  });
}
