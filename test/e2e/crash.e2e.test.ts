import { mkdtempSync, readFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { adderConfig } from "../support/configs.js";
import { startFakeOpenAI, type FakeOpenAI } from "../support/fake-openai.js";
import { eventually, spawnAll as spawnTracked, type ServiceProcess } from "../support/processes.js";
import { startStack, type ServiceName, type Stack } from "../support/stack.js";

const ACK_WAIT_MS = "1500";

describe("crash safety with real worker processes", () => {
  let stack: Stack | undefined;
  let fake: FakeOpenAI | undefined;
  const procs: ServiceProcess[] = [];

  const spawnAll = (names: ServiceName[], env: NodeJS.ProcessEnv) => spawnTracked(procs, names, env);

  afterEach(async () => {
    await Promise.all(procs.splice(0).map((p) => p.kill("SIGKILL")));
    await stack?.[Symbol.asyncDispose]();
    await fake?.close();
    stack = undefined;
    fake = undefined;
  });

  it("redelivers a tool call to a new tool-worker after the first is killed -9 mid-call; the result is recorded once", async () => {
    stack = await startStack([]);
    const dir = mkdtempSync(join(tmpdir(), "sc-crash-"));
    const starts = join(dir, "starts");
    const env = { SC_PREFIX: stack.prefix, SC_TOOL_ACK_WAIT_MS: ACK_WAIT_MS };
    await spawnAll(["scheduler", "projector", "llm-worker"], env);
    const [first] = await spawnAll(["tool-worker"], env);

    const applied = await stack.apply(`
llms:
  - name: mock
    provider: mock
    replies:
      - tool_calls: [ { name: slow, arguments: { n: 1 } } ]
      - content: "tool said {{last_tool_result}}"
agents:
  - { name: waiter, llm: mock, tools: [ slow ] }
tools:
  - name: slow
    parameters: { type: object, properties: { n: { type: number } } }
    executor:
      command:
        runtime: bash
        script: 'echo "$SMALLCHAIN_CALL_ID" >> ${starts}; sleep 2; echo slow-done'
tasks:
  - { name: wait, user_message: go, agent: waiter }
runs:
  - { name: crash-me, task: wait }
`);
    const runId = applied.runs[0]!.runId;
    await eventually(() => existsSync(starts), 15_000, "the tool to start");
    await first!.kill("SIGKILL");
    await spawnAll(["tool-worker"], env);

    const done = await stack.client.waitForRun(runId, { timeoutMs: 30_000 });
    expect(done.status).toBe("Completed");
    expect(done.output).toBe("tool said slow-done");
    // The call ran twice (the first worker died holding it) but is recorded once.
    expect(readFileSync(starts, "utf8").trim().split("\n")).toEqual(["s1c0", "s1c0"]);
    const events = await stack.client.events(runId);
    expect(events.filter((e) => e.type === "ToolCallCompleted")).toHaveLength(1);
    expect(new Set(events.map((e) => e.id)).size).toBe(events.length);
  });

  it("redelivers an LLM call to a new llm-worker after the first is killed -9 mid-request", async () => {
    let calls = 0;
    fake = await startFakeOpenAI(() => {
      calls++;
      // The first request hangs long enough for the worker holding it to be killed.
      return calls === 1 ? { content: "too late", delayMs: 10_000 } : { content: "answered by the second worker" };
    });
    stack = await startStack([]);
    const env = { SC_PREFIX: stack.prefix, SC_LLM_ACK_WAIT_MS: ACK_WAIT_MS, OPENAI_API_KEY: "test" };
    await spawnAll(["scheduler", "projector", "tool-worker"], env);
    const [first] = await spawnAll(["llm-worker"], env);

    const applied = await stack.apply(`
llms:
  - { name: fake, provider: openai, model: m, base_url: "${fake.url}" }
agents:
  - { name: talker, llm: fake }
tasks:
  - { name: talk, user_message: hello, agent: talker }
runs:
  - { name: crash-llm, task: talk }
`);
    const runId = applied.runs[0]!.runId;
    await eventually(() => fake!.requests.length >= 1, 15_000, "the first LLM request");
    await first!.kill("SIGKILL");
    await spawnAll(["llm-worker"], env);

    const done = await stack.client.waitForRun(runId, { timeoutMs: 30_000 });
    expect(done.status).toBe("Completed");
    expect(done.output).toBe("answered by the second worker");
    expect(fake.requests).toHaveLength(2);
    const events = await stack.client.events(runId);
    expect(events.filter((e) => e.type === "LLMResponded")).toHaveLength(1);
    expect(new Set(events.map((e) => e.id)).size).toBe(events.length);
  });

  it("stores a run's view after a scheduler that projects was killed -9 holding it unstored: its events were not acked", async () => {
    stack = await startStack([]);
    // Views stored at most every 3 s: the run waits for an approval well before its view would be stored, and
    // nothing more happens in it until someone approves.
    const env = { SC_PREFIX: stack.prefix, SC_SCHEDULER_PROJECTS: "1", SC_VIEW_DELAY_MS: "3000" };
    await spawnAll(["llm-worker", "tool-worker"], env);
    const [first] = await spawnAll(["scheduler"], env);
    const applied = await stack.apply(
      adderConfig(['{ tool_calls: [ { name: add, arguments: { a: 20, b: 22 } } ] }', '{ content: "{{last_tool_result}}" }'], 1, "held", { approval: true }),
    );
    const runId = applied.runs[0]!.runId;
    await eventually(async () => (await stack!.client.events(runId)).some((e) => e.type === "ToolCallAwaitingApproval"), 10_000, "the run to wait");
    await first!.kill("SIGKILL");
    // Nothing of it was stored: the scheduler died holding the view and the acks of every event it folded.
    expect(await stack.client.getRun(runId)).toBeUndefined();
    await spawnAll(["scheduler"], { ...env, SC_VIEW_DELAY_MS: "50" });
    const view = await stack.client.waitForRun(runId, { timeoutMs: 20_000, until: (s) => s.lastSeq > 0 });
    expect(view.turn.phase === "tools" && view.turn.calls.map((c) => c.status)).toEqual(["awaitingApproval"]);
    expect(view.lastSeq).toBe((await stack.client.events(runId)).at(-1)!.seq);
  });
});
