import { describe, expect, it } from "vitest";
import { table } from "./table.js";

describe("table", () => {
  it("aligns columns by terminal width, three spaces apart, without trailing blanks", () => {
    const out = table([
      { NAME: "a", STATUS: "Completed", STEPS: 3 },
      { NAME: "日本語", STATUS: "\u001b[31mFailed\u001b[0m", STEPS: 12 },
    ]);
    expect(out.split("\n")).toEqual([
      "NAME     STATUS      STEPS",
      "a        Completed   3",
      "日本語   \u001b[31mFailed\u001b[0m      12",
    ]);
  });

  it("prints the headers it is given, and empty cells for missing fields", () => {
    expect(table([], ["NAME", "STATUS"])).toBe("NAME   STATUS");
    expect(table([{ NAME: "x" }], ["NAME", "AGE", "STATUS"]).split("\n")).toEqual(["NAME   AGE   STATUS", "x"]);
  });
});
