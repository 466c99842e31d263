import { Exit, UserError, withClient, type GlobalOptions } from "../context.js";
import { LiveMessage } from "@smallchain/shared";
import { eventLine } from "../format.js";
import { initialProgress, progressLine, withEvent, withLive } from "../progress.js";
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
    try {
      for await (const event of readEvents(client, { runId: started.runId, follow: true, until: endsRun, signal: abort.signal })) {
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
    const view = await client.waitForRun(started.runId, { timeoutMs: 5_000 }).catch(() => client.getRun(started.runId));
    if (!view || view.status === "Requested" || view.status === "Running") {
      throw new UserError(`run ${started.runId} did not finish within ${timeoutMs / 1000}s`, Exit.Error);
    }
    if (opts.output === "json") process.stdout.write(`${JSON.stringify(view, null, 2)}\n`);
    else process.stdout.write(`${view.status === "Completed" ? (view.output ?? "") : `${view.status}: ${view.error ?? ""}`}\n`);
    if (view.status !== "Completed") process.exitCode = Exit.RunNotCompleted;
  });
}
