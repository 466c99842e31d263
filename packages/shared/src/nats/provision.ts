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

export type ProvisionOptions = { replicas?: number };

export type Buckets = { runs: KV; context: KV; config: KV; effects: KV; timers: KV; waits: KV; spend: KV };

/** How long a finished tool call is remembered, so a late redelivery of its command does not run it again. */
const EFFECTS_TTL_MS = 7 * 24 * 3600 * 1000;

const MAX_PAYLOAD = 1024 * 1024;

/** Creates or updates every stream and bucket Smallchain needs. Idempotent: every service calls it on start. */
export async function provision(nc: NatsConnection, n: Names, opts: ProvisionOptions = {}): Promise<Buckets> {
  const jsm = await jetstreamManager(nc);
  const replicas = opts.replicas ?? 1;
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
  const [runs, context, config, effects, timers, waits, spend] = await Promise.all([
    kvm.create(n.runsBucket, { history: 1, replicas, storage: StorageType.File }),
    kvm.create(n.contextBucket, { history: 1, replicas, storage: StorageType.File }),
    kvm.create(n.configBucket, { history: 10, replicas, storage: StorageType.File }),
    // Bucket-wide max age works on NATS 2.9 (per-key TTLs do not).
    kvm.create(n.effectsBucket, { history: 1, replicas, storage: StorageType.File, ttl: EFFECTS_TTL_MS }),
    kvm.create(n.timersBucket, { history: 1, replicas, storage: StorageType.File }),
    kvm.create(n.waitsBucket, { history: 1, replicas, storage: StorageType.File }),
    kvm.create(n.spendBucket, { history: 1, replicas, storage: StorageType.File }),
  ]);
  return { runs, context, config, effects, timers, waits, spend };
}

async function ensureStream(jsm: JetStreamManager, config: Partial<StreamConfig> & { name: string }): Promise<void> {
  try {
    const info = await jsm.streams.info(config.name);
    const same = (config.subjects ?? []).join() === info.config.subjects.join();
    if (!same) await jsm.streams.update(config.name, { ...info.config, subjects: config.subjects ?? [] });
  } catch (err) {
    if (err instanceof JetStreamApiError && err.code === 10059) {
      try {
        await jsm.streams.add(config);
      } catch (addErr) {
        // Another service created it at the same moment.
        if (!(addErr instanceof JetStreamApiError && addErr.code === 10058)) throw addErr;
      }
      return;
    }
    throw err;
  }
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
