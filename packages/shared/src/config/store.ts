import type { KV } from "@nats-io/kv";
import type { z } from "zod";
import { decode, encode } from "../codec.js";
import type { ConfigLookup } from "../run/spec.js";
import { AgentConfig, LlmConfig, TaskConfig, ToolConfig, type ConfigKind, type SmallchainConfig } from "./schema.js";

const SCHEMAS = { llm: LlmConfig, agent: AgentConfig, tool: ToolConfig, task: TaskConfig } as const;
type Item<K extends ConfigKind> = z.infer<(typeof SCHEMAS)[K]>;
export const CONFIG_KINDS: ConfigKind[] = ["llm", "agent", "tool", "task"];

/**
 * The applied config in the `config` bucket, one key per object (`agent.assistant`), so every apply is a
 * revision of each object it changes (like kubectl apply). Readers keep a watched copy in memory.
 */
export class ConfigStore {
  private readonly items = new Map<string, unknown>();

  private constructor(private readonly kv: KV) {}

  /** Opens the store; with `watch`, a live copy follows every apply. */
  static async open(kv: KV, { watch = false } = {}): Promise<ConfigStore> {
    const store = new ConfigStore(kv);
    if (watch) await store.watch();
    return store;
  }

  private async watch(): Promise<void> {
    const iter = await this.kv.watch({ key: ">" });
    let ready!: () => void;
    const initial = new Promise<void>((r) => (ready = r));
    void (async () => {
      for await (const e of iter) {
        if (e.operation === "PUT") this.remember(e.key, e.value);
        else this.items.delete(e.key);
        // delta: entries still pending; 0 marks the end of the initial values (later updates call it again, harmlessly).
        if (e.delta === 0) ready();
      }
    })();
    // An empty bucket sends no initial entry.
    const status = await this.kv.status();
    if (status.values === 0) ready();
    await initial;
  }

  private remember(key: string, value: Uint8Array): void {
    const kind = key.split(".")[0] as ConfigKind;
    const schema = SCHEMAS[kind];
    if (!schema) return;
    this.items.set(key, decode(schema, value, `config ${key}`));
  }

  /** Loads one object into memory if the watch has not brought it yet (an apply may be a few ms ahead of it). */
  async fetch<K extends ConfigKind>(kind: K, name: string): Promise<Item<K> | undefined> {
    const key = `${kind}.${name}`;
    if (!this.items.has(key)) {
      const entry = await this.kv.get(key);
      if (entry && entry.operation === "PUT") this.remember(key, entry.value);
    }
    return this.items.get(key) as Item<K> | undefined;
  }

  /** Loads an agent and everything it refers to, so `lookup()` can resolve it synchronously. */
  async prefetchAgent(name: string, seen = new Set<string>()): Promise<void> {
    if (seen.has(name)) return;
    seen.add(name);
    const agent = await this.fetch("agent", name);
    if (!agent) return;
    await this.fetch("llm", agent.llm);
    for (const ref of agent.tools) {
      if (typeof ref === "string") await this.fetch("tool", ref);
      else if ("tool" in ref) await this.fetch("tool", ref.tool);
      else await this.fetch("agent", ref.agent);
    }
  }

  /** Loads everything (for the CLI). */
  async loadAll(): Promise<void> {
    const keys: string[] = [];
    for await (const k of await this.kv.keys()) keys.push(k);
    await Promise.all(
      keys.map(async (k) => {
        const e = await this.kv.get(k);
        if (e && e.operation === "PUT") this.remember(k, e.value);
      }),
    );
  }

  lookup(): ConfigLookup {
    const get = <K extends ConfigKind>(kind: K) => (name: string) => this.items.get(`${kind}.${name}`) as Item<K> | undefined;
    return {
      llm: get("llm"),
      agent: get("agent"),
      tool: get("tool"),
      task: get("task"),
      names: (kind) =>
        [...this.items.keys()].filter((k) => k.startsWith(`${kind}.`)).map((k) => k.slice(kind.length + 1)).sort(),
    };
  }

  /** Stores every object of a validated config; returns how many changed. */
  async apply(config: SmallchainConfig): Promise<{ key: string; changed: boolean }[]> {
    const entries: [string, unknown][] = [
      ...config.llms.map((x) => [`llm.${x.name}`, x] as [string, unknown]),
      ...config.tools.map((x) => [`tool.${x.name}`, x] as [string, unknown]),
      ...config.agents.map((x) => [`agent.${x.name}`, x] as [string, unknown]),
      ...config.tasks.map((x) => [`task.${x.name}`, x] as [string, unknown]),
    ];
    return Promise.all(
      entries.map(async ([key, value]) => {
        const bytes = encode(value);
        const current = await this.kv.get(key);
        if (current && current.operation === "PUT" && Buffer.from(current.value).equals(Buffer.from(bytes))) {
          return { key, changed: false };
        }
        await this.kv.put(key, bytes);
        this.items.set(key, value);
        return { key, changed: true };
      }),
    );
  }
}
