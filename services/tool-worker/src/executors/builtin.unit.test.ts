import { describe, expect, it } from "vitest";
import { runBuiltin } from "./builtin.js";

describe("runBuiltin", () => {
  it("computes each operation and returns the number as text", () => {
    expect(runBuiltin("add", { a: 7, b: 8 })).toEqual({ ok: true, output: "15" });
    expect(runBuiltin("subtract", { a: 7, b: 8 })).toEqual({ ok: true, output: "-1" });
    expect(runBuiltin("multiply", { a: 2.5, b: 4 })).toEqual({ ok: true, output: "10" });
    expect(runBuiltin("divide", { a: 5, b: 2 })).toEqual({ ok: true, output: "2.5" });
  });

  it("accepts numbers given as numeric strings", () => {
    expect(runBuiltin("add", { a: "7", b: " 8.5 " })).toEqual({ ok: true, output: "15.5" });
    expect(runBuiltin("multiply", { a: "-1e3", b: 2 })).toEqual({ ok: true, output: "-2000" });
  });

  it("rejects missing or non-numeric operands with a message naming the tool and the arguments", () => {
    expect(runBuiltin("add", { a: "x" })).toEqual({ ok: false, error: 'add needs numbers a and b, got {"a":"x"}' });
    expect(runBuiltin("divide", null)).toEqual({ ok: false, error: "divide needs numbers a and b, got null" });
    expect(runBuiltin("subtract", undefined)).toEqual({ ok: false, error: "subtract needs numbers a and b, got undefined" });
    for (const bad of ["", "0x10", "Infinity", "1,5", true, [1]]) {
      expect(runBuiltin("multiply", { a: bad, b: 1 }).ok).toBe(false);
    }
  });

  it("reports division by zero instead of returning Infinity", () => {
    expect(runBuiltin("divide", { a: 1, b: 0 })).toEqual({ ok: false, error: "division by zero" });
    expect(runBuiltin("divide", { a: 1, b: "0.0" })).toEqual({ ok: false, error: "division by zero" });
  });

  it("reports a result too large to represent", () => {
    expect(runBuiltin("multiply", { a: 1e308, b: 10 })).toEqual({ ok: false, error: "result is out of range" });
  });

  it("shortens huge arguments in the error", () => {
    const outcome = runBuiltin("add", { a: "y".repeat(10_000) });
    expect(outcome.ok).toBe(false);
    if (!outcome.ok) expect(outcome.error.length).toBeLessThan(300);
  });
});
