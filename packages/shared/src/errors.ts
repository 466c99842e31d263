/** The run's stream moved on since the state we decided from (JetStream 10071): reload and decide again. */
export class ConcurrencyError extends Error {
  override name = "ConcurrencyError";
  readonly code = "CONCURRENCY";
}

/** Failing again cannot help: record a Failed event and terminate the message. */
export class TerminalError extends Error {
  override name = "TerminalError";
  readonly code = "TERMINAL";
}

/** May succeed later: nak the message with this delay (e.g. a 429's retry-after). */
export class RetryableError extends Error {
  override name = "RetryableError";
  readonly code = "RETRYABLE";
  constructor(
    message: string,
    readonly delayMs?: number,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

export function ensureError(value: unknown): Error {
  if (value instanceof Error) return value;
  return new Error(typeof value === "string" ? value : JSON.stringify(value));
}
