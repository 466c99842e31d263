import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";

export type FakeToolCall = {
  name: string;
  /** Objects are JSON.stringify'd; strings are sent as is (so malformed JSON can be scripted). */
  arguments: unknown;
  id?: string;
};

export type FakeReply =
  | {
      content?: string | null;
      toolCalls?: FakeToolCall[];
      usage?: { prompt_tokens: number; completion_tokens: number; cached_tokens?: number };
      delayMs?: number;
    }
  | { error: { status: number; message?: string; type?: string; retryAfterSeconds?: number } };

export type ChatRequest = {
  model: string;
  // Raw wire payload, loosely typed so tests can inspect it freely.
  messages: any[];
  tools?: any[];
  stream?: boolean;
  [k: string]: unknown;
};

/** `index` is the 0-based position of this request among all chat completion requests. */
export type FakeScript = (req: ChatRequest, index: number) => FakeReply | Promise<FakeReply>;

export interface FakeOpenAI {
  /** Base URL including `/v1`, e.g. `http://127.0.0.1:PORT/v1`. */
  url: string;
  requests: ChatRequest[];
  headers: Record<string, string | string[] | undefined>[];
  close(): Promise<void>;
}

type Usage = {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details: { cached_tokens: number };
};

type WireToolCall = { id: string; type: "function"; function: { name: string; arguments: string } };

type SuccessReply = Exclude<FakeReply, { error: unknown }>;

export async function startFakeOpenAI(script: FakeScript, opts: { port?: number } = {}): Promise<FakeOpenAI> {
  const requests: ChatRequest[] = [];
  const headers: Record<string, string | string[] | undefined>[] = [];
  let completionSeq = 0;

  const handleChat = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    let body: ChatRequest;
    try {
      body = parseChatRequest(await readBody(req));
    } catch (err) {
      sendError(res, { status: 400, message: errorMessage(err), type: "invalid_request_error" });
      return;
    }
    requests.push(body);
    headers.push({ ...req.headers });
    const index = requests.length - 1;

    let reply: FakeReply;
    try {
      reply = await script(body, index);
    } catch (err) {
      sendError(res, { status: 500, message: `fake-openai script failed: ${errorMessage(err)}`, type: "server_error" });
      return;
    }

    if ("error" in reply) {
      sendError(res, reply.error);
      return;
    }
    if (reply.delayMs) await sleep(reply.delayMs);

    const id = `chatcmpl-fake-${++completionSeq}`;
    const toolCalls = (reply.toolCalls ?? []).map((tc, i) => toWireToolCall(tc, index, i));
    if (body.stream) {
      sendStream(res, { id, model: body.model, reply, toolCalls, includeUsage: wantsStreamUsage(body) });
    } else {
      sendJson(res, 200, completion(id, body.model, reply, toolCalls));
    }
  };

  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method === "POST" && path === "/v1/chat/completions") {
      handleChat(req, res).catch((err: unknown) => {
        if (!res.headersSent) sendError(res, { status: 500, message: errorMessage(err), type: "server_error" });
        else res.destroy();
      });
    } else if (req.method === "GET" && path === "/v1/models") {
      sendJson(res, 200, {
        object: "list",
        data: ["fake-model", "gpt-4o-mini"].map((id) => ({ id, object: "model", created: 0, owned_by: "fake-openai" })),
      });
    } else {
      sendError(res, { status: 404, message: `Unknown route ${req.method} ${path}`, type: "invalid_request_error" });
    }
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}/v1`,
    requests,
    headers,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        // SDK clients keep connections alive; without this close() waits for them to time out.
        server.closeAllConnections();
      }),
  };
}

/**
 * Routes each request to a per-agent script: the key found in the first message (the system prompt)
 * selects the script, and the number of assistant messages already in the conversation selects the
 * reply. When several keys match, the longest wins (so "calc" and "calculator" can coexist).
 */
export function scriptByAgent(scripts: Record<string, FakeReply[]>): FakeScript {
  return (req) => {
    const first: unknown = req.messages[0];
    const prompt = messageText(first);
    const key = Object.keys(scripts)
      .filter((k) => prompt.includes(k))
      .sort((a, b) => b.length - a.length)[0];
    if (key === undefined) {
      throw new Error(
        `scriptByAgent: no script key (${Object.keys(scripts).join(", ")}) found in first message: ${JSON.stringify(prompt.slice(0, 200))}`,
      );
    }
    const replies = scripts[key] ?? [];
    const turn = turnOf(req);
    const reply = replies[turn];
    if (reply === undefined) {
      throw new Error(`scriptByAgent: script "${key}" exhausted: it has ${replies.length} replies, request wants reply #${turn + 1}`);
    }
    return reply;
  };
}

function completion(id: string, model: string, reply: SuccessReply, toolCalls: WireToolCall[]) {
  return {
    id,
    object: "chat.completion",
    created: nowSeconds(),
    model,
    system_fingerprint: "fake",
    choices: [
      {
        index: 0,
        message: {
          role: "assistant",
          content: reply.content ?? (toolCalls.length > 0 ? null : ""),
          refusal: null,
          ...(toolCalls.length > 0 ? { tool_calls: toolCalls } : {}),
        },
        logprobs: null,
        finish_reason: finishReason(toolCalls),
      },
    ],
    usage: usageOf(reply),
  };
}

function sendStream(
  res: ServerResponse,
  s: { id: string; model: string; reply: SuccessReply; toolCalls: WireToolCall[]; includeUsage: boolean },
): void {
  const created = nowSeconds();
  const base = { id: s.id, object: "chat.completion.chunk", created, model: s.model, system_fingerprint: "fake" };
  // With include_usage, OpenAI sends `usage: null` on every chunk except the trailing usage-only one.
  const usageField = s.includeUsage ? { usage: null } : {};
  const chunk = (delta: Record<string, unknown>, finish_reason: string | null = null) => ({
    ...base,
    choices: [{ index: 0, delta, logprobs: null, finish_reason }],
    ...usageField,
  });

  // An instant model: every event of the answer is ready at once, so they leave in one write (the client still
  // parses them one event at a time). A write per event would make the client wake up once per event.
  const events: string[] = [];
  const send = (data: unknown) => events.push(`data: ${JSON.stringify(data)}\n\n`);

  send(chunk({ role: "assistant", content: "", refusal: null }));
  for (const piece of splitPieces(s.reply.content ?? "", 3)) send(chunk({ content: piece }));
  s.toolCalls.forEach((tc, i) => {
    send(chunk({ tool_calls: [{ index: i, id: tc.id, type: "function", function: { name: tc.function.name, arguments: "" } }] }));
    for (const piece of splitPieces(tc.function.arguments, 3)) {
      send(chunk({ tool_calls: [{ index: i, function: { arguments: piece } }] }));
    }
  });
  send(chunk({}, finishReason(s.toolCalls)));
  if (s.includeUsage) send({ ...base, choices: [], usage: usageOf(s.reply) });
  events.push("data: [DONE]\n\n");
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" });
  res.end(events.join(""));
}

function sendError(
  res: ServerResponse,
  e: { status: number; message?: string; type?: string; retryAfterSeconds?: number },
): void {
  const type = e.type ?? defaultErrorType(e.status);
  const extra: Record<string, string> = e.retryAfterSeconds !== undefined ? { "retry-after": String(e.retryAfterSeconds) } : {};
  sendJson(
    res,
    e.status,
    {
      error: {
        message: e.message ?? `fake-openai error ${e.status}`,
        type,
        param: null,
        code: e.status === 429 ? "rate_limit_exceeded" : type,
      },
    },
    extra,
  );
}

function sendJson(res: ServerResponse, status: number, body: unknown, extraHeaders: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
    ...extraHeaders,
  });
  res.end(text);
}

function defaultErrorType(status: number): string {
  if (status === 401) return "authentication_error";
  if (status === 403) return "permission_error";
  if (status === 404) return "not_found_error";
  if (status === 429) return "rate_limit_error";
  if (status >= 500) return "server_error";
  return "invalid_request_error";
}

function toWireToolCall(tc: FakeToolCall, requestIndex: number, i: number): WireToolCall {
  const args = typeof tc.arguments === "string" ? tc.arguments : (JSON.stringify(tc.arguments) ?? "{}");
  return { id: tc.id ?? `call_${requestIndex}_${i}`, type: "function", function: { name: tc.name, arguments: args } };
}

function usageOf(reply: SuccessReply): Usage {
  const u = reply.usage ?? { prompt_tokens: 10, completion_tokens: 5 };
  return {
    prompt_tokens: u.prompt_tokens,
    completion_tokens: u.completion_tokens,
    total_tokens: u.prompt_tokens + u.completion_tokens,
    prompt_tokens_details: { cached_tokens: u.cached_tokens ?? 0 },
  };
}

function finishReason(toolCalls: WireToolCall[]): "tool_calls" | "stop" {
  return toolCalls.length > 0 ? "tool_calls" : "stop";
}

function wantsStreamUsage(body: ChatRequest): boolean {
  const so = body.stream_options;
  return isRecord(so) && so.include_usage === true;
}

/** Splits text into at most `n` non-empty pieces of roughly equal length. */
function splitPieces(text: string, n: number): string[] {
  if (text === "") return [];
  const size = Math.ceil(text.length / n);
  const pieces: string[] = [];
  for (let i = 0; i < text.length; i += size) pieces.push(text.slice(i, i + size));
  return pieces;
}

function messageText(message: unknown): string {
  if (!isRecord(message)) return "";
  const { content } = message;
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    return content.map((part: unknown) => (isRecord(part) && typeof part.text === "string" ? part.text : "")).join("");
  }
  return "";
}

/** How many answers the model gave before this request: the number of assistant messages in it. */
export function turnOf(req: ChatRequest): number {
  return req.messages.filter((m: unknown) => isRecord(m) && m.role === "assistant").length;
}

function parseChatRequest(raw: string): ChatRequest {
  const parsed: unknown = JSON.parse(raw);
  if (!isRecord(parsed) || typeof parsed.model !== "string" || !Array.isArray(parsed.messages)) {
    throw new Error("request body must be a JSON object with string `model` and array `messages`");
  }
  validateMessages(parsed.messages);
  return parsed as ChatRequest;
}

/**
 * What OpenAI's API refuses with a 400 (the messages' wire format): assistant tool calls as
 * `{ id, type: "function", function: { name, arguments } }`, and a tool message only in answer to a call of
 * an assistant message before it.
 */
function validateMessages(messages: unknown[]): void {
  const calls = new Set<string>();
  messages.forEach((m, i) => {
    const at = `messages[${i}]`;
    if (!isRecord(m) || typeof m.role !== "string") throw new Error(`Missing required parameter: '${at}.role'.`);
    if (m.role === "assistant" && m.tool_calls !== undefined) {
      if (!Array.isArray(m.tool_calls)) throw new Error(`Invalid type for '${at}.tool_calls': expected an array.`);
      m.tool_calls.forEach((c: unknown, j: number) => {
        const cat = `${at}.tool_calls[${j}]`;
        if (!isRecord(c) || typeof c.id !== "string") throw new Error(`Missing required parameter: '${cat}.id'.`);
        if (c.type !== "function") throw new Error(`Missing required parameter: '${cat}.type'.`);
        if (!isRecord(c.function) || typeof c.function.name !== "string" || typeof c.function.arguments !== "string") {
          throw new Error(`Missing required parameter: '${cat}.function'.`);
        }
        calls.add(c.id);
      });
    } else if (m.role === "tool") {
      if (typeof m.tool_call_id !== "string") throw new Error(`Missing required parameter: '${at}.tool_call_id'.`);
      if (!calls.has(m.tool_call_id)) {
        throw new Error(`Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.`);
      }
    } else if (!["system", "user", "assistant", "developer"].includes(m.role)) {
      throw new Error(`Invalid value: '${m.role}'. Supported values are: 'system', 'assistant', 'user', 'tool', and 'developer'.`);
    }
  });
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
