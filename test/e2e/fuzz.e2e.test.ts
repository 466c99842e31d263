import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { headers } from "@nats-io/transport-node";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { encode } from "@smallchain/shared";
import { checkStreams } from "../chaos/src/verify.js";
import { eventually, spawnService, started, type ServiceProcess } from "../support/processes.js";
import { startStack, type Stack } from "../support/stack.js";

/** Cases per property; the figures in docs/reliability.md count them. */
const MESSAGE_RUNS = 300;
const OVERSIZED_RUNS = 8;
/** The server's default max_payload; a message and its headers must fit in it. */
const MAX_PAYLOAD = 1024 * 1024;

const CONFIG = `
llms:
  - name: mock
    provider: mock
    replies: [ { tool_calls: [ { name: add, arguments: { a: 2, b: 3 } } ] }, { content: "sum {{last_tool_result}}" } ]
agents:
  - { name: adder, llm: mock, tools: [ add ] }
tools:
  - { name: add, builtin: add }
tasks:
  - { name: fuzz, user_message: go, agent: adder }
`;

const text = fc.string({ unit: "binary", maxLength: 40 });
/** Run and call ids as a hostile client might send them: dots, wildcards, spaces, empty, long. */
const hostileId = fc.oneof(text, fc.constantFrom("", "*", ">", "a.b", "a b", "r1\r\nPUB x 1", "r".repeat(300)), fc.stringMatching(/^[a-z0-9]{1,12}$/));
const builtinTool = fc.record({
  kind: fc.constantFrom("builtin", "agent", "nonsense"),
  name: text,
  description: text,
  parameters: fc.constant({}),
  builtin: fc.constantFrom("add", "divide", "nope"),
  agent: text,
});
/** Commands that are almost right: the right fields with hostile or wrong values (never a command tool). */
const nearTool = fc.record(
  { id: text, runId: hostileId, callId: hostileId, step: fc.integer({ min: -2, max: 5 }), tool: builtinTool, args: fc.jsonValue({ maxDepth: 2 }) },
  { requiredKeys: [] },
);
const nearLlm = fc.record(
  {
    id: text,
    runId: hostileId,
    step: fc.integer({ min: -2, max: 5 }),
    messageCount: fc.integer({ min: -1, max: 5 }),
    llm: fc.record({ name: fc.constantFrom("mock", "x y"), provider: fc.constantFrom("mock", "other"), replies: fc.constant([{ content: "hi" }]) }),
    tools: fc.constant([]),
  },
  { requiredKeys: [] },
);
const nearTask = fc.record({ message: fc.oneof(text, fc.nat()), name: text, runId: hostileId, extra: text }, { requiredKeys: [] });

type Payload = { bytes: Uint8Array; contentType?: string };
const asJson = (v: unknown): Payload => ({ bytes: new TextEncoder().encode(JSON.stringify(v)), contentType: "application/json" });
const asMsgpack = (v: unknown): Payload => ({ bytes: encode(v) });
const payload: fc.Arbitrary<Payload> = fc.oneof(
  fc.uint8Array({ maxLength: 1024 }).map((bytes) => ({ bytes })),
  fc.tuple(fc.uint8Array({ maxLength: 256 }), fc.constantFrom("application/json", "application/msgpack", "text/html")).map(([bytes, contentType]) => ({ bytes, contentType })),
  fc.json().map((j) => ({ bytes: new TextEncoder().encode(j), contentType: "application/json" })),
  fc.jsonValue().map(asMsgpack),
  fc.oneof(nearTool, nearLlm, nearTask).chain((v) => fc.constantFrom(asJson(v), asMsgpack(v))),
);

describe("fuzzed messages from any NATS client", () => {
  let stack: Stack;
  const procs: ServiceProcess[] = [];
  afterAll(async () => {
    await Promise.all(procs.map((p) => p.kill("SIGKILL")));
    await stack?.[Symbol.asyncDispose]();
  });

  it("keeps the services up and the run streams valid under random, malformed and oversized messages", async () => {
    stack = await startStack([]);
    await stack.apply(CONFIG);
    const env = { SC_PREFIX: stack.prefix, SC_TOOL_ACK_WAIT_MS: "2000", SC_LLM_ACK_WAIT_MS: "2000" };
    procs.push(...(["scheduler", "projector", "llm-worker", "tool-worker"] as const).map((s) => spawnService(s, env)));
    await Promise.all(procs.map((p) => started(p)));
    const js = jetstream(stack.nc);
    const n = stack.names;
    const subject = fc.constantFrom(n.taskSubject("fuzz"), n.taskSubject("no_such_task"), n.llmCommandSubject, n.toolCommandSubject("builtin"), n.toolCommandSubject("command"));
    const send = async (to: string, p: Payload) => {
      const h = headers();
      if (p.contentType) h.set("Content-Type", p.contentType);
      await js.publish(to, p.bytes, { headers: h });
    };

    let sent = 0;
    await fc.assert(
      fc.asyncProperty(subject, payload, async (to, p) => {
        await send(to, p);
        sent++;
      }),
      { numRuns: MESSAGE_RUNS },
    );
    // Close to max_payload: garbage, and requests whose fields are huge.
    const big = fc.integer({ min: MAX_PAYLOAD - 64 * 1024, max: MAX_PAYLOAD - 1024 });
    await fc.assert(
      fc.asyncProperty(subject, big, fc.nat(2), async (to, size, kind) => {
        const filler = "x".repeat(size - 100);
        const p: Payload =
          kind === 0 ? { bytes: new Uint8Array(size).fill(0xc1) } : kind === 1 ? asJson({ message: filler, runId: `big${sent}` }) : asMsgpack({ id: "x", runId: "big", callId: filler });
        await send(to, p);
        sent++;
      }),
      { numRuns: OVERSIZED_RUNS },
    );

    // Every message is dealt with (run, refused or terminated), none left to be redelivered forever.
    const jsm = await jetstreamManager(stack.nc);
    for (const [stream, durable] of [
      [n.ingressStream, n.consumers.ingress],
      [n.commandsStream, n.consumers.llmWorker],
      [n.commandsStream, n.consumers.toolWorker],
    ] as const) {
      await eventually(async () => {
        const info = await jsm.consumers.info(stream, durable);
        return info.num_pending === 0 && info.num_ack_pending === 0;
      }, 30_000, `${durable} to settle`);
    }
    expect(procs.every((p) => p.child.exitCode === null)).toBe(true);

    // Still working: a valid run goes through.
    const run = await stack.client.startRun({ task: "fuzz", runId: "rafterfuzz" });
    expect((await stack.client.waitForRun(run.runId, { timeoutMs: 15_000 })).output).toBe("sum 5");

    // No service wrote an invalid event into any run stream.
    const check = await checkStreams(stack.client, []);
    expect(check.invalidEvents).toEqual([]);
    // Refusals were logged with what was wrong.
    const logs = procs.map((p) => p.output()).join("\n");
    expect(logs).toMatch(/"err":"task request on [^"]+: [^"]+","msg":"refusing an invalid task request"/);
    expect(logs).toMatch(/"err":"tool command on [^"]+: [^"]+","msg":"terminating an invalid tool command"/);
    expect(logs).toMatch(/"err":"llm command on [^"]+: [^"]+","msg":"terminating an invalid llm command"/);
    process.stdout.write(`fuzz: ${sent} messages (${MESSAGE_RUNS} random/malformed + ${OVERSIZED_RUNS} near max_payload), ${check.events} events checked, 0 invalid\n`);
  }, 90_000);
});
