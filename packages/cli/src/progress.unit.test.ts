import { describe, expect, it } from "vitest";
import type { RecordedEvent } from "@smallchain/shared";
import { initialProgress, progressLine, withEvent, withLive } from "./progress.js";

const ev = (type: string, data: unknown, seq = 1) => ({ id: `r:${seq}`, type, v: 1, runId: "r", at: 0, seq, data }) as unknown as RecordedEvent;
const usage = (p: number, c: number) => ({ promptTokens: p, completionTokens: c, cachedTokens: 0 });

describe("the progress line of run --wait", () => {
  it("shows the step, tokens of the run and its children, cost when known, the status and what runs now", () => {
    let p = initialProgress();
    p = withEvent(p, ev("RunStarted", {}), true);
    p = withEvent(p, ev("LLMRequested", { step: 2 }), true);
    p = withEvent(p, ev("LLMResponded", { step: 2, usage: usage(1000, 200), costUsd: 0.0123 }), true);
    p = withEvent(p, ev("LLMResponded", { step: 1, usage: usage(30, 4) }), false);
    p = withLive(p, { kind: "tool", runId: "r", callId: "s2c0", tool: "add", status: "started", at: 0 });

    expect(progressLine(p, 12_400)).toBe("⟳ step 2 · 1,234 tokens · $0.0123 · Running · add… · 12s");
  });

  it("says what the run waits for, and how much the model has streamed meanwhile", () => {
    let p = withEvent(initialProgress(), ev("LLMRequested", { step: 1 }), true);
    p = withLive(p, { kind: "tokens", runId: "r", step: 1, text: "Hello wor", at: 0 });
    expect(progressLine(p, 0)).toBe("⟳ step 1 · 0 tokens · Running · streaming 9 chars · 0s");

    p = withEvent(p, ev("ToolCallAwaitingApproval", { callId: "s1c0" }), true);
    expect(progressLine(p, 3000)).toBe("⟳ step 1 · 0 tokens · AwaitingApproval · 3s");
    expect(withEvent(p, ev("RunCompleted", { output: "x" }), true).status).toBe("Completed");
  });
});

describe("live lines of get events --follow", () => {
  it("marks live messages with ~ instead of a sequence, quoting the tokens", async () => {
    const { liveLine } = await import("./format.js");
    const at = Date.UTC(2026, 0, 1, 15, 42, 23, 123);
    expect(liveLine({ kind: "tokens", runId: "rabc", step: 2, text: "The sum\n", at })).toBe(`15:42:23.123  rabc  ~      tokens            step 2 "The sum\\n"`);
    expect(liveLine({ kind: "tool", runId: "rabc", callId: "s2c0", tool: "add", status: "finished", at, durationMs: 3 })).toBe(
      "15:42:23.123  rabc  ~      tool              s2c0 add finished (3ms)",
    );
  });
});
