import { assertNever, displayStatus, totalSpend, type ChatMessage, type LiveMessage, type Spend, type RecordedEvent, type RunState, type WaitEntry } from "@smallchain/shared";

const MAX = 160;

function clip(text: string, max = MAX): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

function json(value: unknown): string {
  return typeof value === "string" ? value : JSON.stringify(value);
}

/** The essentials of an event, in a few words. */
export function summarize(event: RecordedEvent): string {
  switch (event.type) {
    case "RunRequested": {
      const d = event.data;
      const parent = d.parent ? ` parent=${d.parent.runId}/${d.parent.callId}` : "";
      return `agent=${d.agent}${d.task ? ` task=${d.task}` : ""} depth=${d.depth}${parent} "${clip(d.input, 100)}"`;
    }
    case "RunStarted":
      return `agent=${event.data.agent.name} llm=${event.data.agent.llm.name} tools=[${event.data.agent.tools.map((t) => t.name).join(", ")}]`;
    case "LLMRequested":
      return `step ${event.data.step} llm=${event.data.llm} messages=${event.data.messageCount}`;
    case "LLMResponded": {
      const d = event.data;
      const calls = d.toolCalls.map((c) => `${c.name}(${clip(c.arguments, 60)})`).join(", ");
      const said = d.content ? `"${clip(d.content, 100)}"` : "";
      const tokens = `${d.usage.promptTokens}+${d.usage.completionTokens} tokens${d.costUsd !== undefined ? ` ${usd(d.costUsd)}` : ""} ${d.durationMs}ms`;
      return `step ${d.step} ${[said, calls && `calls ${calls}`].filter(Boolean).join(" ")} (${tokens})`;
    }
    case "LLMFailed":
      return `step ${event.data.step} ${event.data.retryable ? "(retryable) " : ""}${clip(event.data.error)}`;
    case "ToolCallRequested":
      return `${event.data.callId} ${event.data.tool}(${clip(json(event.data.args), 80)})${event.data.kind === "tool" ? "" : ` [${event.data.kind}]`}`;
    case "ToolCallCompleted":
      return `${event.data.callId} -> ${clip(event.data.result, 100)}`;
    case "ToolCallFailed":
      return `${event.data.callId} error: ${clip(event.data.error, 120)}`;
    case "ToolCallAwaitingApproval":
      return `${event.data.callId} ${event.data.tool} awaits approval (digest ${event.data.digest})${due(event.data.dueAt, event.data.onTimeout)}`;
    case "ToolCallApproved":
      return `${event.data.callId} approved${by(event.data.by)}${event.data.comment ? `: "${clip(event.data.comment, 100)}"` : ""}`;
    case "ToolCallRejected":
      return `${event.data.callId} rejected${by(event.data.by)}${event.data.comment ? `: "${clip(event.data.comment, 100)}"` : ""}`;
    case "HumanInputRequested":
      return `${event.data.callId} asks: "${clip(event.data.question, 120)}"${due(event.data.dueAt, event.data.onTimeout)}`;
    case "HumanInputReceived":
      return `${event.data.callId} answer${by(event.data.by)}: "${clip(event.data.answer, 120)}"`;
    case "ToolCallAwaitingCallback":
      return `${event.data.callId} awaits its callback${due(event.data.dueAt, event.data.onTimeout)}`;
    case "TimerScheduled":
      return `${event.data.callId} sleeps until ${new Date(event.data.dueAt).toISOString()}`;
    case "TimerFired":
      return `${event.data.callId} ${event.data.outcome}: ${clip(event.data.result, 120)}`;
    case "ChildRunRequested":
      return `${event.data.callId} child=${event.data.childRunId} agent=${event.data.agent}`;
    case "ChildRunEnded":
      return `child=${event.data.childRunId} ${event.data.status}${event.data.output !== undefined ? ` "${clip(event.data.output, 80)}"` : ""}${event.data.error ? ` ${clip(event.data.error, 80)}` : ""} (${spendText(event.data.spend)})`;
    case "TasksAwaited":
      return `${event.data.callId} waits for ${event.data.runIds.join(", ")}`;
    case "TaskCancelRequested":
      return `${event.data.callId} cancels ${event.data.childRunId}`;
    case "BudgetExceeded": {
      const d = event.data;
      return `${d.limit} ${d.value} reached (used ${d.used}) -> ${d.action}${d.until !== undefined ? ` until ${new Date(d.until).toISOString()}` : ""}`;
    }
    case "RunResumed": {
      const d = event.data;
      const raise = Object.entries(d.raise ?? {}).map(([k, v]) => `+${v} ${k}`).join(" ");
      return `${d.auto ? "budget window rolled over" : `resumed${by(d.by)}`}${raise ? ` ${raise}` : ""}${d.lift?.length ? ` lifted ${d.lift.join(", ")}` : ""}`;
    }
    case "RunCompleted":
      return `"${clip(event.data.output)}"`;
    case "RunFailed":
      return clip(event.data.reason);
    case "RunCancelled":
      return clip(event.data.reason ?? "");
    default:
      return assertNever(event);
  }
}

/** Dollars with enough digits for small calls: $0.0075. */
export function usd(n: number): string {
  return `$${n === 0 ? "0" : n >= 1 ? n.toFixed(2) : n.toPrecision(3).replace(/0+$/, "").replace(/\.$/, "")}`;
}

function spendText(s: Spend): string {
  return `${s.tokens} tokens ${usd(s.costUsd)}`;
}

function by(who: string | undefined): string {
  return who ? ` by ${who}` : "";
}

function due(dueAt: number | undefined, onTimeout: string | undefined): string {
  return dueAt === undefined ? "" : ` until ${new Date(dueAt).toISOString()} (then ${onTimeout ?? "fail"})`;
}

const COLORS: Record<string, string> = {
  ToolCallAwaitingApproval: "\x1b[35m",
  HumanInputRequested: "\x1b[35m",
  ToolCallRejected: "\x1b[33m",
  RunCompleted: "\x1b[32m",
  RunFailed: "\x1b[31m",
  LLMFailed: "\x1b[31m",
  ToolCallFailed: "\x1b[33m",
  RunRequested: "\x1b[36m",
};

/** `15:42:23.123  rabc…  #12  LLMResponded  step 1 …` */
export function eventLine(event: RecordedEvent, { color = false }: { color?: boolean } = {}): string {
  const time = new Date(event.at).toISOString().slice(11, 23);
  const type = event.type.padEnd(17);
  const paint = color ? (COLORS[event.type] ?? "") : "";
  const reset = paint ? "\x1b[0m" : "";
  return `${time}  ${event.runId}  #${String(event.seq).padEnd(5)} ${paint}${type}${reset} ${summarize(event)}`;
}

export function runRow(run: RunState): Record<string, string | number> {
  return {
    NAME: run.name ?? "",
    STATUS: displayStatus(run),
    AGENT: run.agentName,
    TASK: run.task ?? "",
    ID: run.runId,
    DEPTH: run.depth,
  };
}

export function runRowWide(run: RunState): Record<string, string | number> {
  return {
    ...runRow(run),
    STEP: run.step,
    TOKENS: totalSpend(run).tokens,
    COST: usd(totalSpend(run).costUsd),
    PARENT: run.parent?.runId ?? "",
    AGE: age(run.createdAt),
  };
}

export function age(at: number, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - at) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  if (s < 172800) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86400)}d`;
}

export function waitRow(wait: WaitEntry, now = Date.now()): Record<string, string> {
  const what = wait.kind === "human" ? `"${clip(wait.question ?? "", 60)}"` : wait.kind === "approval" ? clip(JSON.stringify(wait.args ?? {}), 60) : "";
  return {
    RUN: wait.runId,
    CALL: wait.callId,
    KIND: wait.kind,
    TOOL: wait.tool,
    AGENT: wait.agent,
    WHAT: what,
    WAITING: age(wait.since, now),
    DUE: wait.dueAt === undefined ? "" : new Date(wait.dueAt).toISOString().slice(0, 19).replace("T", " "),
  };
}

/** `15:42:23.123  rabc…  ~      tokens            step 2 "The sum i"`: live, so no sequence. */
export function liveLine(live: LiveMessage, { color = false }: { color?: boolean } = {}): string {
  const time = new Date(live.at).toISOString().slice(11, 23);
  const dim = color ? "\x1b[2m" : "";
  const reset = color ? "\x1b[0m" : "";
  const what =
    live.kind === "tokens"
      ? `${"tokens".padEnd(17)} step ${live.step} ${JSON.stringify(live.text)}`
      : `${"tool".padEnd(17)} ${live.callId} ${live.tool} ${live.status}${live.durationMs !== undefined ? ` (${live.durationMs}ms)` : ""}`;
  return `${dim}${time}  ${live.runId}  ~      ${what}${reset}`;
}

/** One message of a context window, numbered, continuation lines indented under its body (describe, replay). */
export function messageLine(m: ChatMessage, i: number): string {
  const body =
    m.role === "assistant"
      ? [m.content ?? "", ...(m.tool_calls ?? []).map((c) => `-> ${c.name}(${c.arguments}) [${c.id}]`)].filter(Boolean).join("\n")
      : m.role === "tool"
        ? `[${m.tool_call_id}] ${m.content}`
        : m.content;
  return `  ${String(i).padStart(3)} ${m.role.padEnd(9)} ${body.split("\n").join("\n                ")}`;
}
