import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  JetStreamApiError,
  RetentionPolicy,
  StorageType,
  jetstream,
  jetstreamManager,
  type ConsumerConfig,
  type JetStreamManager,
  type StreamConfig,
} from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Names } from "../names.js";
import { msFromEnv } from "../env.js";

export type ProvisionOptions = { replicas?: number };

/**
 * How many copies JetStream keeps of every stream and bucket: SC_REPLICAS, 1 by default (a single server), 3 on
 * a cluster (one node may die without losing anything or stopping). One setting for the whole installation.
 */
export function replicasFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.SC_REPLICAS ?? "1";
  const replicas = Number(raw);
  if (!Number.isInteger(replicas) || replicas < 1 || replicas > 5) {
    throw new Error(`SC_REPLICAS must be a whole number from 1 to 5 (1 for a single server, 3 for a cluster), got "${raw}"`);
  }
  return replicas;
}

/** JetStream could not keep the asked number of copies (a single server keeps 1; a cluster at most one per node). */
export class ProvisionError extends Error {
  override name = "ProvisionError";
}

function provisionError(what: string, replicas: number, err: unknown): Error {
  if (!(err instanceof JetStreamApiError)) return err as Error;
  const hint =
    replicas > 1
      ? ` (SC_REPLICAS=${replicas}: a single NATS server keeps 1 copy, a cluster at most one per JetStream node; set SC_REPLICAS to what the cluster can hold)`
      : "";
  return new ProvisionError(`cannot provision ${what} with ${replicas} replica(s): ${err.message}${hint}`, { cause: err });
}

export type Buckets = { runs: KV; config: KV; effects: KV; timers: KV; waits: KV; spend: KV; cancelled: KV };

/** How long a finished tool call is remembered, so a late redelivery of its command does not run it again. */
const EFFECTS_TTL_MS = 7 * 24 * 3600 * 1000;

/** How long workers remember that a run was cancelled: its commands are long done by then. */
const CANCELLED_TTL_MS = 24 * 3600 * 1000;

const MAX_PAYLOAD = 1024 * 1024;

/** Creates or updates every stream and bucket Smallchain needs. Idempotent: every service calls it on start. */
export async function provision(nc: NatsConnection, n: Names, opts: ProvisionOptions = {}): Promise<Buckets> {
  const jsm = await jetstreamManager(nc);
  const replicas = opts.replicas ?? replicasFromEnv();
  await ensureStream(jsm, {
    name: n.eventsStream,
    subjects: [n.allRunsSubject],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    discard: DiscardPolicy.Old,
    allow_direct: true,
    max_msg_size: MAX_PAYLOAD,
    num_replicas: replicas,
  });
  await ensureDecisionConsumers(jsm, n);
  await ensureStream(jsm, {
    name: n.commandsStream,
    subjects: [n.allCommandsSubject],
    retention: RetentionPolicy.Workqueue,
    storage: StorageType.File,
    max_msg_size: MAX_PAYLOAD,
    num_replicas: replicas,
  });
  await ensureStream(jsm, {
    name: n.ingressStream,
    subjects: [n.allTasksSubject],
    retention: RetentionPolicy.Workqueue,
    storage: StorageType.File,
    max_msg_size: MAX_PAYLOAD,
    num_replicas: replicas,
  });
  // One small entry per run, in the order runs appeared: `get runs` reads a page of it, not every run.
  await ensureStream(jsm, {
    name: n.runIndexStream,
    subjects: [n.runIndexSubject],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    allow_direct: true,
    num_replicas: replicas,
  });
  const kvm = new Kvm(jetstream(nc));
  const bucket = async (name: string, opts: { history: number; ttl?: number }): Promise<KV> => {
    let kv: KV;
    try {
      kv = await kvm.create(name, { ...opts, replicas, storage: StorageType.File });
    } catch (err) {
      throw provisionError(`bucket ${name}`, replicas, err);
    }
    // An existing bucket keeps its settings through create(): raise its copies to the asked number (never
    // lower them: a process started without SC_REPLICAS must not quietly take copies away from a cluster).
    const stream = `KV_${name}`;
    const info = await jsm.streams.info(stream);
    if (info.config.num_replicas < replicas) {
      try {
        await jsm.streams.update(stream, { ...info.config, num_replicas: replicas });
      } catch (err) {
        throw provisionError(`bucket ${name}`, replicas, err);
      }
    }
    return kv;
  };
  const [runs, config, effects, timers, waits, spend, cancelled] = await Promise.all([
    bucket(n.runsBucket, { history: 1 }),
    bucket(n.configBucket, { history: 10 }),
    // Bucket-wide max age works on NATS 2.9 (per-key TTLs do not).
    bucket(n.effectsBucket, { history: 1, ttl: EFFECTS_TTL_MS }),
    bucket(n.timersBucket, { history: 1 }),
    bucket(n.waitsBucket, { history: 1 }),
    bucket(n.spendBucket, { history: 1 }),
    bucket(n.cancelledBucket, { history: 1, ttl: CANCELLED_TTL_MS }),
  ]);
  return { runs, config, effects, timers, waits, spend, cancelled };
}

/**
 * For clients (the CLI): binds to an installation that exists with one request, and provisions one that does
 * not. Creating or checking every stream and bucket takes a few dozen requests, too slow for `get runs`.
 */
export async function openOrProvision(nc: NatsConnection, n: Names, opts: ProvisionOptions = {}): Promise<Buckets> {
  const jsm = await jetstreamManager(nc);
  try {
    await jsm.streams.info(n.eventsStream);
  } catch (err) {
    if (err instanceof JetStreamApiError && err.code === 10059) return provision(nc, n, opts);
    throw err;
  }
  const kvm = new Kvm(jetstream(nc));
  const [runs, config, effects, timers, waits, spend, cancelled] = await Promise.all(
    [n.runsBucket, n.configBucket, n.effectsBucket, n.timersBucket, n.waitsBucket, n.spendBucket, n.cancelledBucket].map((b) => kvm.open(b)),
  );
  return { runs: runs!, config: config!, effects: effects!, timers: timers!, waits: waits!, spend: spend!, cancelled: cancelled! };
}

async function ensureStream(jsm: JetStreamManager, config: Partial<StreamConfig> & { name: string }): Promise<void> {
  const replicas = config.num_replicas ?? 1;
  let info;
  try {
    info = await jsm.streams.info(config.name);
  } catch (err) {
    if (!(err instanceof JetStreamApiError && err.code === 10059)) throw err;
    try {
      await jsm.streams.add(config);
    } catch (addErr) {
      // Another service created it at the same moment.
      if (!(addErr instanceof JetStreamApiError && addErr.code === 10058)) throw provisionError(`stream ${config.name}`, replicas, addErr);
    }
    return;
  }
  // Copies are raised, never lowered (see `bucket` in provision).
  const same = (config.subjects ?? []).join() === info.config.subjects.join() && info.config.num_replicas >= replicas;
  if (same) return;
  try {
    await jsm.streams.update(config.name, { ...info.config, subjects: config.subjects ?? [], num_replicas: Math.max(replicas, info.config.num_replicas) });
  } catch (err) {
    throw provisionError(`stream ${config.name}`, replicas, err);
  }
}

/**
 * The workers' consumers of their lanes, created before any decision can carry a command (every service, the
 * scheduler too, provisions on start): a command in a decision appended later is delivered. Created to deliver
 * decisions from their creation on, never the history before (drain the consumers of an earlier release before
 * upgrading: README, "Running the services separately"), with the workers' ack waits as the environment sets them.
 * One that exists is left as its worker configured it: on NATS 2.9 adding a consumer that exists with another config
 * updates it.
 */
async function ensureDecisionConsumers(jsm: JetStreamManager, n: Names): Promise<void> {
  for (const kind of ["llm", "tool"] as const) {
    const config = decisionConsumer(n, kind, workerAckWaitMs(kind));
    try {
      await jsm.consumers.info(n.eventsStream, config.durable_name);
      continue;
    } catch (err) {
      if (!(err instanceof JetStreamApiError && err.code === 10014)) throw err;
    }
    await jsm.consumers.add(n.eventsStream, { ack_policy: AckPolicy.Explicit, ...config });
  }
}

/**
 * The settings of every consumer a worker takes commands from. The server never gives up on a command: the worker
 * counts attempts (deliveryCount) and records the failure itself, even when a worker died during the last attempt or
 * could not store its failure.
 */
export function workerConsumerSettings(ackWaitMs: number) {
  return { ack_wait: ackWaitMs * 1_000_000, max_deliver: -1, max_ack_pending: 10_000 } satisfies Partial<ConsumerConfig>;
}

/**
 * A worker kind's consumer of its lane of every run, as provisioning creates it and the worker configures it (the two
 * must agree: on NATS 2.9 adding one that exists with another config updates it).
 */
export function decisionConsumer(n: Names, kind: "llm" | "tool", ackWaitMs: number) {
  return {
    durable_name: kind === "llm" ? n.consumers.llmDecisions : n.consumers.toolDecisions,
    filter_subject: n.allLaneSubject(kind),
    deliver_policy: DeliverPolicy.New,
    ...workerConsumerSettings(ackWaitMs),
  } satisfies Partial<ConsumerConfig>;
}

/** How long a worker may go without a heartbeat on a command before it goes to another (SC_*_ACK_WAIT_MS). */
const LLM_ACK_WAIT_MS = 60_000;
const TOOL_ACK_WAIT_MS = 30_000;

/**
 * A worker kind's ack wait as the environment sets it (SC_LLM_ACK_WAIT_MS, SC_TOOL_ACK_WAIT_MS): read here only, so
 * provisioning creates the consumers of decisions with the ack wait the workers then keep.
 */
export function workerAckWaitMs(kind: "llm" | "tool", env: NodeJS.ProcessEnv = process.env): number {
  return kind === "llm" ? msFromEnv("SC_LLM_ACK_WAIT_MS", LLM_ACK_WAIT_MS, env) : msFromEnv("SC_TOOL_ACK_WAIT_MS", TOOL_ACK_WAIT_MS, env);
}

/** Creates or updates a durable pull consumer, so redeploying a service with new settings takes effect. */
export async function ensureConsumer(
  nc: NatsConnection,
  stream: string,
  config: Partial<ConsumerConfig> & { durable_name: string },
): Promise<void> {
  const jsm = await jetstreamManager(nc);
  const full: Partial<ConsumerConfig> = { ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All, ...config };
  try {
    await jsm.consumers.add(stream, full);
  } catch (err) {
    // 10148: a consumer with that name exists with another config; update what may change.
    if (err instanceof JetStreamApiError && err.code === 10148) {
      const { deliver_policy: _d, ...updatable } = full;
      await jsm.consumers.update(stream, config.durable_name, updatable);
      return;
    }
    throw err;
  }
}
