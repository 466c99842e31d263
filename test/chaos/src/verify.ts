import { isDeepStrictEqual } from "node:util";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import {
  DecodeError,
  decodeView,
  encodeView,
  evolve,
  initialState,
  replayLlmCalls,
  wireMessage,
  type Client,
  type RecordedEvent,
  type RunState,
} from "@smallchain/shared";

export type StreamCheck = {
  /** Every valid event, by run, in stream order. */
  streams: Map<string, RecordedEvent[]>;
  events: number;
  invalidEvents: string[];
  /** Event ids seen twice, or two results for one call or step, per run. */
  duplicates: string[];
  viewMismatches: string[];
};

/**
 * Reads the whole EVENTS stream once, validates every event with the RunEvent schema, looks for duplicates in
 * each run, and folds each run's events: the fold must equal the run's view in KV (`views`, as listed by the
 * client).
 */
export async function checkStreams(client: Client, views: RunState[]): Promise<StreamCheck> {
  const check: StreamCheck = { streams: new Map(), events: 0, invalidEvents: [], duplicates: [], viewMismatches: [] };
  await readAllRuns(client, check);
  const byId = new Map(views.map((v) => [v.runId, v]));
  for (const [runId, events] of check.streams) {
    check.duplicates.push(...duplicatesIn(runId, events));
    const want = decodeView(encodeView(events.reduce(evolve, initialState(runId))));
    const stored = byId.get(runId);
    if (!isDeepStrictEqual(stored, want)) check.viewMismatches.push(`${runId}: KV ${JSON.stringify(stored)} != fold ${JSON.stringify(want)}`);
  }
  for (const runId of byId.keys()) if (!check.streams.has(runId)) check.viewMismatches.push(`${runId}: a view without events`);
  return check;
}

/** Reads the whole EVENTS stream once, validating every message against the RunEvent schema. */
async function readAllRuns(client: Client, report: StreamCheck): Promise<void> {
  const { nc, names: n } = client;
  const runs = report.streams;
  const jsm = await jetstreamManager(nc);
  const { state } = await jsm.streams.info(n.eventsStream);
  if (state.messages === 0) return;
  const consumer = await jetstream(nc).consumers.get(n.eventsStream);
  const messages = await consumer.consume({ max_messages: 1000 });
  for await (const m of messages) {
    report.events++;
    try {
      // As every reader decodes it: the schema, its run's subject, and which of the run's subjects it is on.
      const event = client.store.decodeMsg(m);
      const list = runs.get(event.runId) ?? [];
      list.push(event);
      runs.set(event.runId, list);
    } catch (err) {
      if (!(err instanceof DecodeError)) throw err;
      report.invalidEvents.push(err.message);
    }
    if (m.seq >= state.last_seq) break;
  }
  await messages.close();
}

function duplicatesIn(runId: string, events: RecordedEvent[]): string[] {
  const found: string[] = [];
  const seen = (what: string, keys: string[]) => {
    const counts = new Map<string, number>();
    for (const k of keys) counts.set(k, (counts.get(k) ?? 0) + 1);
    for (const [k, c] of counts) if (c > 1) found.push(`${runId}: ${what} ${k} ${c} times`);
  };
  seen("event id", events.map((e) => e.id));
  seen("result for call", events.flatMap((e) => (e.type === "ToolCallCompleted" || e.type === "ToolCallFailed" ? [e.data.callId] : [])));
  seen("request of call", events.flatMap((e) => (e.type === "ToolCallRequested" ? [e.data.callId] : [])));
  seen("LLM request of step", events.flatMap((e) => (e.type === "LLMRequested" ? [String(e.data.step)] : [])));
  seen("LLM result of step", events.flatMap((e) => (e.type === "LLMResponded" || e.type === "LLMFailed" ? [String(e.data.step)] : [])));
  seen("child of call", events.flatMap((e) => (e.type === "ChildRunRequested" ? [e.data.callId] : [])));
  seen("lifecycle event", events.flatMap((e) => (["RunRequested", "RunStarted", "RunCompleted", "RunFailed"].includes(e.type) ? [e.type] : [])));
  return found;
}

/**
 * Every request the model got must carry a whole context window, in order: the messages some run's stream had
 * at one of its LLM calls (as `smallchain replay` shows them). llm-workers fold windows from the streams, and a
 * worker killed and started again (or one that never saw the run) must still send the right one, in the API's
 * wire format.
 */
export function checkLlmRequests(streams: Map<string, RecordedEvent[]>, requests: { messages: unknown[] }[]): string[] {
  const windows = new Set<string>();
  for (const events of streams.values()) for (const call of replayLlmCalls(events)) windows.add(canonical(call.messages.map(wireMessage)));
  return requests.flatMap((r, i) => (windows.has(canonical(r.messages)) ? [] : [`request ${i}: ${JSON.stringify(r.messages).slice(0, 300)} is no run's window at any LLM call`]));
}

/** JSON with the keys of every object sorted: equal values, equal text. */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) =>
    v && typeof v === "object" && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => a.localeCompare(b))) : v,
  );
}
