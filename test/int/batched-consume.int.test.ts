import { AckPolicy, jetstreamManager, type JsMsg } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { deliveryInfoOf, startBatchedConsumerLoop } from "@smallchain/shared";
import { cleanupPrefix, natsUrl, uniquePrefix } from "../support/nats.js";
import { eventually } from "../support/processes.js";

const log = pino({ level: "silent" });

describe("deliveryInfoOf", () => {
  it("reads a delivery's place from either form of JetStream's ack subject", () => {
    expect(deliveryInfoOf("$JS.ACK.S.c.2.41.40.1795557356534554663.7")).toMatchObject({
      domain: "",
      stream: "S",
      consumer: "c",
      deliveryCount: 2,
      redelivered: true,
      streamSequence: 41,
      deliverySequence: 40,
      pending: 7,
    });
    expect(deliveryInfoOf("$JS.ACK.hub.ACCHASH.S.c.1.5.6.1795557356534554663.0.rnd")).toMatchObject({
      domain: "hub",
      account_hash: "ACCHASH",
      stream: "S",
      consumer: "c",
      deliveryCount: 1,
      redelivered: false,
      streamSequence: 5,
      deliverySequence: 6,
      pending: 0,
    });
    expect(() => deliveryInfoOf("_INBOX.abc.1")).toThrow(/not a JetStream delivery/);
  });
});

describe("startBatchedConsumerLoop", () => {
  let prefix: string;
  let nc: Awaited<ReturnType<typeof connect>>;
  let stream: string;

  beforeEach(async () => {
    prefix = uniquePrefix("bc");
    stream = `${prefix.toUpperCase()}_Q`;
    nc = await connect({ servers: natsUrl() });
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: stream, subjects: [`${prefix}.q.>`] });
    await jsm.consumers.add(stream, { durable_name: "c", ack_policy: AckPolicy.Explicit, ack_wait: 1_000_000_000 });
  });

  afterEach(async () => {
    await cleanupPrefix(nc, prefix);
    await nc.close();
  });

  /** The loop under test on consumer `c`: batches of 10, pulls every 10 ms (40 when idle). */
  const startLoop = (handle: (msg: JsMsg) => Promise<void>, opts: { pullTimeoutMs?: number } = {}) =>
    startBatchedConsumerLoop(nc, { stream, durable: "c", batch: 10, intervalMs: 10, idleMs: 40, concurrency: 64, log, handle, ...opts });

  const publish = async (from: number, to: number) => {
    for (let i = from; i < to; i++) nc.publish(`${prefix}.q.${i % 3}`, new TextEncoder().encode(String(i)));
    await nc.flush();
  };

  it("hands out every message once, with its subject and delivery info, and acks them", async () => {
    const seen: { body: string; subject: string; seq: number; count: number }[] = [];
    await publish(0, 25);
    const loop = startLoop(async (msg: JsMsg) => {
      seen.push({ body: new TextDecoder().decode(msg.data), subject: msg.subject, seq: msg.seq, count: msg.info.deliveryCount });
      msg.ack();
    });
    try {
      await eventually(async () => seen.length >= 25 || undefined, 5_000, "the first 25 messages");
      // Some come while the loop is idle: the next pull brings them.
      await publish(25, 31);
      await eventually(async () => seen.length >= 31 || undefined, 5_000, "the later messages");
      await new Promise((r) => setTimeout(r, 1_500));
    } finally {
      await loop.stop();
    }
    // Nothing came twice: every message was acked before its ack wait (1 s) ran out.
    expect(seen.map((s) => s.body)).toEqual(Array.from({ length: 31 }, (_, i) => String(i)));
    expect(seen.map((s) => s.seq)).toEqual(Array.from({ length: 31 }, (_, i) => i + 1));
    expect(seen.every((s, i) => s.subject === `${prefix}.q.${i % 3}` && s.count === 1)).toBe(true);
    const info = await (await jetstreamManager(nc)).consumers.info(stream, "c");
    expect(info.num_ack_pending).toBe(0);
    expect(info.num_pending).toBe(0);
  });

  it("gets a message back when its handler fails, and leaves the rest to the next reader after stop", async () => {
    let failed = false;
    const handled: { body: string; count: number }[] = [];
    await publish(0, 3);
    const loop = startLoop(async (msg: JsMsg) => {
      const body = new TextDecoder().decode(msg.data);
      if (body === "1" && !failed) {
        failed = true;
        throw new Error("handler crashed");
      }
      handled.push({ body, count: msg.info.deliveryCount });
      msg.ack();
    });
    // The failed message was neither acked nor naked: it comes back after the ack wait (1 s).
    await eventually(async () => handled.length >= 3 || undefined, 5_000, "the failed message again");
    await loop.stop();
    expect(handled.map((h) => h.body).sort()).toEqual(["0", "1", "2"]);
    expect(handled.find((h) => h.body === "1")?.count).toBe(2);

    // Stopped: nothing more is pulled, and a new reader of the consumer gets the next message.
    await publish(3, 4);
    const again: string[] = [];
    const next = startLoop(async (msg: JsMsg) => {
      again.push(new TextDecoder().decode(msg.data));
      msg.ack();
    });
    try {
      await eventually(async () => again.length >= 1 || undefined, 2_000, "the message after stop");
    } finally {
      await next.stop();
    }
    expect(again).toEqual(["3"]);
  });

  it("keeps pulling once its consumer exists again, after pulls that got no answer", async () => {
    const jsm = await jetstreamManager(nc);
    await jsm.consumers.delete(stream, "c");
    const handled: string[] = [];
    const loop = startLoop(async (msg: JsMsg) => {
      handled.push(new TextDecoder().decode(msg.data));
      msg.ack();
    }, { pullTimeoutMs: 200 });
    try {
      await new Promise((r) => setTimeout(r, 500));
      await jsm.consumers.add(stream, { durable_name: "c", ack_policy: AckPolicy.Explicit });
      await publish(0, 2);
      await eventually(async () => handled.length >= 2 || undefined, 5_000, "messages after the consumer came back");
    } finally {
      await loop.stop();
    }
    expect(handled).toEqual(["0", "1"]);
  });
});
