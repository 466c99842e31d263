import type { Accepted, WaitEntry } from "@smallchain/shared";
import { who, withClient, type GlobalOptions } from "../context.js";
import { waitRow } from "../format.js";
import { table } from "../table.js";

type ByOptions = GlobalOptions & { by?: string; comment?: string; digest?: string; output?: string };

function report(accepted: Accepted, what: string, opts: { output?: string }): void {
  if (opts.output === "json") process.stdout.write(`${JSON.stringify({ ok: true, runId: accepted.runId, callId: accepted.callId, event: accepted.event.type, seq: accepted.event.seq })}\n`);
  else process.stdout.write(`${what} ${accepted.callId} of run ${accepted.runId}\n`);
}

export async function approve(runId: string, callId: string, opts: ByOptions): Promise<void> {
  await withClient(opts, async (client) => {
    const accepted = await client.control.approval(runId, callId, {
      approved: true,
      by: who(opts),
      ...(opts.comment !== undefined && { comment: opts.comment }),
      ...(opts.digest !== undefined && { digest: opts.digest }),
    });
    report(accepted, "approved", opts);
  });
}

export async function reject(runId: string, callId: string, opts: ByOptions): Promise<void> {
  await withClient(opts, async (client) => {
    const accepted = await client.control.approval(runId, callId, {
      approved: false,
      by: who(opts),
      ...(opts.comment !== undefined && { comment: opts.comment }),
    });
    report(accepted, "rejected", opts);
  });
}

export async function respond(runId: string, callId: string, answer: string, opts: ByOptions): Promise<void> {
  await withClient(opts, async (client) => {
    report(await client.control.respond(runId, callId, { answer, by: who(opts) }), "answered", opts);
  });
}

export async function getWaits(kind: WaitEntry["kind"] | undefined, opts: GlobalOptions & { output?: string }): Promise<void> {
  await withClient(opts, async (client) => {
    const waits = await client.listWaits(kind);
    if (opts.output === "json") {
      process.stdout.write(`${JSON.stringify(waits, null, 2)}\n`);
      return;
    }
    if (waits.length === 0) {
      process.stdout.write(kind === "approval" ? "No approvals pending.\n" : "Nothing is waiting.\n");
      return;
    }
    process.stdout.write(`${table(waits.map((w) => waitRow(w)))}\n`);
  });
}
