import OpenAI from "openai";
import { RetryableError, TerminalError, wireMessage, type LlmConfig } from "@smallchain/shared";
import type { LlmReply, LlmRequest, Provider } from "./provider.js";
import { dispatcherFor, requestFetch, type Fetch } from "./transport.js";

/**
 * One client per endpoint and key; the SDK's own retries are off: redelivery with backoff is ours. The SDK
 * sends through undici's `request` rather than the global fetch, over one connection pool that honours the
 * proxies `env` names (see transport.ts).
 */
export function openAIProvider(env: NodeJS.ProcessEnv = process.env, transport: Fetch = requestFetch(dispatcherFor(env))): Provider {
  const clients = new Map<string, OpenAI>();
  const clientFor = (llm: LlmConfig): OpenAI => {
    const apiKey = env[llm.api_key_env] ?? (llm.base_url ? "not-needed" : undefined);
    if (apiKey === undefined) {
      throw new TerminalError(`environment variable ${llm.api_key_env} is not set (needed by llm "${llm.name}")`);
    }
    const key = `${llm.base_url ?? ""}\u0000${apiKey}`;
    let client = clients.get(key);
    if (!client) {
      client = new OpenAI({ apiKey, maxRetries: 0, fetch: transport, ...(llm.base_url !== undefined && { baseURL: llm.base_url }) });
      clients.set(key, client);
    }
    return client;
  };

  return async ({ command, messages, signal, onDelta }: LlmRequest): Promise<LlmReply> => {
    const llm = command.llm;
    const client = clientFor(llm);
    const body = {
      ...llm.parameters,
      model: llm.model ?? llm.name,
      // Tool calls in the API's shape: a window keeps them as events record them.
      messages: messages.map(wireMessage) as OpenAI.Chat.ChatCompletionMessageParam[],
      ...(command.tools.length > 0 && {
        tools: command.tools.map((t) => ({
          type: "function" as const,
          function: { name: t.name, description: t.description, parameters: t.parameters },
        })),
      }),
    };
    try {
      if (llm.stream !== false) {
        const stream = await client.chat.completions.create(
          { ...body, stream: true, stream_options: { include_usage: true } },
          { signal, timeout: llm.timeout_ms },
        );
        return await collect(stream, llm, onDelta);
      }
      const completion = await client.chat.completions.create({ ...body, stream: false }, { signal, timeout: llm.timeout_ms });
      const choice = completion.choices[0];
      if (!choice) throw new RetryableError(`llm "${llm.name}" returned no choices`);
      const toolCalls = (choice.message.tool_calls ?? []).flatMap((c) =>
        c.type === "function" ? [{ id: c.id, name: c.function.name, arguments: c.function.arguments }] : [],
      );
      return {
        content: choice.message.content ?? null,
        toolCalls,
        model: completion.model,
        finishReason: choice.finish_reason ?? null,
        usage: {
          promptTokens: completion.usage?.prompt_tokens ?? 0,
          completionTokens: completion.usage?.completion_tokens ?? 0,
          cachedTokens: completion.usage?.prompt_tokens_details?.cached_tokens ?? 0,
        },
      };
    } catch (err) {
      throw classify(err, llm);
    }
  };
}

/** Assembles a streamed answer: text pieces (passed on as they come), tool calls by index, the final usage. */
async function collect(stream: AsyncIterable<OpenAI.Chat.ChatCompletionChunk>, llm: LlmConfig, onDelta?: (text: string) => void): Promise<LlmReply> {
  let content: string | null = null;
  let model = llm.model ?? llm.name;
  let finishReason: string | null = null;
  let usage: OpenAI.CompletionUsage | undefined;
  let choices = 0;
  const calls: { id: string; name: string; arguments: string }[] = [];
  for await (const chunk of stream) {
    model = chunk.model || model;
    if (chunk.usage) usage = chunk.usage;
    const choice = chunk.choices[0];
    if (!choice) continue;
    choices++;
    const delta = choice.delta;
    if (delta.content) {
      content = (content ?? "") + delta.content;
      onDelta?.(delta.content);
    }
    for (const tc of delta.tool_calls ?? []) {
      const call = (calls[tc.index] ??= { id: "", name: "", arguments: "" });
      if (tc.id) call.id = tc.id;
      if (tc.function?.name) call.name += tc.function.name;
      if (tc.function?.arguments) call.arguments += tc.function.arguments;
    }
    if (choice.finish_reason) finishReason = choice.finish_reason;
  }
  if (choices === 0) throw new RetryableError(`llm "${llm.name}" returned no choices`);
  return {
    content,
    toolCalls: calls.filter((c) => c !== undefined),
    model,
    finishReason,
    usage: {
      promptTokens: usage?.prompt_tokens ?? 0,
      completionTokens: usage?.completion_tokens ?? 0,
      cachedTokens: usage?.prompt_tokens_details?.cached_tokens ?? 0,
    },
  };
}

/** Sorts the SDK's errors by what the worker must do: 429, 408, 409 and 5xx and lost connections retry; the rest cannot. */
export function classify(err: unknown, llm: LlmConfig): Error {
  if (err instanceof RetryableError || err instanceof TerminalError) return err;
  const where = `llm "${llm.name}"${llm.base_url ? ` at ${llm.base_url}` : ""}`;
  if (err instanceof OpenAI.APIConnectionError) {
    // Includes timeouts (APIConnectionTimeoutError extends it).
    return new RetryableError(`${where}: ${err.message}`, undefined, { cause: err });
  }
  if (err instanceof OpenAI.APIError) {
    const status = err.status ?? 0;
    const message = `${where} answered ${status}: ${err.message}`;
    if (status === 429 || status === 408 || status === 409 || status >= 500) {
      return new RetryableError(message, retryAfterMs(err.headers), { cause: err });
    }
    return new TerminalError(message, { cause: err });
  }
  return new RetryableError(`${where}: ${(err as Error)?.message ?? String(err)}`, undefined, { cause: err });
}

function retryAfterMs(headers: Headers | undefined): number | undefined {
  const ms = headers?.get("retry-after-ms");
  if (ms && Number.isFinite(Number(ms))) return Number(ms);
  const value = headers?.get("retry-after");
  if (!value) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return seconds * 1000;
  const date = Date.parse(value);
  return Number.isFinite(date) ? Math.max(0, date - Date.now()) : undefined;
}
