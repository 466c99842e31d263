// What one LLM call through the openai SDK costs against the local fake server, with no NATS and no Smallchain
// around it: the llm-worker's provider in a loop, at 1 and at 64 at once, streamed and not, through the provider's
// transport (undici's request) and through Node's global fetch. The fake server runs in a process of its own, so
// the client's CPU per call (what the llm-worker pays) and the server's are told apart. Compare the calls/s with
// the raw chain's steps/s: each step of the openai deployment makes one such call.
// node bench/tools/sdk-call.mjs [calls]
import { openAIProvider } from "../../services/llm-worker/dist/providers/openai.js";
import { requestFetch } from "../../services/llm-worker/dist/providers/transport.js";
import { cpuMeter } from "../dist/bench/src/cpu.js";
import { pool, summarize } from "../dist/bench/src/stats.js";
import { startFakeOpenAIProcess } from "../dist/bench/src/fake-openai-process.js";

const calls = Number(process.argv[2] ?? 3000);
const fake = await startFakeOpenAIProcess(Number.MAX_SAFE_INTEGER);
const messages = [{ role: "system", content: "You are a bench." }, { role: "user", content: "go" }];
const tools = [{ name: "add", description: "adds", parameters: { type: "object", properties: { a: { type: "number" }, b: { type: "number" } } } }];
for (const [transport, fetch] of [["undici request", requestFetch()], ["global fetch", globalThis.fetch]]) {
  const provider = openAIProvider({}, fetch);
  for (const stream of [true, false]) {
    const llm = { name: "bench", provider: "openai", model: "fake", base_url: fake.url, api_key_env: "OPENAI_API_KEY", stream, timeout_ms: 60_000 };
    const call = () => provider({ command: { llm, tools }, messages, signal: new AbortController().signal });
    await pool(calls, 64, call); // warm-up
    for (const concurrency of [1, 64]) {
      const latencies = [];
      const t0 = performance.now();
      const meter = cpuMeter({ client: process.pid, server: fake.pid });
      await pool(calls, concurrency, async () => {
        const t = performance.now();
        await call();
        latencies.push(performance.now() - t);
      });
      const seconds = (performance.now() - t0) / 1000;
      const cpu = meter()(calls);
      console.log(
        `${transport}, ${stream ? "streamed" : "not streamed"}, ${concurrency} at once: ${Math.round(calls / seconds)} calls/s, p50 ${summarize(latencies).p50} ms; CPU ms a call: client ${cpu.client}, fake server ${cpu.server}`,
      );
    }
  }
}
fake.stop();
