import Table from "cli-table3";

const PLAIN = {
  top: "", "top-mid": "", "top-left": "", "top-right": "",
  bottom: "", "bottom-mid": "", "bottom-left": "", "bottom-right": "",
  left: "", "left-mid": "", mid: "", "mid-mid": "", right: "", "right-mid": "", middle: "   ",
};

/** A kubectl-style table: a header row and aligned columns, no borders. */
export function table(rows: Record<string, string | number>[], headers?: string[]): string {
  const head = headers ?? Object.keys(rows[0] ?? {});
  const t = new Table({ head, chars: PLAIN, style: { head: [], border: [], "padding-left": 0, "padding-right": 0 } });
  for (const row of rows) t.push(head.map((h) => String(row[h] ?? "")));
  return t.toString().split("\n").map((l) => l.trimEnd()).join("\n");
}
