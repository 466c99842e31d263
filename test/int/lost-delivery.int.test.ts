import { DeliverPolicy, jetstreamManager } from "@nats-io/jetstream";
import { describe, expect, it } from "vitest";
import { findCall } from "@smallchain/shared";
import { startStack, type Stack } from "../support/stack.js";

/**
 * A consumer of the events stream misses what happens in `meanwhile`: it is deleted, then made again as provisioning
 * makes it, delivering only what comes after.
 */
async function missing(stack: Stack, durable: string, meanwhile: () => Promise<void>): Promise<void> {
  const jsm = await jetstreamManager(stack.nc);
  const { config } = await jsm.consumers.info(stack.names.eventsStream, durable);
  await jsm.consumers.delete(stack.names.eventsStream, durable);
  await meanwhile();
  await jsm.consumers.add(stack.names.eventsStream, { ...config, deliver_policy: DeliverPolicy.New });
}

/** Starts a run whose agent asks a person "go on?" (call s1c0) and answers "got <answer>"; resolves once it waits. */
async function askedAndWaiting(stack: Stack): Promise<string> {
  await stack.apply(`
llms:
  - name: mock
    provider: mock
    replies:
      - tool_calls: [ { name: ask, arguments: { question: "go on?" } } ]
      - content: "got {{last_tool_result}}"
agents: [ { name: asker, llm: mock, tools: [ ask ] } ]
tools: [ { name: ask, builtin: human_input } ]
tasks: [ { name: t, user_message: go, agent: asker } ]
`);
  const { runId } = await stack.client.startRun({ task: "t" });
  await stack.client.waitForRun(runId, { until: (v) => findCall(v, "s1c0")?.status === "awaitingHuman" });
  return runId;
}

describe("an event no delivery brings to the scheduler", () => {
  it("is found once its run has been quiet for a while, and the run goes on", async () => {
    await using stack = await startStack();
    const runId = await askedAndWaiting(stack);

    // The scheduler's consumer loses the answer: it is recreated to deliver only what comes after it.
    await missing(stack, stack.names.consumers.scheduler, async () => {
      await stack.client.control.respond(runId, "s1c0", { answer: "yes" });
    });

    const done = await stack.client.waitForRun(runId, { timeoutMs: 40_000 });
    expect(done).toMatchObject({ status: "Completed", output: "got yes" });
  }, 60_000);
});

describe("a decision no delivery brings to its worker", () => {
  it("has its command sent again once the worker's consumer is done with it and the run is quiet, and the run goes on", async () => {
    await using stack = await startStack();
    await stack.apply(`
llms:
  - name: mock
    provider: mock
    replies:
      - content: "done"
agents: [ { name: a, llm: mock } ]
tasks: [ { name: t, user_message: go, agent: a } ]
`);
    // The llm-worker's consumer of decisions is gone while the run's LLM call is decided, then made again as
    // provisioning makes it (delivering what comes after it): the decision carrying the command is never delivered.
    const durable = stack.names.consumers.llmDecisions;
    let runId = "";
    await missing(stack, durable, async () => {
      ({ runId } = await stack.client.startRun({ task: "t" }));
      await stack.client.waitForRun(runId, { until: (v) => v.turn.phase === "llm" });
    });
    const info = await (await jetstreamManager(stack.nc)).consumers.info(stack.names.eventsStream, durable);
    expect(info.num_pending + info.num_ack_pending).toBe(0);

    const done = await stack.client.waitForRun(runId, { timeoutMs: 40_000 });
    expect(done).toMatchObject({ status: "Completed", output: "done" });
    const events = await stack.client.events(runId);
    expect(events.filter((e) => e.type === "LLMResponded")).toHaveLength(1);
  }, 60_000);
});

describe("events no delivery brings to the projector", () => {
  it("are found once the run has been quiet for a while, and its view and approvals list catch up", async () => {
    await using stack = await startStack();
    const runId = await askedAndWaiting(stack);
    expect((await stack.client.listWaits("human")).map((w) => w.runId)).toEqual([runId]);

    // The projector's consumer misses the answer and everything the run does after it, to its end.
    await missing(stack, stack.names.consumers.projector, async () => {
      await stack.client.control.respond(runId, "s1c0", { answer: "yes" });
      const end = Date.now() + 10_000;
      while (!(await stack.client.events(runId)).some((e) => e.type === "RunCompleted")) {
        if (Date.now() > end) throw new Error("the run did not end");
        await new Promise((r) => setTimeout(r, 50));
      }
    });
    expect((await stack.client.getRun(runId))?.status).toBe("Running");

    const done = await stack.client.waitForRun(runId, { timeoutMs: 40_000 });
    expect(done).toMatchObject({ status: "Completed", output: "got yes", lastSeq: (await stack.client.events(runId)).at(-1)!.seq });
    expect(await stack.client.listWaits("human")).toEqual([]);
  }, 60_000);

  it("are folded too where the scheduler that projects missed them (its own sweep finds them and decides)", async () => {
    await using stack = await startStack(["scheduler", "llm-worker", "tool-worker"], process.env, { schedulerProjects: true });
    const runId = await askedAndWaiting(stack);
    // Its consumer misses the answer: the scheduler's own sweep finds it and decides; the views find it too.
    await missing(stack, stack.names.consumers.scheduler, async () => {
      await stack.client.control.respond(runId, "s1c0", { answer: "yes" });
    });
    const done = await stack.client.waitForRun(runId, { timeoutMs: 40_000 });
    expect(done).toMatchObject({ status: "Completed", output: "got yes", lastSeq: (await stack.client.events(runId)).at(-1)!.seq });
  }, 60_000);
});
