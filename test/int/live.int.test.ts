import { describe, expect, it } from "vitest";
import { LiveMessage } from "@smallchain/shared";
import { startFakeOpenAI } from "../support/fake-openai.js";
import { eventually } from "../support/processes.js";
import { startStack } from "../support/stack.js";

describe("live streaming on sc.stream.<runId>", () => {
  it("streams the model's tokens as they arrive and each tool call's progress, and records the same answer", async () => {
    const fake = await startFakeOpenAI((req) =>
      req.messages.some((m) => m.role === "tool")
        ? { content: "The sum of 2 and 3 is 5, as the calculator says." }
        : { toolCalls: [{ name: "add", arguments: { a: 2, b: 3 } }] },
    );
    await using stack = await startStack(undefined, { ...process.env, OPENAI_API_KEY: "sk-test" });
    try {
      await stack.apply(`
llms: [ { name: gpt, provider: openai, model: gpt-4o, base_url: "${fake.url}" } ]
agents: [ { name: adder, llm: gpt, tools: [ add ] } ]
tools: [ { name: add, builtin: add } ]
tasks: [ { name: sum, user_message: "add 2 and 3", agent: adder } ]
`);
      const runId = "rlivestream1";
      const live: LiveMessage[] = [];
      const sub = stack.nc.subscribe(stack.names.liveSubject(runId), { callback: (_e, m) => live.push(LiveMessage.parse(m.json())) });
      await stack.client.startRun({ task: "sum", runId });

      const done = await stack.client.waitForRun(runId, { timeoutMs: 15_000 });
      await eventually(() => live.some((l) => l.kind === "tokens" && l.step === 2), 5000, "the second step's tokens");
      sub.unsubscribe();

      expect(done.output).toBe("The sum of 2 and 3 is 5, as the calculator says.");
      const tokens = live.flatMap((l) => (l.kind === "tokens" && l.step === 2 ? [l.text] : []));
      expect(tokens.join("")).toBe(done.output);
      expect(live.filter((l) => l.kind === "tool").map((l) => l.kind === "tool" && [l.callId, l.tool, l.status])).toEqual([
        ["s1c0", "add", "started"],
        ["s1c0", "add", "finished"],
      ]);
      expect(fake.requests.every((r) => r.stream === true)).toBe(true);
    } finally {
      await fake.close();
    }
  });
});
