import { describe, expect, it } from "vitest";
import { LiveMessage } from "@smallchain/shared";
import { startFakeOpenAI } from "../support/fake-openai.js";
import { eventually } from "../support/processes.js";
import { startStack } from "../support/stack.js";

describe("live streaming on sc.stream.<runId>", () => {
  it("streams the model's tokens as they arrive and the progress of a tool that takes a while, and records the same answer", async () => {
    const fake = await startFakeOpenAI((req) =>
      req.messages.some((m) => m.role === "tool")
        ? { content: "The sum of 2 and 3 is 5, as the calculator says." }
        : { toolCalls: [{ name: "add", arguments: { a: 2, b: 3 } }, { name: "slow_add", arguments: { a: 2, b: 3 } }] },
    );
    await using stack = await startStack(undefined, { ...process.env, OPENAI_API_KEY: "sk-test" });
    try {
      await stack.apply(`
llms: [ { name: gpt, provider: openai, model: gpt-4o, base_url: "${fake.url}" } ]
agents: [ { name: adder, llm: gpt, tools: [ add, slow_add ] } ]
tools:
  - { name: add, builtin: add }
  - name: slow_add
    parameters: { type: object }
    executor: { command: { runtime: bash, script: "sleep 0.4; echo 5" } }
tasks: [ { name: sum, user_message: "add 2 and 3", agent: adder } ]
`);
      const runId = "rlivestream1";
      const live: LiveMessage[] = [];
      const sub = stack.nc.subscribe(stack.names.liveSubject(runId), { callback: (_e, m) => void live.push(LiveMessage.parse(m.json())) });
      await stack.client.startRun({ task: "sum", runId });

      const done = await stack.client.waitForRun(runId, { timeoutMs: 15_000 });
      await eventually(() => live.some((l) => l.kind === "tokens" && l.step === 2), 5000, "the second step's tokens");
      sub.unsubscribe();

      expect(done.output).toBe("The sum of 2 and 3 is 5, as the calculator says.");
      const tokens = live.flatMap((l) => (l.kind === "tokens" && l.step === 2 ? [l.text] : []));
      expect(tokens.join("")).toBe(done.output);
      // The instant add goes unannounced; the slow tool shows when it starts and when it is done.
      expect(live.filter((l) => l.kind === "tool").map((l) => l.kind === "tool" && [l.callId, l.tool, l.status])).toEqual([
        ["s1c1", "slow_add", "started"],
        ["s1c1", "slow_add", "finished"],
      ]);
      expect(fake.requests.every((r) => r.stream === true)).toBe(true);
    } finally {
      await fake.close();
    }
  });
});
