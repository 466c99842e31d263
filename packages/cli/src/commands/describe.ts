import { contextWindowOf, displayStatus, totalSpend, type RecordedEvent } from "@smallchain/shared";
import { messageLine, usd } from "../format.js";
import { UserError, withClient, type GlobalOptions } from "../context.js";

export async function describeRun(runId: string, opts: GlobalOptions & { output?: string }): Promise<void> {
  await withClient(opts, async (client) => {
    const view = await client.getRun(runId);
    if (!view) throw new UserError(`run ${runId} not found (see: smallchain get runs)`);
    const events = await client.events(runId);
    const messages = contextWindowOf(runId, events);
    const calls = toolCalls(events);
    const started = events.find((e) => e.type === "RunStarted");
    const agent = started?.type === "RunStarted" ? started.data.agent : undefined;
    if (opts.output === "json") {
      process.stdout.write(`${JSON.stringify({ run: view, agent, contextWindow: messages, toolCalls: calls }, null, 2)}\n`);
      return;
    }
    const out: string[] = [];
    const field = (k: string, v: unknown) => v !== undefined && v !== "" && out.push(`${`${k}:`.padEnd(14)}${String(v)}`);
    field("Run", view.runId);
    field("Name", view.name);
    field("Status", displayStatus(view));
    field("Paused", view.pause && `${view.pause.limit} ${view.pause.value} reached (used ${view.pause.used})${view.pause.until !== undefined ? `; resumes at ${new Date(view.pause.until).toISOString()}` : "; smallchain resume " + view.runId}`);
    field("Agent", view.agentName);
    field("Task", view.task);
    field("Depth", view.depth);
    field("Parent", view.parent && `${view.parent.runId} (call ${view.parent.callId})`);
    field("LLM", agent && `${agent.llm.name} (${agent.llm.provider}${agent.llm.model ? ` ${agent.llm.model}` : ""})`);
    field("Steps", view.step);
    field("Tokens", `${view.usage.totalTokens} (prompt ${view.usage.promptTokens}, completion ${view.usage.completionTokens}, cached ${view.usage.cachedTokens})`);
    const total = totalSpend(view);
    field("Cost", `${usd(total.costUsd)} (own ${usd(view.costUsd)}, children ${usd(view.descendants.costUsd)}); tokens with children ${total.tokens}`);
    const limits = [
      ...Object.entries({ ...agent?.limits, ...view.limits }).filter(([k]) => k !== "onExceeded").map(([k, v]) => `${k}=${String(v)}`),
      ...(agent?.budget?.perHourUsd !== undefined ? [`per_hour_usd=${agent.budget.perHourUsd}`] : []),
      ...(agent?.budget?.perDayUsd !== undefined ? [`per_day_usd=${agent.budget.perDayUsd}`] : []),
    ];
    field("Limits", limits.join(" "));
    field("Spawned", (view.children ?? []).map((c) => `${c.runId} (${c.agent}, ${c.status})`).join(", "));
    field("Started", view.createdAt ? new Date(view.createdAt).toISOString() : undefined);
    field("Updated", view.updatedAt ? new Date(view.updatedAt).toISOString() : undefined);
    field("Output", view.output);
    field("Error", view.error);
    out.push("", `Context window (${messages.length} messages):`);
    messages.forEach((m, i) => out.push(messageLine(m, i)));
    out.push("", `Tool calls (${calls.length}):`);
    for (const c of calls) {
      out.push(`  ${c.callId.padEnd(8)} ${c.tool}(${JSON.stringify(c.args)})${c.childRunId ? ` child=${c.childRunId}` : ""}`);
      out.push(`           ${c.status}${c.result !== undefined ? `: ${c.result}` : ""}`);
    }
    process.stdout.write(`${out.join("\n")}\n`);
  });
}

type CallSummary = { callId: string; tool: string; args: unknown; status: string; result?: string; childRunId?: string };

function toolCalls(events: RecordedEvent[]): CallSummary[] {
  const calls = new Map<string, CallSummary>();
  for (const e of events) {
    if (e.type === "ToolCallRequested") calls.set(e.data.callId, { callId: e.data.callId, tool: e.data.tool, args: e.data.args, status: "requested" });
    const call = "callId" in e.data ? calls.get(e.data.callId) : undefined;
    if (!call) continue;
    if (e.type === "ChildRunRequested") Object.assign(call, { status: "delegated", childRunId: e.data.childRunId });
    if (e.type === "ToolCallCompleted") Object.assign(call, { status: "completed", result: e.data.result });
    if (e.type === "ToolCallFailed") Object.assign(call, { status: "failed", result: e.data.error });
    if (e.type === "ToolCallAwaitingApproval") Object.assign(call, { status: `awaiting approval (digest ${e.data.digest})` });
    if (e.type === "ToolCallApproved") Object.assign(call, { status: `approved${e.data.by ? ` by ${e.data.by}` : ""}` });
    if (e.type === "ToolCallRejected") Object.assign(call, { status: "rejected", result: [e.data.by && `by ${e.data.by}`, e.data.comment].filter(Boolean).join(": ") });
    if (e.type === "HumanInputRequested") Object.assign(call, { status: "awaiting a human's answer", result: e.data.question });
    if (e.type === "HumanInputReceived") Object.assign(call, { status: "answered", result: e.data.answer });
    if (e.type === "ToolCallAwaitingCallback") Object.assign(call, { status: "awaiting its callback" });
    if (e.type === "TimerScheduled") Object.assign(call, { status: `sleeping until ${new Date(e.data.dueAt).toISOString()}` });
    if (e.type === "TimerFired") Object.assign(call, { status: e.data.outcome, result: e.data.result });
  }
  return [...calls.values()];
}
