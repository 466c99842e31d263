import { userInfo } from "node:os";
import { Client, ConfigError, ControlError, ResolveError, connectNats, names, type NatsConnection } from "@smallchain/shared";

export type GlobalOptions = { nats?: string; prefix?: string };

/** Exit codes scripts can rely on. */
export const Exit = { Ok: 0, Error: 1, Invalid: 2, RunNotCompleted: 3, Refused: 4 } as const;

/** An error the user can fix from its message alone; no stack trace is printed. */
export class UserError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = Exit.Invalid,
  ) {
    super(message);
  }
}

/** Who answered, recorded with the answer: --by, else the local user. */
export function who(opts: { by?: string }): string {
  if (opts.by) return opts.by;
  try {
    return userInfo().username;
  } catch {
    return "cli";
  }
}

export async function openClient(opts: GlobalOptions): Promise<{ client: Client; nc: NatsConnection }> {
  const nc = await connectNats("smallchain-cli", {
    ...(opts.nats !== undefined && { servers: opts.nats.split(",") }),
    maxReconnectAttempts: 2,
    timeout: 5000,
  });
  return { nc, client: await Client.connect(nc, names(opts.prefix), { bind: true }) };
}

export async function withClient<T>(opts: GlobalOptions, fn: (client: Client) => Promise<T>): Promise<T> {
  const { nc, client } = await openClient(opts);
  try {
    return await fn(client);
  } finally {
    await nc.close();
  }
}

export function exitCodeOf(err: unknown): number {
  if (err instanceof UserError) return err.exitCode;
  if (err instanceof ConfigError || err instanceof ResolveError) return Exit.Invalid;
  if (err instanceof ControlError) return err.code === "invalid" ? Exit.Invalid : Exit.Refused;
  return Exit.Error;
}
