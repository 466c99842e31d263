import { replayLlmCalls } from "@smallchain/shared";
import { messageLine } from "../format.js";
import { UserError, withClient, type GlobalOptions } from "../context.js";

/** Prints a run step by step as the model saw it: at each LLM call, the messages it was sent and its answer. */
export async function replay(runId: string, opts: GlobalOptions & { output?: string; newOnly?: boolean }): Promise<void> {
  await withClient(opts, async (client) => {
    const events = await client.events(runId);
    if (events.length === 0) throw new UserError(`run ${runId} not found (see: smallchain get runs)`);
    const calls = replayLlmCalls(events);
    if (opts.output === "json") {
      process.stdout.write(`${JSON.stringify(calls, null, 2)}\n`);
      return;
    }
    const out: string[] = [];
    let shown = 0;
    for (const call of calls) {
      out.push(`=== step ${call.step}  #${call.seq}  ${new Date(call.at).toISOString()}  llm=${call.llm}  ${call.messages.length} messages  tools=[${call.tools.join(", ")}]`);
      const from = opts.newOnly ? shown : 0;
      if (from > 0) out.push(`  (${from} earlier messages)`);
      call.messages.slice(from).forEach((m, i) => out.push(messageLine(m, from + i)));
      shown = call.messages.length;
      const r = call.response;
      if (!r) out.push("  --> (no answer recorded)");
      else if ("error" in r) out.push(`  --> failed: ${r.error}`);
      else {
        if (r.content) out.push(indent(`  --> ${r.content}`));
        for (const c of r.toolCalls) out.push(`  --> ${c.name}(${c.arguments}) [${c.id}]`);
      }
      out.push("");
    }
    if (calls.length === 0) out.push(`run ${runId} made no LLM call`);
    const last = events[events.length - 1]!;
    if (last.type === "RunCompleted") out.push(`=== completed: ${last.data.output}`);
    else if (last.type === "RunFailed") out.push(`=== failed: ${last.data.reason}`);
    else if (last.type === "RunCancelled") out.push(`=== cancelled${last.data.reason ? `: ${last.data.reason}` : ""}`);
    process.stdout.write(`${out.join("\n")}\n`);
  });
}

function indent(text: string): string {
  return text.split("\n").join("\n      ");
}
