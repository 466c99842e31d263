import { withClient, type GlobalOptions } from "../context.js";
import { LiveMessage, shownEvent } from "@smallchain/shared";
import { eventLine, liveLine, runRow, runRowWide } from "../format.js";
import { table } from "../table.js";
import { readEvents } from "./follow.js";

export async function getRuns(opts: GlobalOptions & { output?: string; limit?: string; offset?: string }): Promise<void> {
  await withClient(opts, async (client) => {
    const { runs, total } = await client.listRuns({ limit: Number(opts.limit ?? 0), offset: Number(opts.offset ?? 0) });
    if (opts.output === "json") {
      process.stdout.write(`${JSON.stringify(runs, null, 2)}\n`);
      return;
    }
    if (runs.length === 0) {
      process.stdout.write("No runs.\n");
      return;
    }
    process.stdout.write(`${table(runs.map(opts.output === "wide" ? runRowWide : runRow))}\n`);
    const shown = Number(opts.offset ?? 0) + runs.length;
    if (shown < total) process.stderr.write(`(${total - shown} more: --offset ${shown})\n`);
  });
}

export async function getEvents(opts: GlobalOptions & { run?: string; follow?: boolean; pretty?: boolean; output?: string }): Promise<void> {
  await withClient(opts, async (client) => {
    const abort = new AbortController();
    process.once("SIGINT", () => abort.abort());
    // Following, tokens and tool progress show as they happen (core NATS: seen live, never stored).
    const live = opts.follow
      ? client.nc.subscribe(opts.run ? client.names.liveSubject(opts.run) : client.names.liveSubject("*"), {
          callback: (err, m) => {
            const parsed = err ? undefined : LiveMessage.safeParse(m.json());
            if (!parsed?.success) return;
            process.stdout.write(`${opts.output === "json" ? JSON.stringify({ live: parsed.data }) : liveLine(parsed.data, { color: (opts.pretty ?? false) && process.stdout.isTTY })}\n`);
          },
        })
      : undefined;
    abort.signal.addEventListener("abort", () => live?.unsubscribe());
    for await (const event of readEvents(client, { follow: opts.follow ?? false, signal: abort.signal, ...(opts.run !== undefined && { runId: opts.run }) })) {
      if (opts.output === "json") process.stdout.write(`${JSON.stringify(shownEvent(event))}\n`);
      else {
        process.stdout.write(`${eventLine(event, { color: (opts.pretty ?? false) && process.stdout.isTTY })}\n`);
        if (opts.pretty) process.stdout.write(`${indent(JSON.stringify(event.data, null, 2))}\n`);
      }
    }
  });
}

function indent(text: string): string {
  return text
    .split("\n")
    .map((l) => `    ${l}`)
    .join("\n");
}
