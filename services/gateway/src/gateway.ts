import { createHash, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import {
  ApprovalInput,
  CallbackResult,
  CancelInput,
  Limits,
  ResumeInput,
  Client,
  ControlError,
  HTTP_STATUS,
  HumanAnswer,
  ResolveError,
  displayStatus,
  shownEvent,
  viewOf,
  type Logger,
  type Names,
  type NatsConnection,
  type RunState,
  type Service,
} from "@smallchain/shared";
import { z } from "zod";

export type GatewayOptions = {
  nc: NatsConnection;
  names: Names;
  log: Logger;
  /** Every request but /healthz and /callbacks/<token> (the token is its own credential) needs `Authorization: Bearer <token>`. */
  token: string;
  port?: number;
  host?: string;
  maxBodyBytes?: number;
};

export type Gateway = Service & { url: string; port: number };

const StartRunBody = z
  .object({
    message: z.string().max(1_000_000).optional(),
    name: z.string().max(200).optional(),
    runId: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/).optional(),
    limits: Limits.optional(),
  })
  .strict();

/** An HTTP error with the status to answer and a message that says what to fix. */
class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

type Route = { method: string; pattern: RegExp; auth: boolean; handle: (params: string[], body: () => Promise<unknown>, url: URL) => Promise<[number, unknown]> };

/**
 * A small HTTP front door for people and systems that do not speak NATS: start runs, read them, approve or
 * reject calls, answer questions, deliver callback results. Stateless; every answer goes through the same
 * checks as the CLI and the NATS subjects.
 */
export async function startGateway(opts: GatewayOptions): Promise<Gateway> {
  const { log } = opts;
  if (!opts.token) throw new Error("the gateway needs a bearer token");
  const client = await Client.connect(opts.nc, opts.names);
  const expected = createHash("sha256").update(opts.token).digest();
  const maxBody = opts.maxBodyBytes ?? 1024 * 1024;

  const view = (run: RunState) => ({ ...viewOf(run), displayStatus: displayStatus(run) });

  const routes: Route[] = [
    { method: "GET", pattern: /^\/healthz$/, auth: false, handle: async () => [200, { status: "ok", nats: opts.nc.isClosed() ? "closed" : "connected" }] },
    {
      method: "POST",
      pattern: /^\/tasks\/([^/]+)\/runs$/,
      auth: true,
      handle: async ([task], body) => {
        const input = parse(StartRunBody, await body(), "run request");
        const started = await client.startRun({ task: task!, ...defined(input) });
        return [started.created ? 201 : 200, started];
      },
    },
    {
      method: "GET",
      pattern: /^\/runs$/,
      auth: true,
      handle: async (_p, _b, url) => {
        const limit = intParam(url, "limit", 100);
        const offset = intParam(url, "offset", 0);
        const { runs, total } = await client.listRuns({ limit, offset });
        return [200, { runs: runs.map(view), total }];
      },
    },
    {
      method: "GET",
      pattern: /^\/runs\/([^/]+)$/,
      auth: true,
      handle: async ([runId]) => {
        const run = await client.getRun(runId!);
        if (!run) throw new HttpError(404, `run ${runId} not found`);
        return [200, view(run)];
      },
    },
    { method: "GET", pattern: /^\/runs\/([^/]+)\/events$/, auth: true, handle: async ([runId]) => [200, (await client.events(runId!)).map(shownEvent)] },
    { method: "GET", pattern: /^\/approvals$/, auth: true, handle: async () => [200, await client.listWaits("approval")] },
    { method: "GET", pattern: /^\/waits$/, auth: true, handle: async () => [200, await client.listWaits()] },
    {
      method: "POST",
      pattern: /^\/runs\/([^/]+)\/calls\/([^/]+)\/approval$/,
      auth: true,
      handle: async ([runId, callId], body) => {
        const accepted = await client.control.approval(runId!, callId!, parse(ApprovalInput, await body(), "approval"));
        return [200, { ok: true, runId, callId, event: accepted.event.type, seq: accepted.event.seq }];
      },
    },
    {
      method: "POST",
      pattern: /^\/runs\/([^/]+)\/calls\/([^/]+)\/response$/,
      auth: true,
      handle: async ([runId, callId], body) => {
        const accepted = await client.control.respond(runId!, callId!, parse(HumanAnswer, await body(), "answer"));
        return [200, { ok: true, runId, callId, event: accepted.event.type, seq: accepted.event.seq }];
      },
    },
    {
      method: "POST",
      pattern: /^\/runs\/([^/]+)\/resume$/,
      auth: true,
      handle: async ([runId], body) => {
        const accepted = await client.control.resume(runId!, parse(ResumeInput, (await body()) ?? {}, "resume"));
        return [200, { ok: true, runId, event: accepted.event.type, seq: accepted.event.seq }];
      },
    },
    {
      method: "POST",
      pattern: /^\/runs\/([^/]+)\/cancel$/,
      auth: true,
      handle: async ([runId], body) => {
        const accepted = await client.control.cancel(runId!, parse(CancelInput, (await body()) ?? {}, "cancel"));
        return [200, { ok: true, runId, event: accepted.event.type, seq: accepted.event.seq }];
      },
    },
    {
      method: "POST",
      pattern: /^\/callbacks\/([^/]+)$/,
      auth: false,
      handle: async ([token], body) => {
        const accepted = await client.control.callback(token!, parse(CallbackResult, await body(), "callback result"));
        return [200, { ok: true, runId: accepted.runId, callId: accepted.callId, event: accepted.event.type, seq: accepted.event.seq }];
      },
    },
  ];

  const authorized = (req: IncomingMessage): boolean => {
    const header = req.headers.authorization ?? "";
    const match = /^Bearer\s+(.+)$/i.exec(header);
    if (!match) return false;
    return timingSafeEqual(createHash("sha256").update(match[1]!.trim()).digest(), expected);
  };

  const readBody = (req: IncomingMessage) => async (): Promise<unknown> => {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req) {
      size += (chunk as Buffer).length;
      if (size > maxBody) throw new HttpError(413, `request body is larger than ${maxBody} bytes`);
      chunks.push(chunk as Buffer);
    }
    const text = Buffer.concat(chunks).toString("utf8");
    if (text.trim() === "") return {};
    try {
      return JSON.parse(text) as unknown;
    } catch (err) {
      throw new HttpError(400, `request body is not valid JSON: ${(err as Error).message}`);
    }
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? "/", "http://gateway");
    const path = url.pathname.replace(/\/+$/, "") || "/";
    const candidates = routes.filter((r) => r.pattern.test(path));
    const route = candidates.find((r) => r.method === req.method);
    try {
      if (!route) {
        if (candidates.length > 0) throw new HttpError(405, `${req.method} is not allowed on ${path} (allowed: ${candidates.map((r) => r.method).join(", ")})`);
        throw new HttpError(404, `no such endpoint: ${req.method} ${path}`);
      }
      if (route.auth && !authorized(req)) {
        res.setHeader("WWW-Authenticate", 'Bearer realm="smallchain"');
        throw new HttpError(401, "missing or wrong bearer token (Authorization: Bearer <SC_GATEWAY_TOKEN>)");
      }
      let params: string[];
      try {
        params = route.pattern.exec(path)!.slice(1).map(decodeURIComponent);
      } catch {
        throw new HttpError(400, `malformed percent-encoding in ${path.slice(0, 200)}`);
      }
      // Run, call and task names and callback tokens share one alphabet: nothing else can exist.
      const bad = params.find((p) => !/^[A-Za-z0-9_-]{1,200}$/.test(p));
      if (bad !== undefined) {
        throw new HttpError(404, `no such run, call, task or callback token: ${JSON.stringify(bad.slice(0, 80))} (ids are letters, digits, '_' and '-')`);
      }
      const [status, body] = await route.handle(params, readBody(req), url);
      send(res, status, body);
    } catch (err) {
      const [status, message] = errorOf(err);
      if (status >= 500) log.error({ err, path }, "gateway request failed");
      else log.info({ path, status, err: message }, "gateway refused a request");
      send(res, status, { ok: false, error: message, ...(err instanceof ControlError && { code: err.code }) });
    }
  };

  const server = createServer((req, res) => void handle(req, res));
  server.requestTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 8080, opts.host ?? "0.0.0.0", () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const url = `http://${opts.host && opts.host !== "0.0.0.0" ? opts.host : "127.0.0.1"}:${port}`;
  log.info({ url, prefix: opts.names.prefix }, "gateway started");
  return {
    url,
    port,
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function parse<S extends z.ZodType>(schema: S, value: unknown, what: string): z.infer<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issues = r.error.issues.map((i) => `${i.path.length ? `${i.path.join(".")}: ` : ""}${i.code === "unrecognized_keys" ? `unknown field(s) ${i.keys.join(", ")}` : i.message}`);
  throw new HttpError(400, `invalid ${what}: ${issues.join("; ")}`);
}

function intParam(url: URL, name: string, fallback: number): number {
  const raw = url.searchParams.get(name);
  if (raw === null) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new HttpError(400, `${name} must be a non-negative integer, got "${raw}"`);
  return n;
}

function defined<T extends Record<string, unknown>>(o: T): { [K in keyof T]: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as { [K in keyof T]: Exclude<T[K], undefined> };
}

function errorOf(err: unknown): [number, string] {
  if (err instanceof HttpError) return [err.status, err.message];
  if (err instanceof ControlError) return [HTTP_STATUS[err.code], err.message];
  if (err instanceof ResolveError) return [404, err.message];
  return [500, `internal error: ${(err as Error).message}`];
}

function send(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(text) });
  res.end(text);
}
