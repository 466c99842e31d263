import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import type { TestProject } from "vitest/node";

declare module "vitest" {
  export interface ProvidedContext {
    natsUrl: string;
  }
}

const NATS_IMAGE = "nats:2.9-alpine";
const CHECK_TIMEOUT_MS = 3_000;

export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  const given = process.env.NATS_URL;
  if (given) {
    await assertJetStreamReachable(given);
    project.provide("natsUrl", given);
    return undefined;
  }

  if (process.env.CI === "true") {
    throw new Error("NATS_URL is not set. CI must provide a NATS server with JetStream (e.g. a `nats` service container run with `-js`) via NATS_URL.");
  }

  const { url, stop } = await startNatsContainer();
  process.env.NATS_URL = url;
  project.provide("natsUrl", url);
  return async () => {
    delete process.env.NATS_URL;
    await stop();
  };
}

async function assertJetStreamReachable(url: string): Promise<void> {
  try {
    const nc = await connect({ servers: url, timeout: CHECK_TIMEOUT_MS, reconnect: false });
    try {
      const jsm = await jetstreamManager(nc, { timeout: CHECK_TIMEOUT_MS });
      await jsm.getAccountInfo();
    } finally {
      await nc.close();
    }
  } catch (err) {
    throw new Error(`NATS_URL=${url} is not reachable or has no JetStream: ${errorMessage(err)}`, { cause: err });
  }
}

async function startNatsContainer(): Promise<{ url: string; stop: () => Promise<void> }> {
  // Imported lazily: loading testcontainers is slow and pointless when NATS_URL is given.
  const { GenericContainer, Wait, getContainerRuntimeClient } = await import("testcontainers");

  try {
    await getContainerRuntimeClient();
  } catch (err) {
    throw new Error(
      "Integration tests need NATS with JetStream, but NATS_URL is not set and Docker is not available " +
        `(${errorMessage(err)}). Either start a local server with \`nats-server -js\` and run with ` +
        "NATS_URL=nats://127.0.0.1:4222, or start Docker so a NATS container can be launched.",
      { cause: err },
    );
  }

  const container = await new GenericContainer(NATS_IMAGE)
    .withCommand(["-js"])
    .withExposedPorts(4222)
    .withWaitStrategy(Wait.forLogMessage(/Server is ready/))
    .start();
  const url = `nats://${container.getHost()}:${container.getMappedPort(4222)}`;
  return {
    url,
    stop: async () => {
      await container.stop();
    },
  };
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
