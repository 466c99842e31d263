import { randomBytes } from "node:crypto";
import { jetstreamManager, type JsMsg } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import {
  ApprovalInput,
  CancelInput,
  ResumeInput,
  budgetHourMs,
  spendBetween,
  recordSpend,
  windowOf,
  CallbackResult,
  Control,
  ControlError,
  HumanAnswer,
  callArguments,
  callKey,
  encodeWakeUp,
  findCall,
  initialState,
  inSpan,
  startRunTrace,
  type Msg,
  type WakeUp,
  ConcurrencyError,
  ConfigStore,
  DecodeError,
  EventStore,
  KeyedQueue,
  Projection,
  QuietRuns,
  QUIET_SWEEP_EVERY_MS,
  RunCache,
  ResolveError,
  TaskRequest,
  LlmCommand,
  ToolCommand,
  ackSoon,
  flushAcks,
  commandHeaders,
  decode,
  encodeChecked,
  deriveRunId,
  ensureConsumer,
  awaitsWorkers,
  isCopying,
  isTerminal,
  laneOf,
  laneSeq,
  provision,
  resolveAgent,
  runRequested,
  schedulerProjectsFromEnv,
  startConsumerLoop,
  type ConsumerLoop,
  type Logger,
  type Metrics,
  type Names,
  type NatsConnection,
  type RecordedEvent,
  type RunState,
  type Service,
} from "@smallchain/shared";
import { BUDGET_TIMER, decide, wantsLlmCall, type DecideInput } from "./decide.js";
import { effectsOf, withCommands, type Effect } from "./effects.js";
import { WakeUps } from "./wakeups.js";
import { BoundedMap, CarriedOut } from "./carried-out.js";

export type { Service };

export type SchedulerOptions = {
  nc: NatsConnection;
  names: Names;
  log: Logger;
  /** Events handled at once (across runs; a run's own events are always handled in order). */
  concurrency?: number;
  now?: () => number;
  /** The process's metrics: events handled, decisions and their conflicts, redeliveries. */
  metrics?: Metrics | undefined;
  /** Length of a budget "hour" (default: an hour, scaled by SC_BUDGET_WINDOW_SCALE); readers of the spend bucket (the CLI) must use the same. */
  budgetHourMs?: number;
  /**
   * Fold the events this scheduler handles into the views as well (see Projection), so no projector needs to run
   * (default: SC_SCHEDULER_PROJECTS=1). Every event comes to the scheduler anyway, decoded once here, and its own
   * decisions without decoding: a projector of its own costs the NATS server a delivery and an ack of every event,
   * and the projector a decoding of it. The scheduler's messages are then acked once a stored view holds them.
   */
  projects?: boolean;
  /** Projecting: how long a decision recorded here is kept whole for its echo, to be folded without decoding (5 s; 0: never). */
  keepRecordedMs?: number;
};

const MAX_DECIDE_ATTEMPTS = 8;

/** Whether a worker kind's consumer of decisions is done with the message at a stream sequence (acked, or passed over when it was created). */
type HandledBy = Record<"llm" | "tool", (seq: number) => boolean>;

/**
 * Decides every run's next step. Reads events through a durable consumer shared by all scheduler replicas,
 * folds them into run states, and appends decisions guarded by the run's last sequence, so two schedulers
 * can never take the same decision twice. Commands are published after their event is stored (the run's
 * stream is the outbox); a redelivered event re-publishes them under the same Nats-Msg-Id.
 */
export async function startScheduler(opts: SchedulerOptions): Promise<Service> {
  const { nc, names: n, log } = opts;
  const now = opts.now ?? Date.now;
  const metrics = opts.metrics?.service("scheduler");
  const buckets = await provision(nc, n);
  const store = await EventStore.open(nc, n);
  const config = await ConfigStore.open(buckets.config, { watch: true });
  const cache = new RunCache(store, log);
  const queue = new KeyedQueue();
  const projects = opts.projects ?? schedulerProjectsFromEnv();
  const projection = projects ? new Projection({ names: n, store, buckets, log, metrics }) : undefined;
  // Events this process appended and already carried out, by id; their echo from the consumer is just acked (or,
  // projecting, folded into the views as recorded here, without decoding it: kept whole for 5 s).
  const carriedOut = new CarriedOut(100_000, opts.keepRecordedMs ?? 5_000, Date.now);
  // Commands sent again because their decisions' deliveries were lost: once each (see resendLost).
  const resent = new BoundedMap<true>(10_000);
  /**
   * By run, the span of stream sequences a decision recorded here covered, from the first after the state it was made
   * from to its last event, with its own events' sequences: anything else of the run in it landed unseen. With the
   * lanes, that can be a write on another lane from a state that had not seen the result which moved the run to ours
   * (docs/performance.md, session 18). The state recorded passed over it, so when it comes, the run is read again whole.
   */
  const passedOver = new BoundedMap<{ from: number; to: number; ours: Set<number> }>(10_000);
  const jsm = await jetstreamManager(nc);

  await ensureConsumer(nc, n.eventsStream, {
    durable_name: n.consumers.scheduler,
    filter_subject: n.allRunsSubject,
    // Handling an event takes milliseconds: after a crash its events go to another replica within seconds.
    ack_wait: 5_000_000_000,
    max_ack_pending: 20_000,
  });
  await ensureConsumer(nc, n.ingressStream, {
    durable_name: n.consumers.ingress,
    filter_subject: n.allTasksSubject,
    ack_wait: 30_000_000_000,
    max_deliver: 5,
  });

  const newToken = () => randomBytes(16).toString("hex");
  const hourMs = opts.budgetHourMs ?? budgetHourMs();
  const spendOf = (kind: "run" | "agent", name: string, since: number, until: number) => spendBetween(buckets.spend, kind, name, since, until, hourMs);
  /**
   * The spend a decision needs, read only when it needs it: the agent's budget windows before an LLM call of
   * an agent with a budget, and spend since a time for check_current_spend_since. Runs without either read nothing.
   */
  const resolveSpend = async (state: RunState, input: DecideInput): Promise<DecideInput> => {
    const agent = state.agent;
    if (!agent) return input;
    const open = state.turn.phase === "tools" ? state.turn.calls.filter((c) => c.status === "pending" || c.status === "requested" || c.status === "approved") : [];
    const builtinOf = (tool: string) => {
      const t = agent.tools.find((x) => x.name === tool);
      return t?.kind === "builtin" ? t.builtin : undefined;
    };
    const checks = open.filter((c) => builtinOf(c.tool) === "check_current_spend_since");
    const spawns = open.filter((c) => builtinOf(c.tool) === "spawn_task");
    const needsBudget = agent.budget !== undefined && (wantsLlmCall(state) || checks.length > 0);
    if (!needsBudget && checks.length === 0 && spawns.length === 0) return input;
    const t = input.now;
    const next: DecideInput = { ...input };
    if (agent.budget && needsBudget) {
      const [hour, day] = await Promise.all([
        spendOf("agent", agent.name, windowOf("hour", t, hourMs).start, t),
        spendOf("agent", agent.name, windowOf("day", t, hourMs).start, t),
      ]);
      next.budget = { hourMs, hourUsd: hour.costUsd, dayUsd: day.costUsd };
    }
    if (checks.length > 0) {
      next.spendSince = {};
      for (const c of checks) {
        const time = (callArguments(c.arguments) as { time?: unknown } | null)?.time;
        const since = typeof time === "string" ? Date.parse(time) : typeof time === "number" ? time : Number.NaN;
        if (!Number.isFinite(since)) continue;
        const [run, ofAgent] = await Promise.all([spendOf("run", state.runId, since, t), spendOf("agent", agent.name, since, t)]);
        next.spendSince[c.callId] = { since, run, agent: ofAgent };
      }
    }
    if (spawns.length > 0) {
      next.taskAgents = {};
      for (const c of spawns) {
        const task = (callArguments(c.arguments) as { task?: unknown } | null)?.task;
        if (typeof task === "string") next.taskAgents[task] = (await config.fetch("task", task))?.agent;
      }
    }
    return next;
  };
  const resolveInput = async (state: RunState): Promise<DecideInput> => {
    if (state.status !== "Requested") return resolveSpend(state, { now: now(), newToken });
    await config.prefetchAgent(state.agentName);
    try {
      return { now: now(), agent: { ok: true, spec: resolveAgent(state.agentName, config.lookup()) } };
    } catch (err) {
      if (err instanceof ResolveError) return { now: now(), agent: { ok: false, error: err.message } };
      throw err;
    }
  };

  const carryOut = async (effects: Effect[]): Promise<void> => {
    await Promise.all(effects.map((e) => perform(store, n, buckets, hourMs, e)));
  };

  /**
   * The run's state after a write to one of its lanes was refused: what came after it. If nothing did, the state held
   * passed over an event (see passedOver) and the run is read again whole.
   */
  const caughtUp = async (state: RunState): Promise<RunState> => {
    const next = await cache.catchUp(state);
    if (next.lastSeq > state.lastSeq) return next;
    log.debug({ runId: state.runId }, "a lane moved, yet nothing came after the state held; reading the run again whole");
    passedOver.delete(state.runId);
    cache.drop(state.runId);
    return cache.catchUp(initialState(state.runId));
  };

  /** Decide, append, carry out; again until the run waits for something outside. */
  const advance = async (initial: RunState): Promise<void> => {
    let state = initial;
    // Each round either records a decision (the run moves on) or learns the stream moved; conflicts are bounded.
    for (let conflicts = 0; conflicts < MAX_DECIDE_ATTEMPTS; ) {
      // The decision carries the commands it sends out: the workers read them from the run's stream.
      const events = withCommands(state, decide(state, await resolveInput(state)));
      if (events.length === 0) return;
      // Every outcome of deciding at this state goes to its lane: two schedulers deciding it write to one lane.
      const lane = laneOf(state);
      let results;
      try {
        results = await store.appendDecision(events, laneSeq(state, lane), lane);
      } catch (err) {
        if (!(err instanceof ConcurrencyError)) throw err;
        conflicts++;
        metrics?.decisionConflict();
        log.debug({ runId: state.runId, conflicts }, "run moved on while deciding; catching up");
        state = await caughtUp(state);
        continue;
      }
      if (results.some((r) => r.duplicate)) {
        // Someone else recorded this decision: take the stream's word for what happened.
        conflicts++;
        metrics?.decisionConflict();
        state = await caughtUp(state);
        continue;
      }
      metrics?.decision();
      const recorded: RecordedEvent[] = results.map((r, i) => ({ ...events[i]!, seq: r.seq, ...(lane !== "ev" && { lane }) }));
      const prior = state;
      // A worker's result of one of the run's calls may have landed before or among the decision's events unseen (the
      // guard covers decisions only): when a call was out, or the decision's first events ask for calls (another
      // scheduler handling their echo sends those out at once), looked for while the effects are carried out, and
      // folded in stream order if found. Only when something else landed in that span at all.
      const last = recorded.at(-1)!.seq;
      const unseen =
        last - prior.lastSeq > recorded.length && (awaitsWorkers(prior) || recorded.length > 1)
          ? store.resultBetween(prior.runId, prior.lastSeq + 1, last)
          : undefined;
      unseen?.catch(() => {});
      if (last - prior.lastSeq > recorded.length) passedOver.set(prior.runId, { from: prior.lastSeq + 1, to: last, ours: new Set(recorded.map((e) => e.seq)) });
      else passedOver.delete(prior.runId);
      state = cache.record(state, recorded);
      const effects = recorded.flatMap((e) => effectsOf(state, e, now()));
      for (const e of recorded) {
        if (projection) carriedOut.keep(e);
        else carriedOut.set(e.id, true);
      }
      try {
        try {
          await carryOut(effects);
        } catch (err) {
          // Their echoes must then carry the effects out again.
          for (const e of recorded) carriedOut.delete(e.id);
          throw err;
        }
        if (unseen && (await unseen)) {
          state = await cache.catchUp(prior);
          passedOver.delete(prior.runId);
        }
      } catch (err) {
        // The state recorded may have passed over a result the look was to find: if the look did not finish, nothing
        // of the run is held, and its next event reads it whole (kept, it would wait forever for what it passed over).
        if (unseen) cache.drop(prior.runId);
        throw err;
      }
    }
    log.warn({ runId: state.runId }, "gave up deciding after repeated conflicts; the next event retries");
  };

  const onEvent = async (msg: JsMsg): Promise<void> => {
    cache.delivered(msg.info);
    projection?.delivered(msg.info);
    // Our own decisions come back through the consumer too. Their stored Nats-Msg-Id is the event id, so they
    // are recognised without decoding; in the run's queue, after the decision's effects were carried out.
    const msgId = msg.headers?.get("Nats-Msg-Id");
    await queue.run(n.runIdOfSubject(msg.subject), async () => {
      const own = msgId ? carriedOut.take(msgId) : undefined;
      if (own !== undefined) {
        if (!projection) {
          ackSoon(msg);
          return;
        }
        // Folded into the views as recorded; decoded for them only once the recorded event is no longer kept.
        const event = own === true ? store.decodeOrTerm(msg, log) : own;
        if (event) await projection.project(event, msg);
        return;
      }
      const event = store.decodeOrTerm(msg, log);
      if (!event) return;
      metrics?.event(event.type);
      const span = passedOver.get(event.runId);
      if (span && event.seq >= span.from && event.seq <= span.to && !span.ours.has(event.seq)) {
        // It landed beside a decision recorded here, which did not see it: the state held passed over it.
        passedOver.delete(event.runId);
        cache.drop(event.runId);
      }
      try {
        const before = cache.get(event.runId);
        const state = await cache.withEvent(event);
        await inSpan(`scheduler ${event.type}`, state.trace, { "smallchain.run_id": event.runId, "smallchain.seq": event.seq }, async () => {
          if (state.forkOf && !isCopying(state) && (!before || isCopying(before))) {
            // A fork's copy just completed (or this process cannot tell whether its effects were carried out): the
            // effects its copied events held back are carried out now; those already done are skipped or deduplicated.
            const events = await store.readRun(event.runId);
            await carryOut(events.flatMap((e) => effectsOf(state, e, now())));
          } else {
            await carryOut(effectsOf(state, event, now()));
          }
          await advance(state);
        });
        const latest = cache.get(event.runId);
        if (latest && isTerminal(latest)) {
          cache.drop(event.runId);
          quiet.forget(event.runId);
        } else {
          quiet.touch(event.runId);
        }
      } catch (err) {
        // The event comes back: until then the run's next event must not be taken as the one after what we hold.
        cache.distrust(event.runId);
        throw err;
      }
      // Done with it: acked now, or, projecting, once a stored view holds its event.
      if (projection) await projection.project(event, msg);
      else ackSoon(msg);
    });
  };

  /**
   * A safety net for an event no delivery brings (seen once when a cluster node died holding the consumer's
   * state): a run of ours that has been quiet is read once past what we hold, after 10 s, then ever more rarely
   * (20 s, 40 s, ... up to 10 min of quiet). Newer events found are folded, their effects carried out (again,
   * deduplicated by id) and the run decided. A run that waits for a model, a person or a timer costs a handful
   * of direct gets per quiet spell.
   */
  const quiet = new QuietRuns(now);

  /** What each worker kind's consumer of decisions is done with, as it says now. */
  const handledByWorkers = async (): Promise<HandledBy> => {
    const of = async (durable: string) => {
      const info = await jsm.consumers.info(n.eventsStream, durable);
      return (seq: number) => seq <= info.ack_floor.stream_seq || (info.num_ack_pending === 0 && seq <= info.delivered.stream_seq);
    };
    const [llm, tool] = await Promise.all([of(n.consumers.llmDecisions), of(n.consumers.toolDecisions)]);
    return { llm, tool };
  };

  /**
   * A quiet run still waits for a worker's result, though that worker kind's consumer is done with the decision that
   * carried the command (asked before the run was read, and a worker acks a command only once its result is stored):
   * the delivery was lost (seen on NATS 2.9 when the stream's leader was killed: the consumer showed nothing pending or
   * unacknowledged). The command goes out again on the COMMANDS stream, once per process; its result's id and the
   * effects bucket keep a call from counting twice.
   */
  const resendLost = async (state: RunState, handled: HandledBy): Promise<void> => {
    const kind = state.turn.phase === "llm" ? "llm" : "tool";
    if (!awaitsWorkers(state) || !handled[kind](laneSeq(state, kind))) return;
    const carried = (await store.readRun(state.runId)).filter((e) => e.command && (e.type === "LLMRequested" ? "llm" : "tool") === kind && handled[kind](e.seq));
    // Without the command it carried, a decision's effect is to publish that command (see effectsOf).
    const commands = carried
      .flatMap(({ command: _carried, ...e }) => effectsOf(state, e, now()))
      .filter((x): x is Extract<Effect, { kind: "llm" | "tool" }> => (x.kind === "llm" || x.kind === "tool") && !resent.has(x.command.id));
    if (commands.length === 0) return;
    log.warn(
      { runId: state.runId, commands: commands.map((c) => c.command.id) },
      "a worker's consumer is done with commands whose results never came (a lost delivery); sending them again",
    );
    await carryOut(commands);
    for (const c of commands) resent.set(c.command.id, true);
  };

  const sweep = setInterval(() => {
    // Asked once per sweep, before any run of it is read.
    let handled: Promise<HandledBy | undefined> | undefined;
    for (const [runId, held] of quiet.due((id) => cache.get(id))) {
      const workers = awaitsWorkers(held)
        ? (handled ??= handledByWorkers().catch((err: unknown) => void log.warn({ err }, "reading the workers' consumers failed")))
        : undefined;
      void queue
        .run(runId, async () => {
          const before = cache.get(runId);
          if (!before) return;
          const done = await workers;
          const fresh: RecordedEvent[] = [];
          const state = await cache.catchUp(before, (_prior, e) => fresh.push(e));
          if (fresh.length === 0) {
            if (done) await resendLost(state, done);
            return;
          }
          log.warn({ runId, from: before.lastSeq, to: state.lastSeq }, "found events of a quiet run that no delivery brought; deciding on them");
          await carryOut(fresh.flatMap((e) => effectsOf(state, e, now())));
          await advance(state);
        })
        .catch((err: unknown) => log.warn({ err, runId }, "checking a quiet run failed; trying again later"));
    }
  }, QUIET_SWEEP_EVERY_MS);
  sweep.unref();

  /** A timer is due: decide the run again (the decision sees the deadline passed), then forget the timer. */
  const wake = async (w: WakeUp, key: string): Promise<void> => {
    await queue.run(w.runId, async () => {
      const state = await cache.catchUp(cache.get(w.runId) ?? initialState(w.runId));
      await advance(state);
      const latest = cache.get(w.runId) ?? state;
      // A budget pause waits for its window's end; a call for its deadline.
      const dueAt = w.callId === BUDGET_TIMER ? (latest.status === "Paused" ? latest.pause?.until : undefined) : findCall(latest, w.callId)?.deadline?.dueAt;
      if (dueAt !== undefined && !isTerminal(latest) && dueAt > now()) {
        wakeUps.arm(key, { ...w, dueAt });
      } else if (dueAt === undefined || isTerminal(latest)) {
        await buckets.timers.delete(key);
      }
      if (isTerminal(latest)) cache.drop(w.runId);
    });
  };
  const wakeUps = new WakeUps(buckets.timers, wake, log, now);
  await wakeUps.start();

  // Approvals, answers and callback results from any NATS client: request/reply, so a refusal reaches the sender.
  const control = new Control(store, buckets.runs);
  const onControl = async (msg: Msg): Promise<void> => {
    const [, kind, ...rest] = msg.subject.slice(n.prefix.length).split(".");
    const contentType = msg.headers?.get("Content-Type");
    let reply: Record<string, unknown>;
    try {
      let accepted;
      if (kind === "approval" && rest.length === 2) {
        accepted = await control.approval(rest[0]!, rest[1]!, decode(ApprovalInput, msg.data, `approval on ${msg.subject}`, contentType));
      } else if (kind === "respond" && rest.length === 2) {
        accepted = await control.respond(rest[0]!, rest[1]!, decode(HumanAnswer, msg.data, `answer on ${msg.subject}`, contentType));
      } else if (kind === "resume" && rest.length === 1) {
        accepted = await control.resume(rest[0]!, msg.data.length === 0 ? {} : decode(ResumeInput, msg.data, `resume on ${msg.subject}`, contentType));
      } else if (kind === "cancel" && rest.length === 1) {
        accepted = await control.cancel(rest[0]!, msg.data.length === 0 ? {} : decode(CancelInput, msg.data, `cancel on ${msg.subject}`, contentType));
      } else if (kind === "callback" && rest.length === 1) {
        accepted = await control.callback(rest[0]!, decode(CallbackResult, msg.data, `callback result on ${msg.subject}`, contentType));
      } else {
        throw new ControlError("not_found", `no such control subject: ${msg.subject}`);
      }
      reply = { ok: true, runId: accepted.runId, callId: accepted.callId, event: accepted.event.type, seq: accepted.event.seq };
      log.info({ subject: msg.subject, runId: accepted.runId, callId: accepted.callId, event: accepted.event.type }, "accepted input for a waiting call");
    } catch (err) {
      if (!(err instanceof ControlError || err instanceof DecodeError)) {
        log.error({ err, subject: msg.subject }, "handling a control request failed");
        reply = { ok: false, code: "error", error: `internal error: ${(err as Error).message}` };
      } else {
        const code = err instanceof ControlError ? err.code : "invalid";
        log.warn({ subject: msg.subject, code, err: err.message }, "refused input for a waiting call");
        reply = { ok: false, code, error: err.message };
      }
    }
    if (msg.reply) msg.respond(JSON.stringify(reply));
  };
  const controlSubs = n.controlSubjects.map((subject) =>
    nc.subscribe(subject, { queue: n.controlQueue, callback: (err, msg) => (err ? log.error({ err }, "control subscription failed") : void onControl(msg)) }),
  );

  const onTask = async (msg: JsMsg): Promise<void> => {
    const taskName = n.taskOfSubject(msg.subject);
    let request: TaskRequest;
    try {
      request = msg.data.length === 0 ? {} : decode(TaskRequest, msg.data, `task request on ${msg.subject}`, msg.headers?.get("Content-Type"));
    } catch (err) {
      if (err instanceof DecodeError) {
        log.warn({ subject: msg.subject, err: err.message }, "refusing an invalid task request");
        msg.term();
        return;
      }
      throw err;
    }
    const task = await config.fetch("task", taskName);
    if (!task) {
      const known = config.lookup().names("task").join(", ") || "none";
      log.warn({ subject: msg.subject }, `task "${taskName}" not found in the applied config (tasks: ${known}); request dropped`);
      msg.term();
      return;
    }
    const runId = request.runId ?? deriveRunId("ingress", n.ingressStream, String(msg.seq), String(msg.info.timestampNanos));
    const event = runRequested(
      runId,
      now(),
      { agent: task.agent, task: task.name, input: request.message ?? task.user_message, name: request.name, limits: request.limits },
      startRunTrace(runId, { "smallchain.task": task.name }, msg.headers?.get("traceparent") || undefined),
    );
    try {
      await store.append(event, 0);
      log.info({ runId, task: taskName }, "run requested from ingress");
    } catch (err) {
      if (!(err instanceof ConcurrencyError)) throw err;
      log.info({ runId }, "run already exists; ingress request was a repeat");
    }
    ackSoon(msg);
  };

  const concurrency = opts.concurrency ?? 256;
  const loops: ConsumerLoop[] = [
    startConsumerLoop(nc, { stream: n.eventsStream, durable: n.consumers.scheduler, concurrency, handle: onEvent, invalid: (m) => store.invalid(m), log, metrics }),
    startConsumerLoop(nc, { stream: n.ingressStream, durable: n.consumers.ingress, concurrency: 16, handle: onTask, log, metrics }),
  ];
  log.info({ prefix: n.prefix }, "scheduler started");
  return {
    async stop() {
      wakeUps.stop();
      clearInterval(sweep);
      for (const sub of controlSubs) sub.unsubscribe();
      await Promise.all(loops.map((l) => l.stop()));
      // Every view folded so far is stored before we go: nothing waits for a redelivery.
      await projection?.stop();
      flushAcks();
    },
  };
}

async function perform(store: EventStore, n: Names, buckets: { timers: KV; cancelled: KV; spend: KV }, hourMs: number, effect: Effect): Promise<void> {
  const { timers } = buckets;
  switch (effect.kind) {
    case "llm":
      await store.publisher.publish(n.llmCommandSubject, encodeChecked(LlmCommand, effect.command, `command ${effect.command.id}`), {
        msgID: effect.command.id,
        headers: commandHeaders(),
      });
      return;
    case "tool":
      await store.publisher.publish(n.toolCommandSubject(effect.command.tool.kind), encodeChecked(ToolCommand, effect.command, `command ${effect.command.id}`), {
        msgID: effect.command.id,
        headers: commandHeaders(),
      });
      return;
    case "timer":
      await timers.put(callKey(effect.runId, effect.callId), encodeWakeUp({ runId: effect.runId, callId: effect.callId, dueAt: effect.dueAt }));
      return;
    case "untimer":
      await timers.delete(callKey(effect.runId, effect.callId));
      return;
    case "cancelled":
      await buckets.cancelled.put(effect.runId, new Uint8Array());
      return;
    case "spend":
      await recordSpend(buckets.spend, effect.where, effect.seq, effect.at, hourMs, effect.spend);
      return;
    case "append":
      try {
        await store.append(effect.event, effect.expectNew ? 0 : undefined);
      } catch (err) {
        // The child run exists already: this effect was carried out before.
        if (!(effect.expectNew && err instanceof ConcurrencyError)) throw err;
      }
      return;
  }
}
