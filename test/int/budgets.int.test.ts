import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { displayStatus, totalSpend, type RecordedEvent, type RunState } from "@smallchain/shared";
import { startGateway, type Gateway } from "@smallchain/gateway";
import { startFakeOpenAI, scriptByAgent, turnOf, type ChatRequest, type FakeOpenAI, type FakeReply } from "../support/fake-openai.js";
import { cli, eventually } from "../support/processes.js";
import { startStack, type Stack } from "../support/stack.js";

// A budget "hour" lasts 1.8 s here (the scheduler and projector of this file read it when they start).
process.env.SC_BUDGET_WINDOW_SCALE = "0.0005";
const HOUR_MS = 1800;

const TOKEN = "budgets-token";
// At 2 $/M input and 10 $/M output, every call costs 0.002 + 0.005 = 0.007 dollars.
const USAGE = { prompt_tokens: 1000, completion_tokens: 500 };
const CALL_USD = 0.007;
const add = (n: number): FakeReply[] => Array.from({ length: n }, () => ({ toolCalls: [{ name: "add", arguments: { a: 1, b: 2 } }], usage: USAGE }));

function config(baseUrl: string): string {
  return `
llms:
  - name: gpt
    provider: openai
    model: gpt-4o
    base_url: ${baseUrl}
    pricing: { input_per_million_usd: 2, output_per_million_usd: 10 }
agents:
  - { name: boss, system_prompt: "agent boss", llm: gpt, tools: [ { agent: helper } ] }
  - { name: helper, system_prompt: "agent helper", llm: gpt }
  - { name: spender, system_prompt: "agent spender", llm: gpt, tools: [ add ] }
  - { name: frugal, system_prompt: "agent frugal", llm: gpt, tools: [ add ], budget: { per_hour_usd: 0.007 } }
  - { name: watcher, system_prompt: "agent watcher", llm: gpt, tools: [ check_current_spend_since, sleep_until ], max_cost_usd: 1 }
  - { name: manager, system_prompt: "agent manager", llm: gpt, tools: [ spawn_task, list_tasks, wait_for, cancel_task ] }
  - { name: quick, system_prompt: "agent quick", llm: gpt }
  - { name: slow, system_prompt: "agent slow", llm: gpt, tools: [ sleep_until ] }
  - { name: sleepy_boss, system_prompt: "agent sleepy_boss", llm: gpt, tools: [ spawn_task, sleep_until ] }
tools:
  - { name: add, builtin: add }
  - { name: sleep_until, builtin: sleep_until }
  - { name: check_current_spend_since, builtin: check_current_spend_since }
  - { name: spawn_task, builtin: spawn_task }
  - { name: list_tasks, builtin: list_tasks }
  - { name: wait_for, builtin: wait_for }
  - { name: cancel_task, builtin: cancel_task }
tasks:
  - { name: delegate, user_message: "ask the helper", agent: boss }
  - { name: spend, user_message: "add forever", agent: spender }
  - { name: thrift, user_message: "add a few times", agent: frugal }
  - { name: watch, user_message: "watch your spend", agent: watcher }
  - { name: manage, user_message: "manage", agent: manager }
  - { name: tree, user_message: "start a tree", agent: sleepy_boss }
`;
}

const FAR = "2099-01-01T00:00:00Z";
const toolMessages = (req: ChatRequest): string[] => req.messages.filter((m) => m.role === "tool").map((m) => String(m.content));

describe("spend, limits, budgets and self-managing agents", () => {
  let stack: Stack;
  let fake: FakeOpenAI;
  let gateway: Gateway;
  const env = () => ({ NATS_URL: process.env.NATS_URL ?? "", SC_PREFIX: stack.prefix });

  beforeAll(async () => {
    const byAgent = scriptByAgent({
      "agent boss": [{ toolCalls: [{ name: "helper", arguments: { message: "what is 6*7?" } }], usage: USAGE }, { content: "helper says 42", usage: USAGE }],
      "agent helper": [{ content: "42", usage: USAGE }],
      "agent spender": add(20),
      "agent frugal": [...add(3), { content: "frugal done", usage: USAGE }],
      "agent quick": [{ content: "quick done", usage: USAGE }],
      "agent slow": [{ toolCalls: [{ name: "sleep_until", arguments: { time: FAR } }], usage: USAGE }, { content: "slow done", usage: USAGE }],
    });
    fake = await startFakeOpenAI((req, i) => {
      const system = String(req.messages[0]?.content);
      const turn = turnOf(req);
      const results = toolMessages(req);
      if (system.includes("agent watcher")) {
        if (turn === 0) return { toolCalls: [{ name: "check_current_spend_since", arguments: { time: new Date(Date.now() - 3_600_000).toISOString() } }], usage: USAGE };
        if (turn === 1) return { toolCalls: [{ name: "sleep_until", arguments: { time: new Date(Date.now() + 500).toISOString() } }], usage: USAGE };
        return { content: "watched", usage: USAGE };
      }
      if (system.includes("agent manager")) {
        const ids = results.slice(0, 2).map((r) => (JSON.parse(r) as { run_id: string }).run_id);
        if (turn === 0)
          return {
            toolCalls: [
              { name: "spawn_task", arguments: { agent: "quick", message: "be quick" } },
              { name: "spawn_task", arguments: { agent: "slow", message: "be slow" } },
            ],
            usage: USAGE,
          };
        if (turn === 1) return { toolCalls: [{ name: "list_tasks", arguments: {} }], usage: USAGE };
        if (turn === 2) return { toolCalls: [{ name: "wait_for", arguments: { run_ids: [ids[0]] } }], usage: USAGE };
        if (turn === 3) return { toolCalls: [{ name: "cancel_task", arguments: { run_id: ids[1] } }], usage: USAGE };
        return { content: "managed", usage: USAGE };
      }
      if (system.includes("agent sleepy_boss")) {
        if (turn === 0) return { toolCalls: [{ name: "spawn_task", arguments: { agent: "slow", message: "sleep" } }], usage: USAGE };
        return { toolCalls: [{ name: "sleep_until", arguments: { time: FAR } }], usage: USAGE };
      }
      return byAgent(req, i);
    });
    stack = await startStack(["scheduler", "projector", "tool-worker"], { ...process.env, OPENAI_API_KEY: "sk-test" });
    await stack.start("llm-worker");
    await stack.apply(config(fake.url));
    gateway = await startGateway({ nc: stack.nc, names: stack.names, log: pino({ level: "silent" }), token: TOKEN, port: 0, host: "127.0.0.1" });
  });
  afterAll(async () => {
    await gateway?.stop();
    await stack?.[Symbol.asyncDispose]();
    await fake?.close();
  });

  const status = (runId: string, wanted: string, timeoutMs = 20_000): Promise<RunState> =>
    stack.client.waitForRun(runId, { timeoutMs, until: (s) => displayStatus(s) === wanted });
  const ofType = <T extends RecordedEvent["type"]>(events: RecordedEvent[], type: T) => events.filter((e) => e.type === type) as Extract<RecordedEvent, { type: T }>[];
  const usd = (n: number) => Math.round(n * 1e9) / 1e9;

  it("records each call's cost and adds it up exactly per run, per agent and task, and into the parent", async () => {
    const since = Date.now() - 1;
    const { runId } = await stack.client.startRun({ task: "delegate" });
    const done = await status(runId, "Completed");

    const events = await stack.client.events(runId);
    expect(ofType(events, "LLMResponded").map((e) => e.data.costUsd)).toEqual([CALL_USD, CALL_USD]);
    expect(done.costUsd).toBe(usd(2 * CALL_USD));
    expect(done.descendants).toEqual({ tokens: 1500, costUsd: CALL_USD });
    expect(totalSpend(done)).toEqual({ tokens: 4500, costUsd: usd(3 * CALL_USD) });

    await eventually(async () => (await stack.client.spend("task", "delegate", since)).costUsd === usd(3 * CALL_USD), 10_000, "the task's spend");
    expect(await stack.client.spend("agent", "boss", since)).toEqual({ tokens: 3000, costUsd: usd(2 * CALL_USD) });
    expect(await stack.client.spend("agent", "helper", since)).toEqual({ tokens: 1500, costUsd: CALL_USD });
    expect(await stack.client.spend("run", runId, since)).toEqual({ tokens: 3000, costUsd: usd(2 * CALL_USD) });

    const wide = await cli(["get", "runs", "-o", "wide"], env());
    expect(wide.stdout).toMatch(new RegExp(`${runId}\\s+0\\s+2\\s+4500\\s+\\$0\\.021`));
    const described = await cli(["describe", "run", runId], env());
    expect(described.stdout).toContain("Cost:         $0.021 (own $0.014, children $0.007)");
  });

  it("fails a run at max_tokens before the LLM call that would exceed it", async () => {
    const { runId } = await stack.client.startRun({ task: "spend", limits: { maxTokens: 3000 } });
    const failed = await status(runId, "Failed");

    expect(failed.error).toBe("max_tokens (3000) reached: used 3000");
    const events = await stack.client.events(runId);
    expect(ofType(events, "LLMRequested")).toHaveLength(2);
    expect(ofType(events, "BudgetExceeded")[0]?.data).toEqual({ limit: "max_tokens", value: 3000, used: 3000, action: "fail" });
  });

  it("pauses at --max-cost with --on-exceeded pause, resumes with more money (HTTP, CLI), and cancels", async () => {
    const started = await cli(["run", "spend", "--max-cost", "0.014", "--on-exceeded", "pause"], env());
    expect(started.code).toBe(0);
    const runId = started.stdout.trim();
    const paused = await status(runId, "Paused");
    expect(paused.step).toBe(2);
    expect(paused.pause).toEqual({ limit: "max_cost_usd", value: 0.014, used: 0.014 });
    expect((await cli(["get", "runs"], env())).stdout).toMatch(new RegExp(`Paused\\s+spender\\s+spend\\s+${runId}`));

    const res = await fetch(`${gateway.url}/runs/${runId}/resume`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${TOKEN}` },
      body: JSON.stringify({ by: "ann", raise: { costUsd: CALL_USD } }),
    });
    expect(res.status).toBe(200);
    const again = await stack.client.waitForRun(runId, { until: (s) => s.status === "Paused" && s.step === 3 });
    expect(again.pause).toMatchObject({ value: usd(3 * CALL_USD) });

    expect(await cli(["resume", runId, "--add-cost", "0.007"], env())).toMatchObject({ code: 0, stdout: `resumed run ${runId}\n` });
    await stack.client.waitForRun(runId, { until: (s) => s.status === "Paused" && s.step === 4 });
    const refused = await cli(["resume", "rnosuchrun"], env());
    expect(refused.code).toBe(4);

    expect(await cli(["cancel", runId, "--reason", "enough"], env())).toMatchObject({ code: 0 });
    const cancelled = await status(runId, "Cancelled");
    expect(cancelled.error).toMatch(/cancelled by .*: enough/);
  });

  it("pauses an agent's runs when its hourly budget is spent and resumes them when the hour rolls over", async () => {
    const { runId } = await stack.client.startRun({ task: "thrift" });
    const done = await status(runId, "Completed", 30_000);

    const events = await stack.client.events(runId);
    const exceeded = ofType(events, "BudgetExceeded");
    expect(exceeded.length).toBeGreaterThan(0);
    for (const e of exceeded) {
      expect(e.data).toMatchObject({ limit: "per_hour_usd", value: 0.007, action: "pause" });
      expect(e.data.until! % HOUR_MS).toBe(0);
    }
    const resumed = ofType(events, "RunResumed");
    expect(resumed.length).toBe(exceeded.length);
    expect(resumed.every((e) => e.data.auto === true && e.at >= exceeded[0]!.data.until!)).toBe(true);
    // No LLM call was requested while the run was paused.
    for (const e of exceeded) {
      const resume = resumed.find((r) => r.seq > e.seq)!;
      expect(events.filter((x) => x.seq > e.seq && x.seq < resume.seq && x.type === "LLMRequested")).toEqual([]);
    }
    expect(done.output).toBe("frugal done");
  });

  it("lets an agent check its spend and sleep until a time", async () => {
    const { runId } = await stack.client.startRun({ task: "watch" });
    const done = await status(runId, "Completed");
    expect(done.output).toBe("watched");

    const req = fake.requests.find((r) => String(r.messages[0]?.content).includes("agent watcher") && turnOf(r) === 1)!;
    const report = JSON.parse(toolMessages(req)[0]!) as Record<string, any>;
    expect(report.run).toEqual({ cost_usd: CALL_USD, tokens: 1500 });
    expect(report.agent.name).toBe("watcher");
    expect(report.limits).toMatchObject({ max_cost_usd: 1, cost_usd_remaining: usd(1 - CALL_USD) });
    const events = await stack.client.events(runId);
    expect(ofType(events, "TimerFired")[0]?.data.outcome).toBe("completed");
  });

  it("spawns, lists, waits for and cancels child runs through the model's tool calls", async () => {
    const { runId } = await stack.client.startRun({ task: "manage" });
    const done = await status(runId, "Completed");
    expect(done.output).toBe("managed");
    const [quick, slow] = done.children!;
    expect(quick).toMatchObject({ agent: "quick", status: "Completed", output: "quick done" });
    expect(slow).toMatchObject({ agent: "slow", status: "Cancelled" });
    expect((await stack.client.getRun(slow!.runId))?.status).toBe("Cancelled");

    const last = fake.requests.filter((r) => String(r.messages[0]?.content).includes("agent manager")).at(-1)!;
    const [spawnA, , listed, waited, cancelled] = toolMessages(last);
    expect(JSON.parse(spawnA!)).toEqual({ run_id: quick!.runId, agent: "quick", status: "Running" });
    expect(JSON.parse(listed!).map((c: { run_id: string }) => c.run_id)).toEqual([quick!.runId, slow!.runId]);
    expect(JSON.parse(waited!)).toEqual([{ run_id: quick!.runId, agent: "quick", status: "Completed", output: "quick done" }]);
    expect(cancelled).toContain(`cancelling run ${slow!.runId}`);
    await eventually(async () => totalSpend((await stack.client.getRun(runId))!).costUsd === usd(7 * CALL_USD), 10_000, "children's spend rolled up");
  });

  it("cancels a run and everything it started with smallchain cancel", async () => {
    const { runId } = await stack.client.startRun({ task: "tree" });
    const sleeping = await status(runId, "Sleeping");
    const child = sleeping.children![0]!.runId;
    await status(child, "Sleeping");

    expect(await cli(["cancel", runId], env())).toMatchObject({ code: 0, stdout: `cancelled run ${runId}\n` });

    expect((await status(runId, "Cancelled")).status).toBe("Cancelled");
    expect((await status(child, "Cancelled")).error).toBe(`its parent run ${runId} was cancelled`);
    const parent = await stack.client.waitForRun(runId, { until: (s) => s.children?.[0]?.status === "Cancelled" });
    expect(parent.descendants.costUsd).toBe(CALL_USD);
  });
});
