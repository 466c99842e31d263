import { LlmConfig, costOf } from "@smallchain/shared";
import { describe, expect, it } from "vitest";

const priced = (pricing: Record<string, number>) => LlmConfig.parse({ name: "gpt", provider: "openai", model: "gpt-4o", pricing });

describe("the cost of an LLM call", () => {
  it("charges prompt, cached and completion tokens at their prices per million", () => {
    const llm = priced({ input_per_million_usd: 2.5, output_per_million_usd: 10, cached_input_per_million_usd: 1.25 });

    const cost = costOf(llm, { promptTokens: 1000, completionTokens: 500, cachedTokens: 400 });

    // 600 uncached at 2.5, 400 cached at 1.25, 500 completion at 10
    expect(cost).toBe(0.0015 + 0.0005 + 0.005);
  });

  it("charges cached tokens at the input price when no cached price is given", () => {
    expect(costOf(priced({ input_per_million_usd: 1, output_per_million_usd: 2 }), { promptTokens: 1_000_000, completionTokens: 0, cachedTokens: 10 })).toBe(1);
  });

  it("is unknown for an llm without prices", () => {
    expect(costOf(LlmConfig.parse({ name: "m", provider: "mock", replies: [{ content: "x" }] }), { promptTokens: 5, completionTokens: 5, cachedTokens: 0 })).toBeUndefined();
  });
});
