import { describe, expect, it } from "vitest";
import { encodeView, initialState } from "@smallchain/shared";
import { startStack } from "../support/stack.js";

describe("the client", () => {
  it("lists every run once while their views are being rewritten", async () => {
    await using stack = await startStack([]);
    const ids = Array.from({ length: 300 }, (_, i) => `rlist${i}`);
    const write = (round: number) =>
      Promise.all(ids.map((id, i) => stack.client.buckets.runs.put(id, encodeView({ ...initialState(id), createdAt: i, eventCount: round }))));
    await write(0);
    let writing = true;
    const writer = (async () => {
      for (let round = 1; writing; round++) await write(round);
    })();
    try {
      for (let i = 0; i < 5; i++) {
        const listed = (await stack.client.listRuns()).runs.map((r) => r.runId);
        expect(new Set(listed).size).toBe(listed.length);
        expect(listed.every((id) => ids.includes(id))).toBe(true);
        expect(listed).toHaveLength(ids.length);
      }
    } finally {
      writing = false;
      await writer;
    }
  });
});
