import type { JsMsg } from "@nats-io/jetstream";
import {
  EventStore,
  Projection,
  msFromEnv,
  flushAcks,
  ensureConsumer,
  provision,
  startConsumerLoop,
  startBatchedConsumerLoop,
  type Logger,
  type Metrics,
  type Names,
  type NatsConnection,
  type Service,
} from "@smallchain/shared";

export type ProjectorOptions = {
  nc: NatsConnection;
  names: Names;
  log: Logger;
  concurrency?: number;
  /** The process's metrics: events handled, runs by status (see `smallchain_runs`), redeliveries. */
  metrics?: Pick<Metrics, "service"> | undefined;
  /** How long a run's stored view may trail its events (default SC_VIEW_DELAY_MS, else 50 ms); see Projection. */
  viewDelayMs?: number;
  /** Pull events every this many ms, in batches (default SC_PROJECTOR_PULL_MS, else 100); 0: a standing pull. */
  pullMs?: number;
};

/**
 * Folds every run's events into the KV views (see Projection) through a durable consumer of its own, shared by
 * its replicas. Not needed where the scheduler projects them itself (SC_SCHEDULER_PROJECTS); running both is
 * safe (each view is written over the revision it was folded from) but does the work twice.
 */
export async function startProjector(opts: ProjectorOptions): Promise<Service> {
  const { nc, names: n, log } = opts;
  const metrics = opts.metrics?.service("projector");
  const buckets = await provision(nc, n);
  const store = await EventStore.open(nc, n);
  const projection = new Projection({ names: n, store, buckets, log, metrics, viewDelayMs: opts.viewDelayMs });

  await ensureConsumer(nc, n.eventsStream, {
    durable_name: n.consumers.projector,
    filter_subject: n.allRunsSubject,
    // Handling an event takes milliseconds: after a crash its events go to another replica within seconds.
    ack_wait: 5_000_000_000,
    max_ack_pending: 20_000,
  });

  const onEvent = async (msg: JsMsg): Promise<void> => {
    projection.delivered(msg.info);
    const event = store.decodeOrTerm(msg, log);
    if (!event) return;
    metrics?.event(event.type);
    await projection.project(event, msg);
  };

  // Nothing waits on the views but people and tools (spend, which decisions read, is the scheduler's), so the
  // projector pulls its events in batches: it wakes ten times a second instead of at every event, leaving the
  // cores to the services on a run's critical path (a step at concurrency 1, four processes: 7.2-7.6 -> 6.7-7.0
  // ms with pulls every 20 ms, 6.3-6.6 with no projector at all; every 100 ms instead of 20 took another 5% off
  // a step at 1 and added 4-10% to the steps/s at 64, session 14). A full batch is followed by the next at once.
  const pullMs = opts.pullMs ?? msFromEnv("SC_PROJECTOR_PULL_MS", 100);
  const consume = { stream: n.eventsStream, durable: n.consumers.projector, handle: onEvent, invalid: (m: JsMsg) => store.invalid(m), log, metrics };
  const loop =
    pullMs > 0
      ? startBatchedConsumerLoop(nc, { ...consume, concurrency: opts.concurrency ?? 1024, batch: 256, intervalMs: pullMs, idleMs: Math.max(pullMs, 100) })
      : startConsumerLoop(nc, { ...consume, concurrency: opts.concurrency ?? 256 });
  log.info({ prefix: n.prefix, pullMs }, "projector started");
  return {
    async stop() {
      await loop.stop();
      // Every view folded so far is stored before we go: nothing waits for a redelivery.
      await projection.stop();
      flushAcks();
    },
  };
}
