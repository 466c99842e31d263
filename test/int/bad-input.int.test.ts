import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { headers } from "@nats-io/transport-node";
import { Header, encode } from "@smallchain/shared";
import { describe, expect, it } from "vitest";
import { eventually } from "../support/processes.js";
import { startStack, type Stack } from "../support/stack.js";

const ECHO = `
llms:
  - name: mock
    provider: mock
    replies: [ { content: "done" } ]
agents:
  - { name: echo, llm: mock }
tasks:
  - { name: greet, user_message: hello, agent: echo }
`;

async function consumerSettled(stack: Stack, stream: string, durable: string) {
  const jsm = await jetstreamManager(stack.nc);
  return eventually(async () => {
    const info = await jsm.consumers.info(stream, durable);
    return info.num_pending === 0 && info.num_ack_pending === 0 ? info : undefined;
  }, 10_000, `${durable} to settle`);
}

describe("starting runs from any NATS client", () => {
  it("starts a run from a JSON message on sc.tasks.<task>, and from msgpack", async () => {
    await using stack = await startStack();
    await stack.apply(ECHO);
    const js = jetstream(stack.nc);
    const h = headers();
    h.set("Content-Type", "application/json");
    await js.publish(stack.names.taskSubject("greet"), JSON.stringify({ message: "hi from json", runId: "rjson1" }), { headers: h });
    await js.publish(stack.names.taskSubject("greet"), encode({ message: "hi from msgpack", runId: "rmsgpack1" }));
    const [a, b] = await Promise.all([stack.client.waitForRun("rjson1"), stack.client.waitForRun("rmsgpack1")]);
    expect([a.status, a.input, a.task]).toEqual(["Completed", "hi from json", "greet"]);
    expect([b.status, b.input]).toEqual(["Completed", "hi from msgpack"]);
  });

  it("uses the task's user message and a fresh run id when the request is empty; repeats make no second run", async () => {
    await using stack = await startStack();
    await stack.apply(ECHO);
    const js = jetstream(stack.nc);
    await js.publish(stack.names.taskSubject("greet"), "{}");
    const run = await eventually(async () => (await stack.client.listRuns()).runs[0], 10_000, "a run");
    expect(run.input).toBe("hello");
    // The same run id twice (a client retrying) starts one run.
    await js.publish(stack.names.taskSubject("greet"), JSON.stringify({ runId: "rtwice" }));
    await js.publish(stack.names.taskSubject("greet"), JSON.stringify({ runId: "rtwice" }));
    await stack.client.waitForRun("rtwice");
    await consumerSettled(stack, stack.names.ingressStream, stack.names.consumers.ingress);
    expect((await stack.client.events("rtwice")).filter((e) => e.type === "RunRequested")).toHaveLength(1);
  });

  it("terminates malformed and unknown-task requests instead of redelivering them, and starts no run", async () => {
    await using stack = await startStack();
    await stack.apply(ECHO);
    const js = jetstream(stack.nc);
    await js.publish(stack.names.taskSubject("greet"), "{ not json");
    await js.publish(stack.names.taskSubject("greet"), JSON.stringify({ message: 42 }));
    await js.publish(stack.names.taskSubject("greet"), new Uint8Array([0xc1, 0xff, 0x00]));
    await js.publish(stack.names.taskSubject("no_such_task"), "{}");
    const info = await consumerSettled(stack, stack.names.ingressStream, stack.names.consumers.ingress);
    expect(info.num_redelivered).toBe(0);
    expect((await stack.client.listRuns()).total).toBe(0);
  });
});

describe("malformed commands", () => {
  it("terminates a malformed LLM or tool command (never redelivered forever) and the workers keep working", async () => {
    await using stack = await startStack();
    await stack.apply(ECHO);
    const js = jetstream(stack.nc);
    await js.publish(stack.names.llmCommandSubject, "garbage");
    await js.publish(stack.names.llmCommandSubject, encode({ id: "x", runId: "r1" }));
    await js.publish(stack.names.toolCommandSubject("builtin"), encode({ hello: "world" }));
    for (const durable of [stack.names.consumers.llmWorker, stack.names.consumers.toolWorker]) {
      const info = await consumerSettled(stack, stack.names.commandsStream, durable);
      expect(info.num_redelivered).toBe(0);
    }
    const run = await stack.client.startRun({ task: "greet" });
    expect((await stack.client.waitForRun(run.runId)).status).toBe("Completed");
  });

  it("ignores an invalid event published on a run subject and still runs that run", async () => {
    await using stack = await startStack();
    await stack.apply(ECHO);
    const js = jetstream(stack.nc);
    const run = await stack.client.startRun({ task: "greet", runId: "rnoisy" });
    await js.publish(stack.names.runSubject("rnoisy"), encode({ type: "Nonsense" }));
    expect((await stack.client.waitForRun(run.runId)).status).toBe("Completed");
  });

  it("terminates an event declared typed whose envelope passes but whose data cannot be folded, instead of redelivering it", async () => {
    await using stack = await startStack(["scheduler", "projector"]);
    const js = jetstream(stack.nc);
    const h = headers();
    h.set(Header.Typed, "1");
    // Its envelope is an event's; its data is not an LLMResponded's, which its readers only find out by folding it.
    await js.publish(stack.names.runResultsSubject("rforged"), encode({ id: "rforged:llm-done:1", type: "LLMResponded", v: 1, runId: "rforged", at: Date.now(), data: {} }), { headers: h });
    const jsm = await jetstreamManager(stack.nc);
    for (const durable of [stack.names.consumers.scheduler, stack.names.consumers.projector]) {
      // Terminated on its first delivery: nothing waits for the 5 s ack wait, nothing comes back.
      await eventually(async () => {
        const info = await jsm.consumers.info(stack.names.eventsStream, durable);
        return info.delivered.stream_seq > 0 && info.num_pending === 0 && info.num_ack_pending === 0;
      }, 3_000, `${durable} to be done with the event`);
      expect((await jsm.consumers.info(stack.names.eventsStream, durable)).num_redelivered).toBe(0);
    }
  });
});
