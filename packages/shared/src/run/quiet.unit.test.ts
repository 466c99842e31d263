import { describe, expect, it } from "vitest";
import { initialState, type RunState } from "./state.js";
import { QuietRuns } from "./quiet.js";

describe("the quiet runs a process holds", () => {
  it("are due after 10 s of quiet, then as the quiet doubles, and forgotten after 10 min, once ended, or once not held", () => {
    let now = 0;
    const quiet = new QuietRuns(() => now);
    const running = { ...initialState("r"), status: "Running" } as RunState;
    const held = new Map<string, RunState>([["r", running]]);
    const due = () => quiet.due((id) => held.get(id)).map(([id]) => id);
    quiet.touch("r");
    now = 9_999;
    expect(due()).toEqual([]);
    now = 10_000;
    expect(due()).toEqual(["r"]);
    // Next check at max(10 s, twice the 10 s of quiet so far) from now.
    now = 29_999;
    expect(due()).toEqual([]);
    now = 30_000;
    expect(due()).toEqual(["r"]);
    // Handled again: the quiet starts over.
    quiet.touch("r");
    now = 40_000;
    expect(due()).toEqual(["r"]);
    // Past 10 min of quiet it is forgotten, even if it comes due.
    now = 30_000 + 10 * 60_000 + 1;
    expect(due()).toEqual([]);
    quiet.touch("r");
    held.set("r", { ...running, status: "Completed" });
    now += 10_000;
    expect(due()).toEqual([]);
    held.set("r", running);
    now += 100_000;
    expect(due()).toEqual([]);
  });
});
