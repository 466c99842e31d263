import { ForkError } from "@smallchain/shared";
import { UserError, withClient, type GlobalOptions } from "../context.js";

export async function fork(runId: string, opts: GlobalOptions & { at: string; message?: string; name?: string; output?: string }): Promise<void> {
  const at = Number(opts.at);
  if (!Number.isInteger(at) || at <= 0) throw new UserError(`--at must be an event sequence number (see: smallchain get events --run ${runId}), got "${opts.at}"`);
  await withClient(opts, async (client) => {
    let forked;
    try {
      forked = await client.fork(runId, at, {
        ...(opts.message !== undefined && { message: opts.message }),
        ...(opts.name !== undefined && { name: opts.name }),
      });
    } catch (err) {
      if (err instanceof ForkError) throw new UserError(err.message);
      throw err;
    }
    if (opts.output === "json") {
      process.stdout.write(`${JSON.stringify({ runId: forked.runId, from: runId, at, events: forked.events })}\n`);
      return;
    }
    process.stdout.write(`run ${forked.runId} forked from ${runId} at #${at} (${forked.events} events copied)\n`);
  });
}
