import { JetStreamApiError, type JsMsg } from "@nats-io/jetstream";
import {
  EventStore,
  KeyedQueue,
  RunCache,
  ackSoon,
  msFromEnv,
  flushAcks,
  encodeRunIndexEntry,
  encodeView,
  ensureConsumer,
  decodeView,
  initialState,
  isTerminal,
  provision,
  startConsumerLoop,
  startBatchedConsumerLoop,
  callArguments,
  callKey,
  encodeWaitEntry,
  findCall,
  type RecordedEvent,
  type WaitEntry,
  type Logger,
  type Metrics,
  type Names,
  type NatsConnection,
  type RunState,
  type Service,
} from "@smallchain/shared";

type WaitChange = [key: string, entry: WaitEntry | null];

/** How an event changes the list of calls waiting for people or the outside (`get approvals`). */
function waitChangesOf(prior: RunState, event: RecordedEvent): WaitChange[] {
  const base = (callId: string) => {
    const call = findCall(prior, callId);
    return {
      runId: event.runId,
      callId,
      tool: call?.tool ?? "",
      agent: prior.agentName,
      since: event.at,
      ...(prior.name !== undefined && { runName: prior.name }),
    };
  };
  const waitingIn = (callId: string) => {
    const status = findCall(prior, callId)?.status;
    return status === "awaitingApproval" || status === "awaitingHuman" || status === "awaitingCallback";
  };
  switch (event.type) {
    case "ToolCallAwaitingApproval": {
      const d = event.data;
      const args = callArguments(findCall(prior, d.callId)?.arguments ?? "");
      return [[callKey(event.runId, d.callId), { ...base(d.callId), kind: "approval", args, digest: d.digest, ...(d.dueAt !== undefined && { dueAt: d.dueAt }) }]];
    }
    case "HumanInputRequested": {
      const d = event.data;
      return [[callKey(event.runId, d.callId), { ...base(d.callId), kind: "human", question: d.question, ...(d.dueAt !== undefined && { dueAt: d.dueAt }) }]];
    }
    case "ToolCallAwaitingCallback": {
      const d = event.data;
      return [[callKey(event.runId, d.callId), { ...base(d.callId), kind: "callback", ...(d.dueAt !== undefined && { dueAt: d.dueAt }) }]];
    }
    case "ToolCallApproved":
    case "ToolCallRejected":
    case "HumanInputReceived":
    case "TimerFired":
    case "ToolCallCompleted":
    case "ToolCallFailed":
      return waitingIn(event.data.callId) ? [[callKey(event.runId, event.data.callId), null]] : [];
    case "RunCompleted":
    case "RunFailed":
    case "RunCancelled":
      return prior.turn.phase === "tools" ? prior.turn.calls.filter((c) => waitingIn(c.callId)).map((c): WaitChange => [callKey(event.runId, c.callId), null]) : [];
    default:
      return [];
  }
}

export type ProjectorOptions = {
  nc: NatsConnection;
  names: Names;
  log: Logger;
  concurrency?: number;
  /** The process's metrics: events handled, runs by status (see `smallchain_runs`), redeliveries. */
  metrics?: Pick<Metrics, "service"> | undefined;
  /** How long a run's stored view may trail its events (default SC_VIEW_DELAY_MS, else 50 ms); see below. */
  viewDelayMs?: number;
  /** Pull events every this many ms, in batches (default SC_PROJECTOR_PULL_MS, else 100); 0: a standing pull. */
  pullMs?: number;
};

/**
 * Folds every run's events into the KV views: `runs` (one run view per run), `waits` and the run index. (Spend
 * per budget hour is recorded by the scheduler, before the decision that may read it.)
 * Idempotent by sequence: a view records the last sequence folded into it, so a redelivered event changes
 * nothing. (The context window is not a view: whoever needs it folds it from the run's stream.)
 *
 * A busy run's view is written at most once per `viewDelayMs`, with everything folded by then, and its events
 * are acked only once the view holding them is stored: a crash loses nothing, the events come back and are
 * folded again from the stored view. Writing the view at every event was most of the projector's work and a
 * third of what the NATS server stored per agent step.
 *
 * A view is written only over the revision it was folded from (KV's last-sequence guard), so replicas racing
 * on one run never store an older view over a newer one: the loser folds again from the stored view.
 */
export async function startProjector(opts: ProjectorOptions): Promise<Service> {
  const { nc, names: n, log } = opts;
  const metrics = opts.metrics?.service("projector");
  const buckets = await provision(nc, n);
  const store = await EventStore.open(nc, n);
  const queue = new KeyedQueue();
  // A KV put is a publish on the bucket's subject; the event store's publisher does it without per-request overhead.
  const put = (bucket: string, key: string, value: Uint8Array, expectedRevision?: number) =>
    store.publisher.publish(`$KV.${bucket}.${key}`, value, expectedRevision === undefined ? {} : { expectedLastSubjectSequence: expectedRevision });
  const delayMs = opts.viewDelayMs ?? msFromEnv("SC_VIEW_DELAY_MS", 50);
  // Runs whose view in memory is ahead of the stored one, with the events it holds (acked once it is stored).
  const dirty = new Map<string, { state: RunState; msgs: JsMsg[] }>();
  // Views being stored now (one write per run at a time): an event folded already waits for it too.
  const writing = new Set<string>();
  // The stored revision of each view held in memory: the next write expects it (0: no view yet).
  const revisions = new Map<string, number>();
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const write = async (runId: string, entry: { state: RunState; msgs: JsMsg[] }): Promise<void> => {
    writing.add(runId);
    try {
      const expected = revisions.get(runId);
      const ack = await put(n.runsBucket, runId, encodeView(entry.state), expected);
      revisions.set(runId, ack.seq);
      for (const m of entry.msgs) ackSoon(m);
      // An ended run is done with: a late event (a cancel after the end) loads its view again.
      if (isTerminal(entry.state) && !dirty.has(runId)) {
        revisions.delete(runId);
        cache.drop(runId);
      }
    } catch (err) {
      if (err instanceof JetStreamApiError && err.code === 10071) {
        // Another replica stored a view of this run since we loaded it: fold again from that one. Our events
        // come back (nak) and find it.
        log.info({ runId }, "the run's view was stored elsewhere meanwhile; folding again from it");
        await queue.run(runId, async () => {
          cache.drop(runId);
          revisions.delete(runId);
          const later = dirty.get(runId);
          dirty.delete(runId);
          for (const m of [...entry.msgs, ...(later?.msgs ?? [])]) m.nak();
        });
        return;
      }
      // Kept for the next write: the fold in memory is right, storing it failed (NATS is away). Should we die
      // first, the events were not acked and come back.
      log.warn({ runId, err: (err as Error).message }, "storing a run view failed; trying again");
      const later = dirty.get(runId);
      dirty.set(runId, { state: later?.state ?? entry.state, msgs: [...entry.msgs, ...(later?.msgs ?? [])] });
      schedule();
    } finally {
      writing.delete(runId);
    }
  };
  const flush = async (): Promise<void> => {
    timer = undefined;
    const batch = [...dirty].filter(([runId]) => !writing.has(runId));
    for (const [runId] of batch) dirty.delete(runId);
    // A run whose previous write is still out waits for the next round.
    if (dirty.size > 0) schedule();
    await Promise.all(batch.map(([runId, entry]) => write(runId, entry)));
  };
  const schedule = () => {
    if (timer === undefined && !stopped) timer = setTimeout(() => void flush(), delayMs);
  };
  const cache = new RunCache(store, log, {
    // A run's first event, delivered for the first time: there is no view yet (should there be one, the write
    // expecting none fails and the event comes back to be folded over it).
    loadInitial: async (runId, firstEvent) => {
      if (firstEvent) {
        revisions.set(runId, 0);
        return initialState(runId);
      }
      const entry = await buckets.runs.get(runId);
      revisions.set(runId, entry?.revision ?? 0);
      return entry?.operation === "PUT" ? decodeView(entry.value) : initialState(runId);
    },
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
    cache.delivered(msg.info);
    const event = store.decodeOrTerm(msg, log);
    if (!event) return;
    metrics?.event(event.type);
    await queue.run(event.runId, async () => {
      const before = cache.get(event.runId);
      const waitChanges: WaitChange[] = [];
      let requested = false;
      // The state before the first event this call folds, if it folds any: the run's status moved from it to ours.
      let first: RunState | undefined;
      try {
        const state = await cache.withEvent(event, (prior, e) => {
          waitChanges.push(...waitChangesOf(prior, e));
          requested ||= e.type === "RunRequested";
          first ??= prior;
        }, msg.info.deliveryCount === 1);
        if (first) metrics?.runTransition(first.lastSeq === 0 ? undefined : first.status, state.status);
        for (const [key, entry] of waitChanges) {
          if (entry) await buckets.waits.put(key, encodeWaitEntry(entry));
          else await buckets.waits.delete(key);
        }
        if (requested) {
          await store.publisher.publish(n.runIndexSubject, encodeRunIndexEntry({ runId: event.runId, at: state.createdAt }), { msgID: `index:${event.runId}` });
        }
        const pending = dirty.get(event.runId);
        if (state !== before || pending || writing.has(event.runId)) {
          // The view to store holds this event: the event is acked when it is stored. (An entry in `dirty` is not being
          // written: a write takes its entry out first.)
          if (pending) {
            pending.state = state;
            pending.msgs.push(msg);
          } else {
            dirty.set(event.runId, { state, msgs: [msg] });
          }
          schedule();
          return;
        }
      } catch (err) {
        // The fold in memory may be ahead of what was stored: forget it, so the redelivered event is folded again
        // from the stored view (proven against the stream) and its side entries and view are written then (else
        // it would look done already, or the run's next event would be folded past it).
        cache.drop(event.runId);
        throw err;
      }
      // Folded before, and its view stored since.
      ackSoon(msg);
    });
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
  log.info({ prefix: n.prefix, viewDelayMs: delayMs, pullMs }, "projector started");
  return {
    async stop() {
      await loop.stop();
      // Every view folded so far is stored before we go: nothing waits for a redelivery.
      stopped = true;
      clearTimeout(timer);
      await flush();
      flushAcks();
    },
  };
}
