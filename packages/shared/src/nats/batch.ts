import type { JsMsg } from "@nats-io/jetstream";
import { msFromEnv } from "../env.js";

let queued: (() => void)[] = [];
let scheduled = false;
let acks: Pick<JsMsg, "ack">[] = [];
let ackTimer: NodeJS.Timeout | undefined;

/** How long an ack may wait for a send to ride along with (SC_ACK_DELAY_MS, default 20). */
const ACK_DELAY_MS = msFromEnv("SC_ACK_DELAY_MS", 20);

function flush(): void {
  const now = queued;
  queued = [];
  scheduled = false;
  for (const fn of now) fn();
  flushAcks();
}

/**
 * Runs `fn` at the end of this event-loop turn, together with every other deferred send. nats.js writes to
 * its socket at each microtask checkpoint, so sends from many concurrent handlers become one syscall each;
 * gathered into one synchronous burst they leave in a single write. That syscall was a quarter of a
 * service's CPU under load; the wait is one turn of the loop.
 */
export function sendSoon(fn: () => void): void {
  queued.push(fn);
  if (!scheduled) {
    scheduled = true;
    setImmediate(flush);
  }
}

/**
 * Acknowledges a consumed message with the next batch of sends, or within ACK_DELAY_MS if none comes.
 * Nothing waits for an ack (ack waits are seconds), but each socket write wakes the server: at low load a
 * write costs more CPU than anything else a service does (a fifth to two fifths of its busy time at
 * concurrency 1), and an ack that rides along with the next publish costs none. A crash loses the acks
 * held back, and the messages come again, as they would if it came a moment earlier; stopping sends them.
 */
export function ackSoon(msg: Pick<JsMsg, "ack">): void {
  acks.push(msg);
  if (scheduled || ackTimer !== undefined) return;
  if (ACK_DELAY_MS === 0) {
    sendSoon(() => undefined);
    return;
  }
  ackTimer = setTimeout(flushAcks, ACK_DELAY_MS);
}

/** Sends every ack held back now (call before closing the connection). */
export function flushAcks(): void {
  if (ackTimer !== undefined) {
    clearTimeout(ackTimer);
    ackTimer = undefined;
  }
  const now = acks;
  acks = [];
  for (const m of now) {
    try {
      m.ack();
    } catch {
      // The connection is gone: the message comes back after its ack wait, as after a crash.
    }
  }
}
