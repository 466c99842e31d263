import { RetryableError, expandSecrets, headers, TerminalError, type Names, type NatsConnection, type ToolCommand, type ToolSnapshot } from "@smallchain/shared";

export type HandOffOptions = {
  nc: NatsConnection;
  names: Names;
  /** Where the gateway is reachable from outside, for the callback URL handed out (e.g. https://agents.example.com). */
  publicUrl?: string;
  signal: AbortSignal;
  timeoutMs?: number;
};

/** What the outside receives: the call's arguments and where to send its result, with the one-time token. */
export type CallbackRequest = {
  runId: string;
  callId: string;
  tool: string;
  args: unknown;
  token: string;
  reply: { subject: string; url?: string };
};

/**
 * Hands a callback tool's call to the outside: published on the tool's subject and/or POSTed to its URL. The
 * result comes back later with the token, so nothing is recorded here. Delivery is at least once (a retried
 * command hands off again, with the same token): receivers deduplicate by token.
 */
export async function handOff(tool: Extract<ToolSnapshot, { kind: "callback" }>, command: ToolCommand, opts: HandOffOptions): Promise<void> {
  const token = command.token;
  if (!token) throw new TerminalError(`callback command ${command.id} carries no token`);
  const request: CallbackRequest = {
    runId: command.runId,
    callId: command.callId,
    tool: tool.name,
    args: command.args,
    token,
    reply: {
      subject: opts.names.callbackSubject(token),
      ...(opts.publicUrl && { url: `${opts.publicUrl.replace(/\/+$/, "")}/callbacks/${token}` }),
    },
  };
  const body = JSON.stringify(request);
  if (tool.callback.subject) {
    const h = headers();
    h.set("Content-Type", "application/json");
    opts.nc.publish(tool.callback.subject, body, { headers: h });
    await opts.nc.flush();
  }
  if (tool.callback.url) {
    let secretHeaders: Record<string, string>;
    try {
      secretHeaders = expandSecrets(tool.callback.headers);
    } catch (err) {
      throw new TerminalError((err as Error).message);
    }
    await post(tool.callback.url, body, secretHeaders, opts);
  }
}

async function post(url: string, body: string, headers: Record<string, string>, opts: HandOffOptions): Promise<void> {
  let response: Response;
  try {
    response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body,
      signal: AbortSignal.any([opts.signal, AbortSignal.timeout(opts.timeoutMs ?? 10_000)]),
    });
  } catch (err) {
    throw new RetryableError(`callback POST to ${url} failed: ${(err as Error).message}`, undefined, { cause: err });
  }
  if (response.ok) return;
  const text = (await response.text().catch(() => "")).slice(0, 300);
  const message = `callback POST to ${url} answered ${response.status}${text ? `: ${text}` : ""}`;
  if (response.status === 408 || response.status === 429 || response.status >= 500) {
    const retryAfter = Number(response.headers.get("retry-after"));
    throw new RetryableError(message, Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter * 1000 : undefined);
  }
  throw new TerminalError(message);
}
