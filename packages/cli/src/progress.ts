import type { LiveMessage, RecordedEvent } from "@smallchain/shared";

/** What a terminal's progress line shows about a run being waited for. */
export type Progress = { step: number; tokens: number; costUsd: number; status: string; streamed: number; tool?: string };

export function initialProgress(): Progress {
  return { step: 0, tokens: 0, costUsd: 0, status: "Requested", streamed: 0 };
}

const WAITS: Partial<Record<RecordedEvent["type"], string>> = {
  ToolCallAwaitingApproval: "AwaitingApproval",
  HumanInputRequested: "AwaitingHuman",
  ToolCallAwaitingCallback: "AwaitingCallback",
  TimerScheduled: "Sleeping",
};

/** Folds an event of the run (or its children: their tokens and cost count too) into the progress line. */
export function withEvent(p: Progress, event: RecordedEvent, own: boolean): Progress {
  switch (event.type) {
    case "LLMRequested":
      return own ? { ...p, step: event.data.step, status: "Running", streamed: 0 } : p;
    case "LLMResponded": {
      const d = event.data as typeof event.data & { costUsd?: number };
      return { ...p, tokens: p.tokens + d.usage.promptTokens + d.usage.completionTokens, costUsd: p.costUsd + (d.costUsd ?? 0) };
    }
    case "RunStarted":
      return own ? { ...p, status: "Running" } : p;
    case "RunCompleted":
    case "RunFailed":
    case "RunCancelled":
      return own ? { ...p, status: event.type.slice(3) } : p;
    default: {
      const wait = WAITS[event.type];
      return own && wait ? { ...p, status: wait } : own && event.type.startsWith("ToolCall") ? { ...p, status: "Running" } : p;
    }
  }
}

export function withLive(p: Progress, live: LiveMessage): Progress {
  if (live.kind === "tokens") return { ...p, streamed: p.streamed + live.text.length };
  if (live.status === "started") return { ...p, tool: live.tool };
  return { ...p, tool: undefined } as Progress;
}

/** `⟳ step 3 · 1,234 tokens · $0.0123 · Running · add…` */
export function progressLine(p: Progress, elapsedMs: number): string {
  const parts = [
    `step ${p.step}`,
    `${p.tokens.toLocaleString("en-US")} tokens`,
    ...(p.costUsd > 0 ? [`$${p.costUsd.toFixed(4)}`] : []),
    p.status,
    ...(p.tool ? [`${p.tool}…`] : p.streamed > 0 && p.status === "Running" ? [`streaming ${p.streamed} chars`] : []),
    `${Math.round(elapsedMs / 1000)}s`,
  ];
  return `⟳ ${parts.join(" · ")}`;
}
