import type { JsMsg } from "@nats-io/jetstream";

let queued: (() => void)[] = [];
let scheduled = false;

function flush(): void {
  const now = queued;
  queued = [];
  scheduled = false;
  for (const fn of now) fn();
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

/** Acknowledges a consumed message in the next batch of sends. */
export function ackSoon(msg: JsMsg): void {
  sendSoon(() => msg.ack());
}
