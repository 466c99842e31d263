import { AckPolicy, DeliverPolicy, jetstreamManager } from "@nats-io/jetstream";
import { describe, expect, it } from "vitest";
import { findCall } from "@smallchain/shared";
import { startStack } from "../support/stack.js";

describe("an event no delivery brings to the scheduler", () => {
  it("is found once its run has been quiet for a while, and the run goes on", async () => {
    await using stack = await startStack();
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

    // The scheduler's consumer loses the answer: it is recreated to deliver only what comes after it.
    const jsm = await jetstreamManager(stack.nc);
    const { config } = await jsm.consumers.info(stack.names.eventsStream, stack.names.consumers.scheduler);
    await jsm.consumers.delete(stack.names.eventsStream, stack.names.consumers.scheduler);
    await stack.client.control.respond(runId, "s1c0", { answer: "yes" });
    await jsm.consumers.add(stack.names.eventsStream, {
      durable_name: config.durable_name!,
      filter_subject: config.filter_subject!,
      ack_policy: AckPolicy.Explicit,
      ack_wait: config.ack_wait,
      max_ack_pending: config.max_ack_pending,
      deliver_policy: DeliverPolicy.New,
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
    const jsm = await jetstreamManager(stack.nc);
    const durable = stack.names.consumers.llmDecisions;
    const { config } = await jsm.consumers.info(stack.names.eventsStream, durable);
    await jsm.consumers.delete(stack.names.eventsStream, durable);
    const { runId } = await stack.client.startRun({ task: "t" });
    await stack.client.waitForRun(runId, { until: (v) => v.turn.phase === "llm" });
    await jsm.consumers.add(stack.names.eventsStream, { ...config, deliver_policy: DeliverPolicy.New });
    const info = await jsm.consumers.info(stack.names.eventsStream, durable);
    expect(info.num_pending + info.num_ack_pending).toBe(0);

    const done = await stack.client.waitForRun(runId, { timeoutMs: 40_000 });
    expect(done).toMatchObject({ status: "Completed", output: "done" });
    const events = await stack.client.events(runId);
    expect(events.filter((e) => e.type === "LLMResponded")).toHaveLength(1);
  }, 60_000);
});
