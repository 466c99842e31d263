import { afterEach, describe, expect, it } from "vitest";
import { eventually, spawnAll as spawnTracked, type ServiceName, type ServiceProcess } from "../support/processes.js";
import { startStack, type Stack } from "../support/stack.js";

const TOKEN = "e2e-gateway-token";
const ALL: ServiceName[] = ["scheduler", "projector", "llm-worker", "tool-worker", "gateway"];

describe("waiting runs across restarts (services as processes)", () => {
  let stack: Stack | undefined;
  const procs: ServiceProcess[] = [];

  const spawnAll = (names: ServiceName[], env: NodeJS.ProcessEnv) => spawnTracked(procs, names, env);
  const killAll = async () => Promise.all(procs.splice(0).map((p) => p.kill("SIGKILL")));

  afterEach(async () => {
    await killAll();
    await stack?.[Symbol.asyncDispose]();
    stack = undefined;
  });

  it("completes a run exactly once when every service is killed -9 while it waits for approval and it is approved afterwards", async () => {
    stack = await startStack([]);
    const env = { SC_PREFIX: stack.prefix, SC_GATEWAY_TOKEN: TOKEN, SC_GATEWAY_PORT: "0", SC_GATEWAY_HOST: "127.0.0.1" };
    await spawnAll(ALL, env);
    const applied = await stack.apply(`
llms:
  - name: mock
    provider: mock
    replies:
      - tool_calls: [ { name: careful_add, arguments: { a: 20, b: 22 } } ]
      - content: "the sum is {{last_tool_result}}"
agents:
  - { name: careful, llm: mock, tools: [ careful_add ] }
tools:
  - { name: careful_add, builtin: add, approval: required }
tasks:
  - { name: t, user_message: go, agent: careful }
runs:
  - { name: approve-after-restart, task: t }
`);
    const runId = applied.runs[0]!.runId;
    await eventually(async () => (await stack!.client.listWaits("approval")).some((w) => w.runId === runId), 15_000, "the approval wait");

    await killAll();
    const [, , , , gateway] = await spawnAll(ALL, env);
    const url = /"url":"(http:\/\/[^"]+)"/.exec(gateway!.output())?.[1];
    expect(url).toBeDefined();

    const res = await fetch(`${url}/runs/${runId}/calls/s1c0/approval`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ approved: true, by: "ops" }),
    });
    expect(res.status).toBe(200);

    const done = await stack.client.waitForRun(runId, { timeoutMs: 20_000 });
    expect(done).toMatchObject({ status: "Completed", output: "the sum is 42" });
    const events = await stack.client.events(runId);
    const count = (type: string) => events.filter((e) => e.type === type).length;
    expect([count("ToolCallApproved"), count("ToolCallCompleted"), count("LLMRequested"), count("RunCompleted")]).toEqual([1, 1, 2, 1]);
    expect(new Set(events.map((e) => e.id)).size).toBe(events.length);
  });

  it("fires a sleep whose time passed while the scheduler was down as soon as a scheduler starts again", async () => {
    stack = await startStack([]);
    const env = { SC_PREFIX: stack.prefix };
    const [scheduler] = await spawnAll(["scheduler", "projector", "llm-worker", "tool-worker"], env);
    const due = new Date(Date.now() + 3000).toISOString();
    const applied = await stack.apply(`
llms:
  - name: mock
    provider: mock
    replies:
      - tool_calls: [ { name: sleep_until, arguments: { time: "${due}" } } ]
      - content: "{{last_tool_result}}"
agents:
  - { name: sleeper, llm: mock, tools: [ sleep_until ] }
tools:
  - { name: sleep_until, builtin: sleep_until }
tasks:
  - { name: t, user_message: go, agent: sleeper }
runs:
  - { name: sleep-across-restart, task: t }
`);
    const runId = applied.runs[0]!.runId;
    await eventually(async () => (await stack!.client.events(runId)).some((e) => e.type === "TimerScheduled"), 15_000, "the timer");
    await scheduler!.kill("SIGKILL");
    procs.splice(procs.indexOf(scheduler!), 1);
    await new Promise((r) => setTimeout(r, Date.parse(due) - Date.now() + 1000));
    expect((await stack.client.events(runId)).some((e) => e.type === "TimerFired")).toBe(false);

    const restartedAt = Date.now();
    await spawnAll(["scheduler"], env);
    const done = await stack.client.waitForRun(runId, { timeoutMs: 15_000 });
    expect(done.status).toBe("Completed");
    expect(done.output).toContain(`slept until ${due}`);
    const fired = (await stack.client.events(runId)).find((e) => e.type === "TimerFired")!;
    expect(fired.at).toBeGreaterThanOrEqual(restartedAt);
    expect(fired.at - restartedAt).toBeLessThan(5000);
  });
});
