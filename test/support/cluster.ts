import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { freePort, natsServerBinary } from "./nats-server.js";

export type ClusterNode = { name: string; port: number; clusterPort: number; dir: string; proc?: ChildProcess; log: string };

export type Cluster = {
  nodes: ClusterNode[];
  /** Every node's client URL, comma-separated (what NATS_URL gets). */
  urls: string;
  kill(name: string, signal?: NodeJS.Signals): Promise<void>;
  start(name: string): Promise<void>;
  stop(): Promise<void>;
};

/** A JetStream cluster of `size` nats-server processes on loopback, each with its own ports and store. */
export async function startCluster(size = 3): Promise<Cluster> {
  const bin = natsServerBinary();
  const root = mkdtempSync(join(tmpdir(), "sc-cluster-"));
  const nodes: ClusterNode[] = [];
  for (let i = 1; i <= size; i++) {
    nodes.push({ name: `n${i}`, port: await freePort(), clusterPort: await freePort(), dir: join(root, `n${i}`), log: "" });
  }
  const routes = nodes.map((n) => `nats://127.0.0.1:${n.clusterPort}`).join(",");
  const node = (name: string) => {
    const n = nodes.find((x) => x.name === name);
    if (!n) throw new Error(`no cluster node ${name}`);
    return n;
  };

  const start = async (name: string) => {
    const n = node(name);
    const args = ["-js", "-sd", n.dir, "-a", "127.0.0.1", "-p", String(n.port), "-n", n.name, "--cluster_name", "smallchain", "--cluster", `nats://127.0.0.1:${n.clusterPort}`, "--routes", routes];
    const proc = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
    proc.stdout?.on("data", (d: Buffer) => (n.log += d.toString()));
    proc.stderr?.on("data", (d: Buffer) => (n.log += d.toString()));
    n.proc = proc;
    const end = Date.now() + 15_000;
    while (!n.log.includes("Server is ready")) {
      if (proc.exitCode !== null) throw new Error(`nats-server ${name} exited: ${n.log}`);
      if (Date.now() > end) throw new Error(`nats-server ${name} did not start: ${n.log}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  const kill = async (name: string, signal: NodeJS.Signals = "SIGKILL") => {
    const p = node(name).proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise((r) => p.once("exit", r));
    p.kill(signal);
    await exited;
  };

  await Promise.all(nodes.map((n) => start(n.name)));
  const urls = nodes.map((n) => `nats://127.0.0.1:${n.port}`).join(",");
  // JetStream answers once the nodes have elected a meta leader.
  const nc = await connect({ servers: urls.split(",") });
  try {
    const end = Date.now() + 30_000;
    for (;;) {
      try {
        await (await jetstreamManager(nc)).getAccountInfo();
        break;
      } catch (err) {
        if (Date.now() > end) throw new Error(`the cluster has no JetStream meta leader: ${(err as Error).message}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  } finally {
    await nc.close();
  }
  return {
    nodes,
    urls,
    kill,
    start,
    async stop() {
      await Promise.all(nodes.map((n) => kill(n.name)));
      rmSync(root, { recursive: true, force: true });
    },
  };
}
