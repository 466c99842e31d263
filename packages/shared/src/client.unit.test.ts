import { describe, expect, it, vi } from "vitest";
import { startWithin } from "./client.js";

describe("startWithin (waitForRun's watch start)", () => {
  it("gives the watch when it starts in time", async () => {
    const watch = { stop: vi.fn() };
    expect(await startWithin(Promise.resolve(watch), 1_000)).toBe(watch);
    expect(watch.stop).not.toHaveBeenCalled();
  });

  it("gives up at the deadline, and stops the watch should it start later", async () => {
    const watch = { stop: vi.fn() };
    let start!: (w: typeof watch) => void;
    const starting = new Promise<typeof watch>((r) => (start = r));
    const t0 = Date.now();
    expect(await startWithin(starting, 50)).toBeUndefined();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(45);
    start(watch);
    await starting;
    await Promise.resolve();
    expect(watch.stop).toHaveBeenCalledOnce();
  });

  it("passes on a failure to start", async () => {
    await expect(startWithin(Promise.reject(new Error("no leader")), 1_000)).rejects.toThrow("no leader");
  });
});
