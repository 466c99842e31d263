import { readFileSync } from "node:fs";
import { jetstreamManager } from "@nats-io/jetstream";
import { describe, expect, it } from "vitest";
import { Control } from "@smallchain/shared";
import { adderConfig } from "../support/configs.js";
import { eventually } from "../support/processes.js";
import { startStack, viewsRebuilt } from "../support/stack.js";

const calculator = readFileSync(new URL("../../examples/calculator.yaml", import.meta.url), "utf8");

describe("a scheduler that projects the views itself (SC_SCHEDULER_PROJECTS), with no projector running", () => {
  it("stores the views a projector would: the calculator example's two runs, listed, and rebuilt the same by a projector", async () => {
    await using stack = await startStack([], process.env, { schedulerProjects: true });
    const scheduler = await stack.start("scheduler");
    await stack.start("llm-worker");
    await stack.start("tool-worker");
    const applied = await stack.apply(calculator);
    const rootId = applied.runs[0]!.runId;
    const done = await stack.client.waitForRun(rootId, { timeoutMs: 20_000 });
    expect(done.status).toBe("Completed");
    expect(done.output).toBe("(3 + 4) + (5 + 3) = 15");
    // The run index too: the child run is listed as well.
    const { runs } = await stack.client.listRuns();
    expect(runs.map((r) => r.depth).sort()).toEqual([0, 1]);
    for (const r of runs) expect(r.lastSeq).toBe((await stack.client.events(r.runId)).at(-1)!.seq);
    // Stopping stores what it folded; a projector folding the streams afresh stores the same views.
    await scheduler.stop();
    const before = await Promise.all(runs.map((r) => stack.client.getRun(r.runId)));
    const jsm = await jetstreamManager(stack.nc);
    await expect(jsm.consumers.info(stack.names.eventsStream, stack.names.consumers.projector)).rejects.toThrow();
    expect(await viewsRebuilt(stack, runs.map((r) => r.runId))).toEqual(before);
  });

  it("folds its own decisions from their echoes, decoded, when it does not keep them as recorded (keepRecordedMs 0)", async () => {
    await using stack = await startStack(["scheduler", "llm-worker", "tool-worker"], process.env, { schedulerProjects: true, keepRecordedMs: 0 });
    const applied = await stack.apply(calculator);
    const done = await stack.client.waitForRun(applied.runs[0]!.runId, { timeoutMs: 20_000 });
    expect(done.output).toBe("(3 + 4) + (5 + 3) = 15");
    const { runs } = await stack.client.listRuns();
    for (const r of runs) {
      expect(r.status).toBe("Completed");
      expect(r.lastSeq).toBe((await stack.client.events(r.runId)).at(-1)!.seq);
    }
  });

  it("keeps the list of calls waiting for approval: listed while the run waits, gone once approved", async () => {
    await using stack = await startStack(["scheduler", "llm-worker", "tool-worker"], process.env, { schedulerProjects: true });
    const applied = await stack.apply(
      adderConfig(['{ tool_calls: [ { name: add, arguments: { a: 2, b: 3 } } ] }', '{ content: "{{last_tool_result}}" }'], 1, "waits", { approval: true }),
    );
    const runId = applied.runs[0]!.runId;
    const waiting = await stack.client.waitForRun(runId, {
      timeoutMs: 10_000,
      until: (s) => s.turn.phase === "tools" && s.turn.calls.some((c) => c.status === "awaitingApproval"),
    });
    const [wait] = await eventually(async () => {
      const waits = (await stack.client.listWaits("approval")).filter((w) => w.runId === runId);
      return waits.length > 0 ? waits : undefined;
    }, 10_000, "the approval to be listed");
    expect(wait).toMatchObject({ runId, tool: "add", agent: "adder", args: { a: 2, b: 3 } });
    expect(waiting.status).toBe("Running");
    await new Control(stack.client.store, stack.client.buckets.runs).approval(runId, wait!.callId, { approved: true, by: "test" });
    const done = await stack.client.waitForRun(runId, { timeoutMs: 10_000 });
    expect(done.output).toBe("5");
    await eventually(async () => (await stack.client.listWaits("approval")).every((w) => w.runId !== runId), 10_000, "the approval to leave the list");
  });
});
