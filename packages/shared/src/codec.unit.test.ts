import { describe, expect, it } from "vitest";
import { z } from "zod";
import { DecodeError, decodeTyped, encode, encodeChecked } from "./codec.js";
import { isCommandShaped } from "./commands.js";
import { RunEvent, isEventShaped } from "./events.js";

const Point = z.object({ x: z.number(), y: z.number() });
const shaped = (v: unknown) => typeof (v as { x?: unknown } | null)?.x === "number";

describe("decodeTyped", () => {
  it("takes a typed value after its envelope check alone, and validates an untyped one whole", () => {
    const bytes = encode({ x: 1, y: 2, extra: true });
    // Typed: the schema is not run (it would strip `extra`).
    expect(decodeTyped(Point, bytes, "point", true, shaped)).toEqual({ x: 1, y: 2, extra: true });
    expect(decodeTyped(Point, bytes, "point", false, shaped)).toEqual({ x: 1, y: 2 });
  });

  it("validates whole a typed value whose envelope fails, naming what is wrong", () => {
    expect(() => decodeTyped(Point, encode({ y: 2 }), "point on s", true, shaped)).toThrow(new DecodeError("point on s: x: Invalid input: expected number, received undefined"));
    expect(() => decodeTyped(Point, new Uint8Array([0xc1]), "point", true, shaped)).toThrow(DecodeError);
  });
});

describe("encodeChecked (SC_CHECK_WRITES=1, as the test suite runs)", () => {
  it("refuses to write an invalid value, naming its field, and encodes a valid one", () => {
    expect(process.env.SC_CHECK_WRITES).toBe("1");
    expect(() => encodeChecked(Point, { x: 1 } as { x: number; y: number }, "point p1")).toThrow(/^writing point p1: .*y: /);
    expect(encodeChecked(Point, { x: 1, y: 2 }, "point p2")).toEqual(encode({ x: 1, y: 2 }));
  });
});

describe("envelope checks", () => {
  const event = { id: "r1:started", type: "RunCompleted", v: 1, runId: "r1", at: 1, data: { output: "ok" } };

  it("accept an event of a known type and version with its data, and nothing else", () => {
    expect(RunEvent.safeParse(event).success).toBe(true);
    expect(isEventShaped(event)).toBe(true);
    for (const bad of [null, "x", { ...event, type: "Nonsense" }, { ...event, v: 2 }, { ...event, data: undefined }, { ...event, runId: 7 }, { ...event, at: "1" }]) {
      expect(isEventShaped(bad)).toBe(false);
    }
  });

  it("accept a command with its id, run and step", () => {
    expect(isCommandShaped({ id: "r1:tool:c", runId: "r1", step: 1 })).toBe(true);
    expect(isCommandShaped({ id: "r1:tool:c", runId: "r1" })).toBe(false);
    expect(isCommandShaped([])).toBe(false);
  });
});
