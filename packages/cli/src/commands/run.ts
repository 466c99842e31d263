import { Exit, UserError, withClient, type GlobalOptions } from "../context.js";
import { eventLine } from "../format.js";
import { endsRun, readEvents } from "./follow.js";

export type RunOptions = GlobalOptions & { message?: string; name?: string; wait?: boolean; timeout?: string; output?: string };

export async function run(task: string, opts: RunOptions): Promise<void> {
  await withClient(opts, async (client) => {
    const started = await client.startRun({
      task,
      ...(opts.message !== undefined && { message: opts.message }),
      ...(opts.name !== undefined && { name: opts.name }),
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
