import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "@nats-io/transport-node";

export type LocalNats = { url: string; started?: string; stop(): Promise<void> };

async function reachable(url: string): Promise<boolean> {
  try {
    const nc = await connect({ servers: url, timeout: 1500, reconnect: false });
    await nc.close();
    return true;
  } catch {
    return false;
  }
}

function onPath(bin: string): boolean {
  return spawnSync(process.platform === "win32" ? "where" : "which", [bin], { stdio: "ignore" }).status === 0;
}

async function waitFor(url: string, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await reachable(url)) return true;
    await new Promise((r) => setTimeout(r, 250));
  }
  return false;
}

/**
 * The NATS for `smallchain dev`: the one at NATS_URL if it answers; else, for the default local address,
 * a `nats-server -js` from PATH (data in a temp dir), or a `nats` container when Docker is there.
 */
export async function ensureLocalNats(url: string, log: (line: string) => void): Promise<LocalNats> {
  if (await reachable(url)) return { url, stop: async () => {} };
  const local = /^nats:\/\/(127\.0\.0\.1|localhost):4222$/.test(url);
  if (local && onPath("nats-server")) {
    const dir = mkdtempSync(join(tmpdir(), "smallchain-nats-"));
    log(`no NATS at ${url}; starting nats-server -js (data in ${dir})`);
    const child = spawn("nats-server", ["-js", "-a", "127.0.0.1", "-p", "4222", "-sd", dir], { stdio: "ignore" });
    if (await waitFor(url, 10_000)) {
      return {
        url,
        started: "nats-server",
        stop: async () => {
          child.kill("SIGTERM");
        },
      };
    }
    child.kill("SIGKILL");
  }
  if (local && onPath("docker")) {
    log(`no NATS at ${url}; starting a nats:2.10-alpine container (smallchain-nats)`);
    const run = spawnSync("docker", ["run", "-d", "--rm", "--name", "smallchain-nats", "-p", "127.0.0.1:4222:4222", "nats:2.10-alpine", "-js"], {
      encoding: "utf8",
    });
    if (run.status === 0 && (await waitFor(url, 30_000))) {
      return {
        url,
        started: "docker",
        stop: async () => {
          spawnSync("docker", ["rm", "-f", "smallchain-nats"], { stdio: "ignore" });
        },
      };
    }
    log(`docker could not start NATS: ${run.stderr?.trim() ?? ""}`);
  }
  throw new Error(
    `no NATS server answers at ${url}. Start one (docker run -p 4222:4222 nats -js, or nats-server -js) or set NATS_URL.`,
  );
}
