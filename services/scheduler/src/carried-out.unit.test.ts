import { describe, expect, it } from "vitest";
import type { RecordedEvent } from "@smallchain/shared";
import { CarriedOut } from "./carried-out.js";

const event = (id: string, seq: number) => ({ id, type: "RunStarted", v: 1, runId: "r", at: 0, seq, data: {} }) as unknown as RecordedEvent;

describe("the decisions a scheduler carried out, until their echo", () => {
  it("keeps an event whole for keepMs, then only its id; take forgets it", () => {
    let now = 0;
    const carried = new CarriedOut(100, 5_000, () => now);
    const first = event("e1", 1);
    carried.keep(first);
    now = 4_000;
    carried.keep(event("e2", 2));
    expect(carried.take("e1")).toBe(first);
    expect(carried.take("e1")).toBeUndefined();
    now = 9_500;
    // e2 is older than 5 s when the next one comes: only its id is left (the echo is then decoded).
    carried.keep(event("e3", 3));
    expect(carried.take("e2")).toBe(true);
    expect(carried.take("e3")).toMatchObject({ id: "e3" });
  });

  it("keeps only ids when keepMs is 0", () => {
    const carried = new CarriedOut(100, 0, () => 0);
    carried.keep(event("e1", 1));
    expect(carried.take("e1")).toBe(true);
  });

  it("holds at most max ids, forgetting the oldest", () => {
    const carried = new CarriedOut(2, 5_000, () => 0);
    for (const [i, id] of ["a", "b", "c"].entries()) carried.keep(event(id, i + 1));
    expect(carried.has("a")).toBe(false);
    expect(carried.has("b")).toBe(true);
    expect(carried.has("c")).toBe(true);
  });

  it("stays small over many events kept and never taken (another replica got their echoes)", () => {
    let now = 0;
    const carried = new CarriedOut(100_000, 5_000, () => now);
    for (let i = 0; i < 50_000; i++) {
      now = i; // one a millisecond
      carried.keep(event(`x${i}`, i + 1));
    }
    // Only the last 5 s are held whole; the rest are ids.
    expect(carried.take("x44990")).toBe(true);
    expect(carried.take("x49990")).toMatchObject({ id: "x49990" });
    expect((carried as unknown as { kept: unknown[] }).kept.length).toBeLessThan(12_000);
  });
});
