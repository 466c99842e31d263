// Runs the bench agent at a concurrency for a while against the four service processes, printing their pids
// first (to attach strace or perf): node bench/tools/load.mjs [concurrency] [runs] [delay-ms-before-start]
// BENCH_LLM=openai runs the agent through the openai SDK against the fake server, in a process of its own
// ("fake-openai" in the CPU figures). BENCH_SERVICE_ENV: JSON of environment variables for the services.
import { connect } from "@nats-io/transport-node";
import { Observer, applyConfig, benchConfig, cleanup, measureSteps, startServices } from "../dist/bench/src/smallchain.js";
import { cpuMeter, natsServerPid } from "../dist/bench/src/cpu.js";
import { startFakeOpenAIProcess } from "../dist/bench/src/fake-openai-process.js";

const [concurrency = "64", runs = "384", delay = "3000"] = process.argv.slice(2);
const prefix = `bload${Math.random().toString(36).slice(2, 7)}`;
const nc = await connect({ servers: process.env.NATS_URL ?? "nats://127.0.0.1:4222" });
const inst = await startServices(nc, prefix, process.env.BENCH_MODE ?? "processes", JSON.parse(process.env.BENCH_SERVICE_ENV ?? "{}"));
const llm = process.env.BENCH_LLM ?? "mock";
const fake = llm === "openai" ? await startFakeOpenAIProcess(10) : undefined;
await applyConfig(inst.client, benchConfig(llm, 10, fake?.url));
const obs = new Observer(nc, prefix);
// Warm-up, as in the bench: fresh processes run their first few thousand steps before V8 has compiled them.
await measureSteps(inst, obs, 64, 384, 10);
console.log(JSON.stringify(inst.pids()));
await new Promise((r) => setTimeout(r, Number(delay)));
const meter = cpuMeter({ ...inst.pids(), bench: process.pid, "nats-server": natsServerPid(), ...(fake && { "fake-openai": fake.pid }) });
const r = await measureSteps(inst, obs, Number(concurrency), Number(runs), 10);
console.log(`${r.stepsPerSecond} steps/s, p50 ${r.latencyMs.p50} ms; CPU ms per step ${JSON.stringify(meter()(r.steps))}`);
obs.close();
await inst.stop();
fake?.stop();
await cleanup(nc, prefix);
await nc.close();
