import type { JsMsg } from "@nats-io/jetstream";
import {
  EventStore,
  KeyedQueue,
  RunCache,
  ackSoon,
  contextKey,
  encodeMessage,
  encodeRunIndexEntry,
  encodeView,
  ensureConsumer,
  getRunView,
  initialState,
  messagesOf,
  provision,
  startConsumerLoop,
  type ChatMessage,
  type Logger,
  type Names,
  type NatsConnection,
  type Service,
} from "@smallchain/shared";

export type ProjectorOptions = { nc: NatsConnection; names: Names; log: Logger; concurrency?: number };

/**
 * Folds every run's events into the KV views: `runs` (one run view per run) and `context` (one entry per
 * message of the context window). Idempotent by sequence: a view records the last sequence folded into it,
 * and a message's key is its index, so a redelivered event rewrites the same values.
 */
export async function startProjector(opts: ProjectorOptions): Promise<Service> {
  const { nc, names: n, log } = opts;
  const buckets = await provision(nc, n);
  const store = await EventStore.open(nc, n);
  const queue = new KeyedQueue();
  // Runs whose view in memory is ahead of the stored one.
  const unwritten = new Set<string>();
  // A KV put is a publish on the bucket's subject; the event store's publisher does it without per-request overhead.
  const put = (bucket: string, key: string, value: Uint8Array) => store.publisher.publish(`$KV.${bucket}.${key}`, value);
  const cache = new RunCache(store, log, {
    loadInitial: async (runId) => (await getRunView(buckets.runs, runId)) ?? initialState(runId),
    max: 20_000,
  });

  await ensureConsumer(nc, n.eventsStream, {
    durable_name: n.consumers.projector,
    filter_subject: n.allRunsSubject,
    // Handling an event takes milliseconds: after a crash its events go to another replica within seconds.
    ack_wait: 5_000_000_000,
    max_ack_pending: 20_000,
  });

  const onEvent = async (msg: JsMsg): Promise<void> => {
    cache.delivered(msg.info.deliverySequence);
    const event = store.decodeOrTerm(msg, log);
    if (!event) return;
    await queue.run(event.runId, async () => {
      const before = cache.get(event.runId);
      const messages: [string, ChatMessage][] = [];
      let requested = false;
      const state = await cache.withEvent(event, (prior, e) => {
        messagesOf(prior, e).forEach((m, i) => messages.push([contextKey(e.runId, prior.messageCount + i), m]));
        requested ||= e.type === "RunRequested";
      });
      try {
        if (requested) {
          await store.publisher.publish(n.runIndexSubject, encodeRunIndexEntry({ runId: event.runId, at: state.createdAt }), { msgID: `index:${event.runId}` });
        }
        // Messages first: a view never points past messages that are not there yet.
        await Promise.all(messages.map(([key, m]) => put(n.contextBucket, key, encodeMessage(m))));
        if (state !== before) unwritten.add(event.runId);
        // With more of this run's events queued, the last of them writes the view. Should we die first, that
        // event comes back, finds the stored view behind, and catches up from the stream.
        if (unwritten.has(event.runId) && queue.waiting(event.runId) === 0) {
          await put(n.runsBucket, event.runId, encodeView(state));
          unwritten.delete(event.runId);
        }
      } catch (err) {
        // The fold in memory is ahead of what was stored: forget it, so the redelivered event is folded again
        // from the stored view and its messages and view are written then (else it would look done already).
        cache.drop(event.runId);
        unwritten.delete(event.runId);
        throw err;
      }
      ackSoon(msg);
    });
  };

  const loop = startConsumerLoop(nc, {
    stream: n.eventsStream,
    durable: n.consumers.projector,
    concurrency: opts.concurrency ?? 256,
    handle: onEvent,
    log,
  });
  log.info({ prefix: n.prefix }, "projector started");
  return { stop: () => loop.stop() };
}
