import { createServer, type Server } from "node:http";
import { connect, type AddressInfo, type Socket } from "node:net";
import { gzipSync } from "node:zlib";
import { LlmConfig, RetryableError, TerminalError, type ResolvedLlmCommand } from "@smallchain/shared";
import { afterEach, describe, expect, it } from "vitest";
import { startFakeOpenAI, type FakeOpenAI, type FakeScript } from "../../../../test/support/fake-openai.js";
import { openAIProvider } from "./openai.js";
import type { LlmRequest } from "./provider.js";

const tools = [{ name: "add", description: "adds", parameters: { type: "object", properties: { a: { type: "number" } } } }];
const messages: LlmRequest["messages"] = [
  { role: "system", content: "be brief" },
  { role: "user", content: "add 1 and 2" },
];

function commandFor(baseUrl: string, llm: Partial<LlmConfig> = {}): ResolvedLlmCommand {
  return {
    id: "r1:llm:1",
    runId: "r1",
    step: 1,
    messageCount: 2,
    llm: LlmConfig.parse({ name: "gpt", provider: "openai", model: "fake", base_url: baseUrl, ...llm }),
    tools,
  };
}

/** The provider against the local fake server, through the SDK and its transport: what the worker sees. */
describe("the openai provider", () => {
  let fake: FakeOpenAI | undefined;
  let server: Server | undefined;
  afterEach(async () => {
    await fake?.close();
    fake = undefined;
    server?.closeAllConnections();
    await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
    server = undefined;
  });

  async function call(script: FakeScript, llm: Partial<LlmConfig> = {}, signal = new AbortController().signal) {
    fake = await startFakeOpenAI(script);
    const deltas: string[] = [];
    const reply = openAIProvider({})({ command: commandFor(fake.url, llm), messages, signal, onDelta: (t) => deltas.push(t) });
    return { reply, deltas, fake };
  }

  it("assembles a streamed answer's text, tool calls and usage, passing the text on as it arrives", async () => {
    const { reply, deltas, fake } = await call(() => ({
      content: "Adding now",
      toolCalls: [{ id: "c1", name: "add", arguments: { a: 1, b: 2 } }],
      usage: { prompt_tokens: 30, completion_tokens: 9, cached_tokens: 10 },
    }));

    expect(await reply).toEqual({
      content: "Adding now",
      toolCalls: [{ id: "c1", name: "add", arguments: '{"a":1,"b":2}' }],
      model: "fake",
      finishReason: "tool_calls",
      usage: { promptTokens: 30, completionTokens: 9, cachedTokens: 10 },
    });
    expect(deltas.join("")).toBe("Adding now");
    expect(deltas.length).toBeGreaterThan(1);
    // What went over the wire: the SDK's request, as the API expects it.
    expect(fake.requests[0]).toMatchObject({ model: "fake", stream: true, messages, tools: [{ type: "function", function: tools[0] }] });
    expect(fake.headers[0]).toMatchObject({ authorization: "Bearer not-needed", "content-type": "application/json" });
  });

  it("reads an answer that is not streamed", async () => {
    const { reply, fake } = await call(() => ({ content: "3", usage: { prompt_tokens: 5, completion_tokens: 1 } }), { stream: false });

    expect(await reply).toMatchObject({ content: "3", toolCalls: [], finishReason: "stop", usage: { promptTokens: 5, completionTokens: 1 } });
    expect(fake.requests[0]?.stream).toBeFalsy();
  });

  it("retries a 429 after the server's retry-after, and a 503; a 400 is terminal; each names the llm and the status", async () => {
    const limited = await call(() => ({ error: { status: 429, message: "slow down", retryAfterSeconds: 7 } }));
    const err = await limited.reply.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RetryableError);
    expect(err).toMatchObject({ delayMs: 7000, message: expect.stringMatching(/^llm "gpt" at http:\/\/127\.0\.0\.1:\d+\/v1 answered 429: .*slow down/) });
    await fake?.close();

    const down = await call(() => ({ error: { status: 503, message: "overloaded" } }));
    await expect(down.reply).rejects.toThrow(RetryableError);
    await fake?.close();

    const bad = await call(() => ({ error: { status: 400, message: "no such model" } }));
    await expect(bad.reply).rejects.toThrow(TerminalError);
    await expect(bad.reply).rejects.toThrow(/answered 400: .*no such model/);
  });

  it("gives up on a call that outlasts the llm's timeout, as retryable, without waiting for the answer", async () => {
    const t0 = Date.now();
    const { reply } = await call(() => ({ content: "late", delayMs: 3000 }), { timeout_ms: 200 });

    await expect(reply).rejects.toThrow(RetryableError);
    await expect(reply).rejects.toThrow(/timed out/i);
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it("stops a call when the worker's signal aborts it (the run was cancelled)", async () => {
    const abort = new AbortController();
    const t0 = Date.now();
    const { reply } = await call(() => ({ content: "late", delayMs: 3000 }), {}, abort.signal);
    setTimeout(() => abort.abort(), 100);

    await expect(reply).rejects.toThrow();
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it("reports an endpoint nobody listens on as retryable, naming it", async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const { port } = closed.address() as AddressInfo;
    await new Promise((resolve) => closed.close(resolve));

    const reply = openAIProvider({})({ command: commandFor(`http://127.0.0.1:${port}/v1`), messages, signal: new AbortController().signal });

    await expect(reply).rejects.toThrow(RetryableError);
    await expect(reply).rejects.toThrow(`llm "gpt" at http://127.0.0.1:${port}/v1`);
  });

  it("follows a redirect and reads a gzip-compressed answer, as fetch would", async () => {
    const completion = {
      id: "x",
      object: "chat.completion",
      created: 0,
      model: "moved",
      choices: [{ index: 0, message: { role: "assistant", content: "from the new place" }, finish_reason: "stop" }],
      usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 },
    };
    const seen: string[] = [];
    server = createServer((req, res) => {
      seen.push(`${req.method} ${req.url}`);
      req.resume();
      req.on("end", () => {
        if (req.url === "/old/chat/completions") {
          res.writeHead(307, { location: "/new/chat/completions" }).end();
        } else {
          res.writeHead(200, { "content-type": "application/json", "content-encoding": "gzip" }).end(gzipSync(JSON.stringify(completion)));
        }
      });
    });
    await new Promise<void>((resolve) => server?.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;

    const reply = await openAIProvider({})({
      command: commandFor(`http://127.0.0.1:${port}/old`, { stream: false }),
      messages,
      signal: new AbortController().signal,
    });

    expect(reply).toMatchObject({ content: "from the new place", model: "moved", usage: { promptTokens: 1, completionTokens: 2 } });
    expect(seen).toEqual(["POST /old/chat/completions", "POST /new/chat/completions"]);
  });

  it("goes through the proxy HTTP_PROXY names, and straight to the hosts NO_PROXY names", async () => {
    fake = await startFakeOpenAI(() => ({ content: "via", usage: { prompt_tokens: 1, completion_tokens: 1 } }));
    // A proxy as corporate ones are: the client asks it to CONNECT to the host and talks HTTP through the tunnel.
    const proxied: string[] = [];
    server = createServer((_req, res) => res.writeHead(405).end());
    server.on("connect", (req: { url?: string }, client: Socket, head: Buffer) => {
      proxied.push(`CONNECT ${req.url}`);
      const [host = "", port = "80"] = (req.url ?? "").split(":");
      const upstream = connect(Number(port), host, () => {
        client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
        upstream.write(head);
        upstream.pipe(client);
        client.pipe(upstream);
      });
      upstream.on("error", () => client.destroy());
      client.on("error", () => upstream.destroy());
    });
    await new Promise<void>((resolve) => server?.listen(0, "127.0.0.1", resolve));
    const proxy = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const ask = (env: NodeJS.ProcessEnv) =>
      openAIProvider(env)({ command: commandFor(fake!.url, { stream: false }), messages, signal: new AbortController().signal });

    expect(await ask({ HTTP_PROXY: proxy })).toMatchObject({ content: "via" });
    expect(proxied).toEqual([`CONNECT ${new URL(fake.url).host}`]);

    expect(await ask({ HTTP_PROXY: proxy, NO_PROXY: "127.0.0.1" })).toMatchObject({ content: "via" });
    expect(proxied).toHaveLength(1);
    expect(fake.requests).toHaveLength(2);
  });
});
