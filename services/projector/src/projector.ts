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
  callArguments,
  callKey,
  encodeWaitEntry,
  findCall,
  budgetHourMs,
  recordSpend,
  type ChatMessage,
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
  metrics?: Metrics | undefined;
  /** Length of a budget "hour" (default: an hour, scaled by SC_BUDGET_WINDOW_SCALE); the scheduler's must match. */
  budgetHourMs?: number;
};

/**
 * Folds every run's events into the KV views: `runs` (one run view per run) and `context` (one entry per
 * message of the context window). Idempotent by sequence: a view records the last sequence folded into it,
 * and a message's key is its index, so a redelivered event rewrites the same values.
 */
export async function startProjector(opts: ProjectorOptions): Promise<Service> {
  const { nc, names: n, log } = opts;
  const metrics = opts.metrics?.service("projector");
  const buckets = await provision(nc, n);
  const store = await EventStore.open(nc, n);
  const queue = new KeyedQueue();
  const hourMs = opts.budgetHourMs ?? budgetHourMs();
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
    cache.delivered(msg.info);
    const event = store.decodeOrTerm(msg, log);
    if (!event) return;
    metrics?.event(event.type);
    await queue.run(event.runId, async () => {
      const before = cache.get(event.runId);
      const messages: [string, ChatMessage][] = [];
      const waitChanges: WaitChange[] = [];
      let requested = false;
      const spends: (() => Promise<void>)[] = [];
      // The state before the first event this call folds, if it folds any: the run's status moved from it to ours.
      let first: RunState | undefined;
      try {
        const state = await cache.withEvent(event, (prior, e) => {
          messagesOf(prior, e).forEach((m, i) => messages.push([contextKey(e.runId, prior.messageCount + i), m]));
          waitChanges.push(...waitChangesOf(prior, e));
          requested ||= e.type === "RunRequested";
          // Priced calls count toward the run's, agent's and task's spend per budget hour (windowed budgets read it).
          if (e.type === "LLMResponded" && e.data.costUsd !== undefined) {
            const spend = { tokens: e.data.usage.promptTokens + e.data.usage.completionTokens, costUsd: e.data.costUsd };
            const where = { runId: e.runId, agent: prior.agentName, task: prior.task };
            spends.push(() => recordSpend(buckets.spend, where, e.seq, e.at, hourMs, spend));
          }
          first ??= prior;
        });
        if (first) metrics?.runTransition(first.lastSeq === 0 ? undefined : first.status, state.status);
        await Promise.all(spends.map((record) => record()));
        for (const [key, entry] of waitChanges) {
          if (entry) await buckets.waits.put(key, encodeWaitEntry(entry));
          else await buckets.waits.delete(key);
        }
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
        // The fold in memory may be ahead of what was stored: forget it, so the redelivered event is folded again
        // from the stored view (proven against the stream) and its messages and view are written then (else it
        // would look done already, or the run's next event would be folded past it).
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
    metrics,
  });
  log.info({ prefix: n.prefix }, "projector started");
  return { stop: () => loop.stop() };
}
