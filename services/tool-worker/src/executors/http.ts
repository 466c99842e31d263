import { RetryableError, type HttpExecutor, expandSecrets } from "@smallchain/shared";
import type { ToolOutcome } from "./outcome.js";

export type HttpContext = { idempotencyKey: string; runId: string; callId: string; signal: AbortSignal };

const ERROR_BODY_CHARS = 500;
const BODYLESS = new Set(["GET", "DELETE"]);

/**
 * Calls an HTTP tool: the arguments as a JSON body (as query parameters for GET and DELETE), the response
 * body as the result, cut at `max_response_bytes`. A non-2xx answer is a failed call carrying the status and
 * the start of the body. 5xx, 408, 429, timeouts and network errors throw RetryableError when the tool is
 * idempotent (the worker naks with backoff); otherwise they are failed calls too, since the request may have
 * had its effect. Every request carries `Idempotency-Key`, the same on every attempt.
 */
export async function runHttp(spec: HttpExecutor, args: unknown, ctx: HttpContext): Promise<ToolOutcome> {
  const url = new URL(spec.url);
  let body: string | undefined;
  if (BODYLESS.has(spec.method)) {
    if (args !== null && typeof args === "object") {
      for (const [k, v] of Object.entries(args as Record<string, unknown>)) url.searchParams.set(k, typeof v === "string" ? v : JSON.stringify(v));
    }
  } else {
    body = JSON.stringify(args ?? {});
  }
  const where = `${spec.method} ${spec.url}`;
  const transient = (message: string, delayMs?: number, cause?: unknown): ToolOutcome => {
    if (spec.idempotent) throw new RetryableError(message, delayMs, { cause });
    return { ok: false, error: message };
  };
  let secretHeaders: Record<string, string>;
  try {
    secretHeaders = expandSecrets(spec.headers);
  } catch (err) {
    return { ok: false, error: (err as Error).message };
  }
  let response: Response;
  const timeout = AbortSignal.timeout(spec.timeout_ms);
  try {
    response = await fetch(url, {
      method: spec.method,
      headers: {
        ...(body !== undefined && { "content-type": "application/json" }),
        accept: "application/json, text/plain, */*",
        "idempotency-key": ctx.idempotencyKey,
        "x-smallchain-run-id": ctx.runId,
        "x-smallchain-call-id": ctx.callId,
        ...secretHeaders,
      },
      ...(body !== undefined && { body }),
      signal: AbortSignal.any([ctx.signal, timeout]),
    });
  } catch (err) {
    if (ctx.signal.aborted) return { ok: false, error: "cancelled" };
    if (timeout.aborted) return transient(`${where} timed out after ${spec.timeout_ms} ms`, undefined, err);
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    return transient(`${where} failed: ${cause?.code ?? cause?.message ?? (err as Error).message}`, undefined, err);
  }
  let text: string;
  let truncated: boolean;
  try {
    ({ text, truncated } = await readCapped(response, spec.max_response_bytes));
  } catch (err) {
    if (timeout.aborted) return transient(`${where} timed out after ${spec.timeout_ms} ms while sending its response`, undefined, err);
    return transient(`${where}: reading the response failed: ${(err as Error).message}`, undefined, err);
  }
  if (response.ok) {
    return { ok: true, output: truncated ? `${text}\n[response truncated at ${spec.max_response_bytes} bytes]` : text };
  }
  const excerpt = text.trim().slice(0, ERROR_BODY_CHARS);
  const message = `${where} answered ${response.status}${response.statusText ? ` ${response.statusText}` : ""}${excerpt ? `: ${excerpt}` : ""}`;
  if (response.status >= 500 || response.status === 408 || response.status === 429) {
    return transient(message, retryAfterMs(response.headers.get("retry-after")));
  }
  return { ok: false, error: message };
}

/** Reads at most `limit` bytes of the body and stops the download there. */
async function readCapped(response: Response, limit: number): Promise<{ text: string; truncated: boolean }> {
  if (!response.body) return { text: "", truncated: false };
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  let truncated = false;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (size + value.length > limit) {
      chunks.push(value.subarray(0, limit - size));
      size = limit;
      truncated = true;
      await reader.cancel().catch(() => undefined);
      break;
    }
    chunks.push(value);
    size += value.length;
  }
  const bytes = Buffer.concat(chunks);
  // A cut can split a character; TextDecoder without fatal drops nothing else but would show U+FFFD at the end.
  const text = new TextDecoder().decode(bytes);
  return { text: truncated ? text.replace(/\uFFFD$/, "") : text, truncated };
}

function retryAfterMs(value: string | null): number | undefined {
  if (!value) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(value);
  return Number.isFinite(date) ? Math.max(0, date - Date.now()) : undefined;
}
