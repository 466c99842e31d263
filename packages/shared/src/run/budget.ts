import { z } from "zod";
import type { LlmConfig } from "../config/schema.js";
import type { Usage } from "../events.js";

/**
 * Hard limits of one run. An agent's limits (config) and a run's own (RunRequested) both apply: the stricter
 * wins. `onExceeded` says whether reaching one fails the run or pauses it until someone resumes it.
 */
export const Limits = z
  .object({
    maxSteps: z.number().int().positive().optional(),
    maxTokens: z.number().int().positive().optional(),
    maxCostUsd: z.number().positive().optional(),
    maxDurationMs: z.number().int().positive().optional(),
    onExceeded: z.enum(["fail", "pause"]).optional(),
  })
  .strict();
export type Limits = z.infer<typeof Limits>;

/** The names a limit goes by in events, messages and `smallchain resume`. */
export const LimitName = z.enum(["max_steps", "max_tokens", "max_cost_usd", "max_duration", "per_hour_usd", "per_day_usd"]);
export type LimitName = z.infer<typeof LimitName>;

/** Windowed spend of all of an agent's runs: per clock hour and per day (windows of `hourMs`, 24 of them a day). */
export const Budget = z.object({ perHourUsd: z.number().positive().optional(), perDayUsd: z.number().positive().optional() }).strict();
export type Budget = z.infer<typeof Budget>;

/** What a resume adds to the run's limits; without any, it lifts the limit that paused the run. */
export const LimitRaise = z
  .object({
    steps: z.number().int().nonnegative().optional(),
    tokens: z.number().int().nonnegative().optional(),
    costUsd: z.number().nonnegative().optional(),
    durationMs: z.number().int().nonnegative().optional(),
  })
  .strict();
export type LimitRaise = z.infer<typeof LimitRaise>;

/** Tokens and US dollars spent. */
export type Spend = { tokens: number; costUsd: number };
export const Spend = z.object({ tokens: z.number().nonnegative(), costUsd: z.number().nonnegative() });

export const NO_SPEND: Spend = { tokens: 0, costUsd: 0 };

/** Dollars are kept to the nano-dollar, so sums of many calls add up exactly whatever order they come in. */
export function roundUsd(usd: number): number {
  return Math.round(usd * 1e9) / 1e9;
}

export function addSpend(a: Spend, b: Spend): Spend {
  return { tokens: a.tokens + b.tokens, costUsd: roundUsd(a.costUsd + b.costUsd) };
}

/** The cost of one LLM call at the llm's prices; undefined when it has none (unknown, counted as 0). */
export function costOf(llm: Pick<LlmConfig, "pricing">, usage: Usage): number | undefined {
  const p = llm.pricing;
  if (!p) return undefined;
  const cached = Math.min(usage.cachedTokens, usage.promptTokens);
  const micros =
    (usage.promptTokens - cached) * p.input_per_million_usd +
    cached * (p.cached_input_per_million_usd ?? p.input_per_million_usd) +
    usage.completionTokens * p.output_per_million_usd;
  return roundUsd(micros / 1_000_000);
}

export const HOUR_MS = 3_600_000;

/**
 * The length of a budget "hour": an hour, times `SC_BUDGET_WINDOW_SCALE` when set (tests shrink it to seconds).
 * The scheduler and the projector must agree on it.
 */
export function budgetHourMs(env: NodeJS.ProcessEnv = process.env): number {
  const scale = Number(env.SC_BUDGET_WINDOW_SCALE ?? "1");
  return Number.isFinite(scale) && scale > 0 ? Math.max(1, Math.round(HOUR_MS * scale)) : HOUR_MS;
}

/** The window `at` falls in: `hour` windows of `hourMs`, `day` windows of 24 of them (UTC-aligned). */
export function windowOf(kind: "hour" | "day", at: number, hourMs: number): { start: number; end: number } {
  const len = kind === "hour" ? hourMs : 24 * hourMs;
  const start = Math.floor(at / len) * len;
  return { start, end: start + len };
}
