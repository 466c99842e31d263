import { SCHEDULER_BUILTINS, type BuiltinName } from "@smallchain/shared";
import type { ToolOutcome } from "./outcome.js";

const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;
const MAX_SHOWN_CHARS = 200;

export function runBuiltin(name: BuiltinName, args: unknown): ToolOutcome {
  if (SCHEDULER_BUILTINS.includes(name)) return { ok: false, error: `${name} runs in the scheduler; a tool worker cannot run it` };
  const operands = readOperands(args);
  if (!operands) return { ok: false, error: `${name} needs numbers a and b, got ${show(args)}` };
  const { a, b } = operands;
  switch (name) {
    case "add":
      return result(a + b);
    case "subtract":
      return result(a - b);
    case "multiply":
      return result(a * b);
    case "divide":
      return b === 0 ? { ok: false, error: "division by zero" } : result(a / b);
    case "human_input":
    case "sleep_until":
    case "check_current_spend_since":
    case "spawn_task":
    case "list_tasks":
    case "wait_for":
    case "cancel_task":
      return { ok: false, error: `${name} runs in the scheduler; a tool worker cannot run it` };
    default: {
      const unknown: never = name;
      return { ok: false, error: `unknown builtin ${String(unknown)}` };
    }
  }
}

function readOperands(args: unknown): { a: number; b: number } | undefined {
  if (typeof args !== "object" || args === null) return undefined;
  const record = args as Record<string, unknown>;
  const a = toNumber(record.a);
  const b = toNumber(record.b);
  return a === undefined || b === undefined ? undefined : { a, b };
}

/** LLMs often quote numbers, so numeric strings count; Number() alone would also take "", "0x10" and "Infinity". */
function toNumber(value: unknown): number | undefined {
  if (typeof value === "number") return Number.isFinite(value) ? value : undefined;
  if (typeof value === "string" && DECIMAL.test(value.trim())) {
    const parsed = Number(value.trim());
    return Number.isFinite(parsed) ? parsed : undefined;
  }
  return undefined;
}

function result(value: number): ToolOutcome {
  return Number.isFinite(value) ? { ok: true, output: String(value) } : { ok: false, error: "result is out of range" };
}

function show(args: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(args) ?? String(args);
  } catch {
    text = String(args);
  }
  return text.length > MAX_SHOWN_CHARS ? `${text.slice(0, MAX_SHOWN_CHARS)}…` : text;
}
