// How a fresh installation's cost per step falls as its processes warm up (V8 compiles the hot paths):
// successive pools of 64 concurrent runs, each with its steps/s and CPU ms per step.
// node bench/tools/warmup.mjs [pools] [runs-per-pool]   (BENCH_MODE=in-process for one process)
import { connect } from "@nats-io/transport-node";
import { Observer, applyConfig, benchConfig, cleanup, measureSteps, startServices } from "../dist/bench/src/smallchain.js";
import { cpuMeter, natsServerPid } from "../dist/bench/src/cpu.js";

const [pools = "5", runs = "384"] = process.argv.slice(2);
const prefix = `bwarm${Math.random().toString(36).slice(2, 7)}`;
const nc = await connect({ servers: process.env.NATS_URL ?? "nats://127.0.0.1:4222" });
const inst = await startServices(nc, prefix, process.env.BENCH_MODE ?? "processes");
try {
  await applyConfig(inst.client, benchConfig("mock", 10));
  const obs = new Observer(nc, prefix);
  for (let i = 0; i < Number(pools); i++) {
    const meter = cpuMeter({ ...inst.pids(), bench: process.pid, "nats-server": natsServerPid() });
    const r = await measureSteps(inst, obs, 64, Number(runs), 10);
    const cpu = meter()(r.steps);
    const total = Object.values(cpu).reduce((a, b) => a + b, 0);
    console.log(`pool ${i + 1}: ${r.steadyStepsPerSecond} steps/s at 64, CPU ms per step ${total.toFixed(3)} ${JSON.stringify(cpu)}`);
  }
  obs.close();
} finally {
  await inst.stop();
  await cleanup(nc, prefix);
  await nc.close();
}
