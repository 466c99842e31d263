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
    const runs = await stack.client.listRuns();
    expect(runs.map((r) => r.depth).sort()).toEqual([0, 1]);
  });
});
