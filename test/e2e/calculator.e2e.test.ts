import { writeFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunState } from "@smallchain/shared";
import { startFakeOpenAI, turnOf, type ChatRequest, type FakeOpenAI, type FakeReply } from "../support/fake-openai.js";
import { cli, spawnService, started, type ServiceProcess } from "../support/processes.js";
import { ALL_SERVICES, startStack, type Stack } from "../support/stack.js";

const USAGE = { prompt_tokens: 100, completion_tokens: 20 };

/** The model's side of the design's calculator example, scripted; later replies read the tool results they got. */
function calculatorModel(req: ChatRequest): FakeReply {
  const system = String(req.messages[0]?.content ?? "");
  const assistantTurns = turnOf(req);
  const lastTool = [...req.messages].reverse().find((m) => m.role === "tool");
  if (system.includes("help the human")) {
    if (assistantTurns === 0) {
      return { toolCalls: [{ name: "calculator_operator", arguments: { message: "add 3 and 4, add 5 and 3, then add the two results" } }], usage: USAGE };
    }
    return { content: `The result is ${lastTool?.content}.`, usage: USAGE };
  }
  if (system.includes("calculator operator")) {
    if (assistantTurns === 0) {
      return { toolCalls: [{ name: "add", arguments: { a: 3, b: 4 } }, { name: "add", arguments: { a: 5, b: 3 } }], usage: USAGE };
    }
    if (assistantTurns === 1) {
      const [x, y] = req.messages.filter((m) => m.role === "tool").map((m) => Number(m.content));
      return { toolCalls: [{ name: "add", arguments: { a: x, b: y } }], usage: USAGE };
    }
    return { content: String(lastTool?.content), usage: USAGE };
  }
  throw new Error(`unexpected system prompt: ${system}`);
}

export function calculatorYaml(baseUrl: string): string {
  return `
llms:
  - name: gpt-4o
    provider: openai
    model: gpt-4o
    base_url: ${baseUrl}
    parameters: { temperature: 0 }
agents:
  - name: assistant
    system_prompt: you help the human with their tasks
    llm: gpt-4o
    tools: [ { agent: calculator_operator } ]
  - name: calculator_operator
    system_prompt: you are a careful calculator operator
    llm: gpt-4o
    tools: [ add ]
tools:
  - name: add
    builtin: add
tasks:
  - name: do_some_math
    user_message: add (3 + 4) and (5 + 3) and add the results
    agent: assistant
runs:
  - name: my first run
    task: do_some_math
`;
}

function isSubsequence(needle: string[], haystack: string[]): boolean {
  let i = 0;
  for (const h of haystack) if (h === needle[i]) i++;
  return i === needle.length;
}

describe("the calculator example, end to end with real processes and the openai SDK", () => {
  let fake: FakeOpenAI;
  let stack: Stack;
  let services: ServiceProcess[];
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    fake = await startFakeOpenAI(calculatorModel);
    stack = await startStack([]);
    env = { SC_PREFIX: stack.prefix, OPENAI_API_KEY: "sk-test-not-a-secret" };
    services = ALL_SERVICES.map((name) => spawnService(name, env));
    await Promise.all(services.map((s) => started(s)));
  });

  afterAll(async () => {
    await Promise.all(services.map((s) => s.kill()));
    await stack[Symbol.asyncDispose]();
    await fake.close();
  });

  it("completes with the answer 15; get runs shows both runs; the parent's events are in order", async () => {
    const file = join(mkdtempSync(join(tmpdir(), "sc-")), "smallchain.yaml");
    writeFileSync(file, calculatorYaml(fake.url));
    const applied = await cli(["--prefix", stack.prefix, "apply", "-f", file]);
    expect(applied.stderr).toBe("");
    expect(applied.code).toBe(0);
    expect(applied.stdout).toContain("agent/assistant configured");
    const runId = /run\/my first run started \((r[0-9a-z]+)\)/.exec(applied.stdout)?.[1];
    expect(runId).toBeDefined();

    const done = await stack.client.waitForRun(runId!, { timeoutMs: 30_000 });
    expect(done.status).toBe("Completed");
    expect(done.output).toBe("The result is 15.");
    // Two LLM calls of the parent, each with the scripted usage.
    expect(done.usage.totalTokens).toBe(2 * (USAGE.prompt_tokens + USAGE.completion_tokens));

    const table = await cli(["--prefix", stack.prefix, "get", "runs"]);
    expect(table.code).toBe(0);
    expect(table.stdout.split("\n")[0]).toMatch(/^NAME\s+STATUS\s+AGENT\s+TASK\s+ID\s+DEPTH$/);
    const json = await cli(["--prefix", stack.prefix, "get", "runs", "-o", "json"]);
    const runs = JSON.parse(json.stdout) as RunState[];
    expect(runs.map((r) => [r.agentName, r.depth, r.status]).sort()).toEqual([
      ["assistant", 0, "Completed"],
      ["calculator_operator", 1, "Completed"],
    ]);

    const types = (await stack.client.events(runId!)).map((e) => e.type);
    expect(types[0]).toBe("RunRequested");
    expect(types.at(-1)).toBe("RunCompleted");
    expect(isSubsequence(["RunRequested", "LLMResponded", "ToolCallRequested", "ChildRunRequested", "ToolCallCompleted", "RunCompleted"], types)).toBe(true);

    // The model saw the child's answer as the tool result, in the OpenAI format, with the tool definitions.
    const last = fake.requests.at(-1)!;
    expect(last.messages.at(-1)).toMatchObject({ role: "tool", content: "15" });
    expect(fake.requests[0]!.tools?.[0]).toMatchObject({ type: "function", function: { name: "calculator_operator" } });
    expect(fake.headers.every((h) => h.authorization === "Bearer sk-test-not-a-secret")).toBe(true);

    const events = await cli(["--prefix", stack.prefix, "get", "events", "--run", runId!]);
    expect(events.stdout).toMatch(/RunCompleted\s+"The result is 15\."/);
    const described = await cli(["--prefix", stack.prefix, "describe", "run", runId!]);
    expect(described.stdout).toContain("Status:       Completed");
    expect(described.stdout).toMatch(/tool\s+\[call_\d+_0\] 15/);
    // The API key never lands in events or views.
    expect(JSON.stringify(await stack.client.events(runId!))).not.toContain("sk-test");
  });
});
