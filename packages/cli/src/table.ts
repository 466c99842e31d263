import stringWidth from "string-width";

/** Columns are this many spaces apart, as kubectl's. */
const GAP = "   ";

/**
 * A kubectl-style table: a header row and aligned columns, no borders. Widths are terminal columns
 * (string-width: wide characters count two, colour codes none). Plain padding, because a page of 500 runs
 * laid out by cli-table3 took 160-180 ms in a fresh CLI process, a fifth of `get runs`, for borders and
 * spans we never draw.
 */
export function table(rows: Record<string, string | number>[], headers?: string[]): string {
  const head = headers ?? Object.keys(rows[0] ?? {});
  const cells = [head, ...rows.map((row) => head.map((h) => String(row[h] ?? "")))];
  const widths = cells.map((line) => line.map((cell) => stringWidth(cell)));
  const columns = head.map((_, i) => Math.max(...widths.map((w) => w[i]!)));
  return cells
    .map((line, r) => line.map((cell, i) => cell + " ".repeat(columns[i]! - widths[r]![i]!)).join(GAP).trimEnd())
    .join("\n");
}
