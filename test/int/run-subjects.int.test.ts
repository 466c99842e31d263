import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ConcurrencyError, EventStore, encode, names, provision, runRequested, type Names, type RunEvent } from "@smallchain/shared";
import { cleanupPrefix, natsUrl, uniquePrefix } from "../support/nats.js";
import { adderConfig } from "../support/configs.js";
import { startStack } from "../support/stack.js";
import { eventually } from "../support/processes.js";

const result = (runId: string, callId: string): RunEvent => ({ id: `${runId}:done:${callId}`, type: "ToolCallCompleted", v: 1, runId, at: Date.now(), data: { callId, result: "ok" } });
const input = (runId: string, n: number): RunEvent => ({ id: `${runId}:resumed:${n}`, type: "RunResumed", v: 1, runId, at: Date.now(), data: {} });

describe("a run's subjects", () => {
  let nc: NatsConnection;
  let prefix: string;
  let n: Names;
  let store: EventStore;

  beforeEach(async () => {
    nc = await connect({ servers: natsUrl() });
    prefix = uniquePrefix("rs");
    n = names(prefix);
    await provision(nc, n);
    store = await EventStore.open(nc, n);
  });

  afterEach(async () => {
    await cleanupPrefix(nc, prefix);
    await nc.close();
  });

  it("guards a decision by the decisions' subject only: a result landing meanwhile does not make it conflict, an input does", async () => {
    const first = await store.append(runRequested("r1", Date.now(), { agent: "a", task: "t", input: "go" }), 0);
    const res = await store.appendResult(result("r1", "s1c0"));

    // Decided over a state that ends before the result: it lands, and the decider learns what it did not see.
    const decided = await store.append(input("r1", 1), first.seq);
    expect(await store.resultBetween("r1", first.seq + 1, decided.seq)).toBe(true);
    expect(await store.resultBetween("r1", res.seq + 1, decided.seq)).toBe(false);

    // An input is on the decisions' subject: a decision over a state without it conflicts.
    await expect(store.append(input("r1", 2), first.seq)).rejects.toBeInstanceOf(ConcurrencyError);

    const events = await store.readRun("r1");
    expect(events.map((e) => [e.type, e.seq, e.result ?? false])).toEqual([
      ["RunRequested", first.seq, false],
      ["ToolCallCompleted", res.seq, true],
      ["RunResumed", decided.seq, false],
    ]);
  });

  it("guards each lane by its own last event: two writers at one state write to one lane, and only one lands", async () => {
    const first = await store.append(runRequested("rl", Date.now(), { agent: "a", task: "t", input: "go" }), 0);
    // A state whose lane is llm (say, every call of a step answered): one scheduler decides the next LLM call, while a
    // cancel checked against the same state is written, as Control writes it, to the same lane.
    const llm: RunEvent = { id: "rl:llm:2", type: "LLMRequested", v: 1, runId: "rl", at: Date.now(), data: { step: 2, llm: "m", messageCount: 3 } };
    const cancel: RunEvent = { id: "rl:cancelled", type: "RunCancelled", v: 1, runId: "rl", at: Date.now(), data: { reason: "cancelled" } };
    const decided = await store.append(llm, 0, "llm");
    await expect(store.append(cancel, 0, "llm")).rejects.toBeInstanceOf(ConcurrencyError);
    // Checked again against the state with the LLM call in it (still the llm lane), it lands after it.
    const cancelled = await store.append(cancel, decided.seq, "llm");
    // The other lanes are guarded apart: nothing on .ev moved.
    const resumed = await store.append(input("rl", 1), first.seq);

    const events = await store.readRun("rl");
    expect(events.map((e) => [e.type, e.seq, e.lane ?? (e.result ? "res" : "ev")])).toEqual([
      ["RunRequested", first.seq, "ev"],
      ["LLMRequested", decided.seq, "llm"],
      ["RunCancelled", cancelled.seq, "llm"],
      ["RunResumed", resumed.seq, "ev"],
    ]);
    // A decision that carries a command goes to its kind's lane, or nowhere.
    await expect(store.append({ ...llm, id: "rl:llm:3", command: encode({}) }, cancelled.seq, "ev")).rejects.toThrow("carries a llm command but was to go to the ev lane");
  });

  it("reads a long run from both subjects in stream order, up to a result stored last, with other runs' events between", async () => {
    const want: number[] = [];
    const results = new Set<number>();
    let guard = (await store.append(runRequested("long", Date.now(), { agent: "a", task: "t", input: "go" }), 0)).seq;
    want.push(guard);
    for (let i = 1; i <= 12; i++) {
      guard = (await store.append(input("long", i), guard)).seq;
      const res = (await store.appendResult(result("long", `s${i}c0`))).seq;
      want.push(guard, res);
      results.add(res);
      await store.append(runRequested(`other${i}`, Date.now(), { agent: "a", task: "t", input: "go" }), 0);
    }
    for (let i = 0; i < 50; i++) await store.append(runRequested(`later${i}`, Date.now(), { agent: "a", task: "t", input: "go" }), 0);
    const last = (await store.appendResult(result("long", "last"))).seq;
    want.push(last);
    results.add(last);

    // The first events come by direct gets, the rest through a consumer filtered to both subjects.
    for (const from of [1, want[10]!, want.at(-2)!]) {
      const events = await store.readRun("long", from);
      expect(events.map((e) => e.seq)).toEqual(want.filter((s) => s >= from));
      expect(events.filter((e) => e.result).map((e) => e.seq)).toEqual(want.filter((s) => s >= from && results.has(s)));
    }
  });

  it("fails a read of a long run whose consumer stalls, to be tried again, instead of waiting forever or returning part of it", async () => {
    let guard = (await store.append(runRequested("stuck", Date.now(), { agent: "a", task: "t", input: "go" }), 0)).seq;
    for (let i = 1; i <= 12; i++) guard = (await store.append(input("stuck", i), guard)).seq;
    expect(await store.readRun("stuck")).toHaveLength(13);

    // The first eight come by direct gets; the consumer for the rest sends one event, then nothing (as seen when a
    // cluster's stream leader was killed), or ends early.
    const real = (store as unknown as { js: { consumers: { get: (...a: unknown[]) => Promise<{ consume: (o: unknown) => Promise<AsyncIterable<unknown>> }> } } }).js;
    const consumerThat = (then: "stalls" | "ends") => ({
      consumers: {
        get: async (...a: unknown[]) => {
          const consumer = await real.consumers.get(...a);
          return {
            consume: async (o: unknown) => {
              const messages = (await consumer.consume(o)) as AsyncIterable<unknown> & { close(): Promise<void> };
              let closed: () => void = () => {};
              const whenClosed = new Promise<void>((r) => (closed = r));
              return {
                async *[Symbol.asyncIterator]() {
                  for await (const m of messages) {
                    yield m;
                    break;
                  }
                  if (then === "stalls") await whenClosed;
                },
                close: async () => {
                  closed();
                  await messages.close();
                },
              };
            },
          };
        },
      },
    });
    store.readStallMs = 300;
    for (const then of ["stalls", "ends"] as const) {
      (store as unknown as { js: unknown }).js = consumerThat(then);
      const started = Date.now();
      const err = await store.readRun("stuck").catch((e: unknown) => e);
      expect(err).toMatchObject({ name: "RetryableError", message: expect.stringMatching(then === "stalls" ? /^reading run stuck: nothing came for 300 ms before #\d+/ : /^reading run stuck: the read ended before #\d+/) });
      expect(Date.now() - started).toBeLessThan(5_000);
    }
    (store as unknown as { js: unknown }).js = real;
    expect(await store.readRun("stuck")).toHaveLength(13);
  });

  it("does not pass over a decision stored after its subject was found empty, before a newer result was read", async () => {
    const first = await store.append(runRequested("r3", Date.now(), { agent: "a", task: "t", input: "go" }), 0);
    const a = await store.appendResult(result("r3", "s1c0"));
    // The read asks both subjects from the result on. The decisions' subject has nothing there yet; right after it
    // answers, a decision lands, then another result: the kind of interleaving two schedulers made (a stall 1 in 6).
    const jsm = (store as unknown as { jsm: Awaited<ReturnType<typeof jetstreamManager>> }).jsm;
    const getMessage = jsm.streams.getMessage.bind(jsm.streams);
    let landed: { decision: number; result: number } | undefined;
    jsm.streams.getMessage = async (stream, query) => {
      const sm = await getMessage(stream, query);
      if (!landed && (query as { next_by_subj?: string }).next_by_subj === n.runSubject("r3") && sm === null) {
        const decision = (await store.append(input("r3", 1), first.seq)).seq;
        landed = { decision, result: (await store.appendResult(result("r3", "s1c1"))).seq };
      }
      return sm;
    };
    const events = await store.readRun("r3", a.seq);
    expect(landed).toBeDefined();
    expect(events.map((e) => e.seq)).toEqual([a.seq, landed!.decision, landed!.result]);
  });

  it("takes nothing on any other subject of a run for its event, and reads past an invalid event, saying which subject it was on", async () => {
    const first = await store.append(runRequested("r2", Date.now(), { agent: "a", task: "t", input: "go" }), 0);
    const stray = await jetstream(nc).publish(`${prefix}.run.r2.other`, encode(input("r2", 1)));
    const sm = await jetstreamManager(nc).then((jsm) => jsm.streams.getMessage(n.eventsStream, { seq: stray.seq }));
    expect(() => store.decodeStored(sm!)).toThrow(`event ${stray.seq} on ${prefix}.run.r2.other: a run's events are on <run>.ev, <run>.llm, <run>.tool and <run>.res only`);
    const bad = await jetstream(nc).publish(n.runResultsSubject("r2"), encode({ not: "an event" }));
    const res = await store.appendResult(result("r2", "s1c0"));

    const invalid: { seq: number; message: string; lane: string | undefined }[] = [];
    const events = await store.readRun("r2", 1, (err, seq, lane) => invalid.push({ seq, message: err.message, lane }));

    expect(events.map((e) => e.seq)).toEqual([first.seq, res.seq]);
    expect(invalid).toEqual([{ seq: bad.seq, message: expect.stringContaining(`event ${bad.seq} on ${n.runResultsSubject("r2")}`), lane: undefined }]);
    expect(await store.nextEvent("r2", first.seq + 1)).toMatchObject({ seq: res.seq, result: true });
  });
});

describe("an installation", () => {
  it("records the workers' results on each run's results subject, and every write on the lane of the state it was made from", async () => {
    await using stack = await startStack();
    const applied = await stack.apply(adderConfig(["{ tool_calls: [ { name: add, arguments: { a: 2, b: 3 } } ] }", '{ content: "{{last_tool_result}}" }'], 1));
    const runId = applied.runs[0]!.runId;
    await stack.client.waitForRun(runId);

    const jsm = await jetstreamManager(stack.nc);
    const { state } = await jsm.streams.info(stack.names.eventsStream, { subjects_filter: stack.names.runEventsSubject(runId) });
    expect(Object.keys(state.subjects ?? {}).sort()).toEqual([...stack.names.runSubjects(runId)].sort());

    const events = await stack.client.events(runId);
    expect(events.filter((e) => e.result).map((e) => e.type)).toEqual(["LLMResponded", "ToolCallCompleted", "LLMResponded"]);
    // Its request and start, and its end (decided once the LLM answered), on `.ev`; its LLM calls where the next
    // decision was one; its tool call while the step's calls were out.
    expect(events.filter((e) => !e.result && !e.lane).map((e) => e.type)).toEqual(["RunRequested", "RunStarted", "RunCompleted"]);
    expect(events.filter((e) => e.lane === "llm").map((e) => e.type)).toEqual(["LLMRequested", "LLMRequested"]);
    expect(events.filter((e) => e.lane === "tool").map((e) => e.type)).toEqual(["ToolCallRequested"]);
    expect(events.map((e) => e.seq)).toEqual([...events.map((e) => e.seq)].sort((a, b) => a - b));
  }, 30_000);

  it("finds a write that landed on another lane beside a decision that did not see it: a cancel checked before the model answered", async () => {
    const proto = EventStore.prototype;
    const { append } = proto;
    const staged = new Set<string>();
    proto.append = async function (this: EventStore, event, expected, lane) {
      if (event.type === "ToolCallRequested" && !staged.has(event.runId)) {
        staged.add(event.runId);
        // A cancel checked against the run as it was before the model answered (its lane then: llm) lands now, before
        // the decision the answer led to (on the tool lane): the scheduler's state over its decision passes over it.
        const llmSeq = (await this.readRun(event.runId)).filter((e) => e.lane === "llm").at(-1)!.seq;
        const cancel: RunEvent = { id: `${event.runId}:cancelled`, type: "RunCancelled", v: 1, runId: event.runId, at: Date.now(), data: { reason: "stale" } };
        await append.call(this, cancel, llmSeq, "llm");
      }
      return append.call(this, event, expected, lane);
    };
    try {
      await using stack = await startStack();
      const applied = await stack.apply(adderConfig(["{ tool_calls: [ { name: add, arguments: { a: 1, b: 2 } } ] }", '{ content: "sum {{last_tool_result}}" }'], 1));
      const runId = applied.runs[0]!.runId;
      expect((await stack.client.waitForRun(runId, { timeoutMs: 15_000 })).status).toBe("Cancelled");
      // When the cancel came, the scheduler read the run again and carried its effects out: the workers are told.
      await eventually(async () => (await stack.client.buckets.cancelled.get(runId)) !== null, 10_000, "the run in the cancelled bucket");
      const events = await stack.client.events(runId);
      expect(events.slice(0, 6).map((e) => e.type)).toEqual(["RunRequested", "RunStarted", "LLMRequested", "LLMResponded", "RunCancelled", "ToolCallRequested"]);
      // Nothing more was decided for it.
      expect(events.slice(6).filter((e) => !e.result)).toEqual([]);
    } finally {
      proto.append = append;
    }
  }, 30_000);

  it("loses no result when the look for results a decision did not see fails: the run is read again whole", async () => {
    // Two calls decided together; the first one's result lands before the second call's event (held back here), so
    // the scheduler's state over its decision passes over it until the look finds it. That look fails once a run.
    const proto = EventStore.prototype;
    const { append, resultBetween } = proto;
    const failed = new Set<string>();
    proto.append = async function (this: EventStore, event, expected, lane) {
      if (event.type === "ToolCallRequested" && event.data.callId === "s1c1") await new Promise((r) => setTimeout(r, 150));
      return append.call(this, event, expected, lane);
    };
    proto.resultBetween = async function (this: EventStore, runId, from, before) {
      if (!failed.has(runId)) {
        failed.add(runId);
        throw new Error("the server went away");
      }
      return resultBetween.call(this, runId, from, before);
    };
    try {
      await using stack = await startStack();
      const applied = await stack.apply(
        adderConfig(["{ tool_calls: [ { name: add, arguments: { a: 1, b: 2 } }, { name: add, arguments: { a: 3, b: 4 } } ] }", '{ content: "sum {{last_tool_result}}" }'], 4),
      );
      const views = await Promise.all(applied.runs.map((r) => stack.client.waitForRun(r.runId, { timeoutMs: 15_000 })));
      expect(views.map((v) => v.output)).toEqual(applied.runs.map(() => "sum 7"));
      expect(failed.size).toBeGreaterThan(0);
    } finally {
      proto.append = append;
      proto.resultBetween = resultBetween;
    }
  }, 30_000);
});
