import { DeliverPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { DecodeError, isTerminal, type Client, type RecordedEvent } from "@smallchain/shared";

export type FollowOptions = {
  runId?: string;
  follow: boolean;
  /** Stops following when this returns true. */
  until?: (event: RecordedEvent) => boolean;
  signal?: AbortSignal;
};

/** Streams events (one run's or every run's) in stream order; with `follow`, keeps waiting for new ones. */
export async function* readEvents(client: Client, opts: FollowOptions): AsyncGenerator<RecordedEvent> {
  const n = client.names;
  const subject = opts.runId ? n.runEventsSubject(opts.runId) : n.allRunsSubject;
  const jsm = await jetstreamManager(client.nc);
  // The pending count of a consumer filtered to a wildcard can be short on NATS 2.9: checked before stopping.
  const anyAfter = async (seq: number) =>
    opts.runId ? client.store.anyAfter(opts.runId, seq) : (await jsm.streams.info(n.eventsStream)).state.last_seq > seq;
  if (!opts.follow && !(await anyAfter(0))) return;
  const consumer = await jetstream(client.nc).consumers.get(n.eventsStream, {
    filter_subjects: subject,
    deliver_policy: DeliverPolicy.All,
  });
  const messages = await consumer.consume({ max_messages: 512 });
  opts.signal?.addEventListener("abort", () => void messages.close());
  try {
    for await (const m of messages) {
      let event: RecordedEvent;
      try {
        event = client.store.decodeMsg(m);
      } catch (err) {
        if (!(err instanceof DecodeError)) throw err;
        process.stderr.write(`skipping invalid event #${m.seq}: ${err.message}\n`);
        if (!opts.follow && m.info.pending === 0 && !(await anyAfter(m.seq))) break;
        continue;
      }
      yield event;
      if (opts.until?.(event)) break;
      if (!opts.follow && m.info.pending === 0 && !(await anyAfter(m.seq))) break;
    }
  } finally {
    await messages.close();
  }
}

/** True for the event that ends a run. */
export function endsRun(event: RecordedEvent): boolean {
  return isTerminal({ status: event.type === "RunCompleted" ? "Completed" : event.type === "RunFailed" ? "Failed" : event.type === "RunCancelled" ? "Cancelled" : "Running" });
}
