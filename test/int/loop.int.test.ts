import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { startStack } from "../support/stack.js";

const calculator = readFileSync(new URL("../../examples/calculator.yaml", import.meta.url), "utf8");

describe("the durable agent loop", () => {
  it("runs the calculator example with the mock provider: delegation, parallel tool calls, answer 15", async () => {
    await using stack = await startStack();
    const applied = await stack.apply(calculator);
    const runId = applied.runs[0]!.runId;
    const done = await stack.client.waitForRun(runId, { timeoutMs: 20_000 });
    expect(done.status).toBe("Completed");
    expect(done.output).toBe("(3 + 4) + (5 + 3) = 15");
    const { runs } = await stack.client.listRuns();
    expect(runs.map((r) => r.depth).sort()).toEqual([0, 1]);
  });

  it("picks up runs requested while no scheduler was running, once one starts (config already applied)", async () => {
    await using stack = await startStack(["projector", "llm-worker", "tool-worker"]);
    const applied = await stack.apply(calculator);
    const runId = applied.runs[0]!.runId;
    await new Promise((r) => setTimeout(r, 200));
    expect((await stack.client.events(runId)).map((e) => e.type)).toEqual(["RunRequested"]);
    await stack.start("scheduler");
    const done = await stack.client.waitForRun(runId, { timeoutMs: 20_000 });
    expect(done.output).toBe("(3 + 4) + (5 + 3) = 15");
  });

  it("resumes a run mid-flight after the scheduler restarts", async () => {
    await using stack = await startStack(["projector", "llm-worker", "tool-worker"]);
    const scheduler = await stack.start("scheduler");
    const applied = await stack.apply(calculator);
    const runId = applied.runs[0]!.runId;
    await stack.client.waitForRun(runId, { until: (s) => s.step >= 1 });
    await scheduler.stop();
    await stack.start("scheduler");
    const done = await stack.client.waitForRun(runId, { timeoutMs: 20_000 });
    expect(done.status).toBe("Completed");
    const ids = (await stack.client.events(runId)).map((e) => e.id);
    expect(new Set(ids).size).toBe(ids.length);
  });
});
