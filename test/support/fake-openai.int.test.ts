import OpenAI from "openai";
import { afterEach, describe, expect, it } from "vitest";
import { scriptByAgent, startFakeOpenAI, type FakeOpenAI, type FakeScript } from "./fake-openai.js";

const tools: OpenAI.Chat.Completions.ChatCompletionTool[] = [
  {
    type: "function",
    function: {
      name: "add",
      description: "Adds two numbers",
      parameters: { type: "object", properties: { a: { type: "number" }, b: { type: "number" } }, required: ["a", "b"] },
    },
  },
];

describe("fake OpenAI server", () => {
  let fake: FakeOpenAI | undefined;

  afterEach(async () => {
    await fake?.close();
    fake = undefined;
  });

  async function start(script: FakeScript): Promise<{ fake: FakeOpenAI; client: OpenAI }> {
    fake = await startFakeOpenAI(script);
    return { fake, client: new OpenAI({ baseURL: fake.url, apiKey: "test", maxRetries: 0 }) };
  }

  it("refuses messages in a shape the real API refuses: tool calls without type and function, a tool answer to no call", async () => {
    const { client, fake } = await start(() => ({ content: "never" }));
    const malformed = [
      { role: "user", content: "add" },
      { role: "assistant", content: null, tool_calls: [{ id: "c1", name: "add", arguments: "{}" }] },
      { role: "tool", tool_call_id: "c1", content: "3" },
    ] as unknown as OpenAI.Chat.ChatCompletionMessageParam[];
    await expect(client.chat.completions.create({ model: "m", messages: malformed })).rejects.toMatchObject({
      status: 400,
      message: expect.stringContaining("messages[1].tool_calls[0].type"),
    });
    await expect(
      client.chat.completions.create({ model: "m", messages: [{ role: "user", content: "x" }, { role: "tool", tool_call_id: "nope", content: "3" }] }),
    ).rejects.toMatchObject({ status: 400, message: expect.stringContaining("must be a response to a preceeding message") });
    const ok = await client.chat.completions.create({
      model: "m",
      messages: [
        { role: "user", content: "add" },
        { role: "assistant", content: null, tool_calls: [{ id: "c1", type: "function", function: { name: "add", arguments: "{}" } }] },
        { role: "tool", tool_call_id: "c1", content: "3" },
      ],
    });
    expect(ok.choices[0]?.message.content).toBe("never");
    expect(fake.requests).toHaveLength(1);
  });

  it("answers a plain chat completion with content and usage", async () => {
    const { client } = await start(() => ({
      content: "Hello there",
      usage: { prompt_tokens: 42, completion_tokens: 7, cached_tokens: 40 },
    }));

    const res = await client.chat.completions.create({ model: "fake-model", messages: [{ role: "user", content: "hi" }] });

    expect(res.object).toBe("chat.completion");
    expect(res.model).toBe("fake-model");
    expect(res.choices[0]?.message).toMatchObject({ role: "assistant", content: "Hello there" });
    expect(res.choices[0]?.finish_reason).toBe("stop");
    expect(res.usage).toEqual({
      prompt_tokens: 42,
      completion_tokens: 7,
      total_tokens: 49,
      prompt_tokens_details: { cached_tokens: 40 },
    });
  });

  it("uses default usage when the script gives none", async () => {
    const { client } = await start(() => ({ content: "ok" }));

    const res = await client.chat.completions.create({ model: "m", messages: [{ role: "user", content: "hi" }] });

    expect(res.usage).toMatchObject({ prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 });
  });

  it("returns scripted tool calls with parseable arguments and default ids", async () => {
    const { client } = await start(() => ({
      toolCalls: [
        { name: "add", arguments: { a: 2, b: 3 } },
        { name: "add", arguments: '{"a":1,"b":1}', id: "call_custom" },
      ],
    }));

    const res = await client.chat.completions.create({
      model: "m",
      messages: [{ role: "user", content: "add things" }],
      tools,
    });

    const choice = res.choices[0];
    expect(choice?.finish_reason).toBe("tool_calls");
    expect(choice?.message.content).toBeNull();
    const calls = (choice?.message.tool_calls ?? []).map((tc) => {
      if (tc.type !== "function") throw new Error(`unexpected tool call type ${tc.type}`);
      return { id: tc.id, name: tc.function.name, args: JSON.parse(tc.function.arguments) as unknown };
    });
    expect(calls).toEqual([
      { id: "call_0_0", name: "add", args: { a: 2, b: 3 } },
      { id: "call_custom", name: "add", args: { a: 1, b: 1 } },
    ]);
  });

  it("streams content and tool calls that reassemble into the full completion with usage", async () => {
    const { client } = await start(() => ({
      content: "Let me add those numbers for you.",
      toolCalls: [
        { name: "add", arguments: { a: 20, b: 22 } },
        { name: "add", arguments: { a: 1, b: 2 } },
      ],
      usage: { prompt_tokens: 30, completion_tokens: 12 },
    }));

    const stream = await client.chat.completions.create({
      model: "m",
      messages: [{ role: "user", content: "add" }],
      tools,
      stream: true,
      stream_options: { include_usage: true },
    });

    let content = "";
    const calls: { id: string; name: string; args: string }[] = [];
    let finishReason: string | null = null;
    let usage: OpenAI.CompletionUsage | null | undefined;
    let chunks = 0;
    for await (const chunk of stream) {
      chunks++;
      if (chunk.usage) usage = chunk.usage;
      const choice = chunk.choices[0];
      if (!choice) continue;
      content += choice.delta.content ?? "";
      for (const d of choice.delta.tool_calls ?? []) {
        const call = (calls[d.index] ??= { id: "", name: "", args: "" });
        call.id += d.id ?? "";
        call.name += d.function?.name ?? "";
        call.args += d.function?.arguments ?? "";
      }
      finishReason = choice.finish_reason ?? finishReason;
    }

    expect(chunks).toBeGreaterThan(5);
    expect(content).toBe("Let me add those numbers for you.");
    expect(calls.map((c) => ({ ...c, args: JSON.parse(c.args) as unknown }))).toEqual([
      { id: "call_0_0", name: "add", args: { a: 20, b: 22 } },
      { id: "call_0_1", name: "add", args: { a: 1, b: 2 } },
    ]);
    expect(finishReason).toBe("tool_calls");
    expect(usage).toMatchObject({ prompt_tokens: 30, completion_tokens: 12, total_tokens: 42 });
  });

  it("streams in a shape the SDK's own stream helper accumulates", async () => {
    const { client } = await start(() => ({ content: "four", toolCalls: [{ name: "add", arguments: { a: 2, b: 2 } }] }));

    const final = await client.chat.completions
      .stream({ model: "m", messages: [{ role: "user", content: "2+2" }], tools, stream_options: { include_usage: true } })
      .finalChatCompletion();

    expect(final.choices[0]?.message.content).toBe("four");
    expect(final.choices[0]?.message.tool_calls?.[0]).toMatchObject({
      id: "call_0_0",
      type: "function",
      function: { name: "add", arguments: '{"a":2,"b":2}' },
    });
    expect(final.usage?.total_tokens).toBe(15);
  });

  it("surfaces a scripted 429 as RateLimitError with a readable retry-after header", async () => {
    const { client } = await start(() => ({ error: { status: 429, message: "slow down", retryAfterSeconds: 7 } }));

    const err: unknown = await client.chat.completions
      .create({ model: "m", messages: [{ role: "user", content: "hi" }] })
      .catch((e: unknown) => e);

    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    const rateLimit = err as InstanceType<typeof OpenAI.RateLimitError>;
    expect(rateLimit.status).toBe(429);
    expect(rateLimit.headers.get("retry-after")).toBe("7");
    expect(rateLimit.message).toContain("slow down");
    expect(rateLimit.code).toBe("rate_limit_exceeded");
  });

  it("records every request body and its headers in order", async () => {
    const { fake, client } = await start((_req, index) => ({ content: `reply ${index}` }));

    const first = await client.chat.completions.create({ model: "m1", messages: [{ role: "user", content: "one" }] });
    const second = await client.chat.completions.create({
      model: "m2",
      messages: [{ role: "user", content: "two" }],
      temperature: 0.2,
    });

    expect([first.choices[0]?.message.content, second.choices[0]?.message.content]).toEqual(["reply 0", "reply 1"]);
    expect(fake.requests).toHaveLength(2);
    expect(fake.requests[0]).toMatchObject({ model: "m1", messages: [{ role: "user", content: "one" }] });
    expect(fake.requests[1]).toMatchObject({ model: "m2", temperature: 0.2 });
    expect(fake.headers[0]?.authorization).toBe("Bearer test");
  });

  it("lists models and answers unknown paths with 404", async () => {
    const { fake, client } = await start(() => ({ content: "unused" }));

    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toContain("fake-model");

    const res = await fetch(`${fake.url}/nope`);
    expect(res.status).toBe(404);
    expect(fake.requests).toHaveLength(0);
  });

  it("routes by system prompt key and conversation turn with scriptByAgent", async () => {
    const { client } = await start(
      scriptByAgent({
        calculator: [{ toolCalls: [{ name: "add", arguments: { a: 1, b: 2 } }] }, { content: "3" }],
        poet: [{ content: "roses" }],
      }),
    );
    const ask = (system: string, history: OpenAI.Chat.Completions.ChatCompletionMessageParam[] = []) =>
      client.chat.completions.create({ model: "m", messages: [{ role: "system", content: system }, ...history] });

    const firstTurn = await ask("You are a calculator agent.");
    expect(firstTurn.choices[0]?.message.tool_calls).toHaveLength(1);

    const secondTurn = await ask("You are a calculator agent.", [
      { role: "user", content: "1+2" },
      { role: "assistant", content: null, tool_calls: [{ id: "c1", type: "function", function: { name: "add", arguments: "{}" } }] },
      { role: "tool", tool_call_id: "c1", content: "3" },
    ]);
    expect(secondTurn.choices[0]?.message.content).toBe("3");

    const poem = await ask("You are a poet.");
    expect(poem.choices[0]?.message.content).toBe("roses");
  });

  it("fails with a 500 naming the problem when scriptByAgent has no match or runs out", async () => {
    const { client } = await start(scriptByAgent({ poet: [{ content: "roses" }] }));

    await expect(
      client.chat.completions.create({ model: "m", messages: [{ role: "system", content: "You are a chef." }] }),
    ).rejects.toMatchObject({ status: 500, message: expect.stringContaining("no script key") });

    await expect(
      client.chat.completions.create({
        model: "m",
        messages: [
          { role: "system", content: "You are a poet." },
          { role: "assistant", content: "roses" },
        ],
      }),
    ).rejects.toMatchObject({ status: 500, message: expect.stringContaining('"poet" exhausted') });
  });
});
