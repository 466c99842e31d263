import { createRequire } from "node:module";
import type * as Yaml from "yaml";
import type { ZodError } from "zod";
import { SmallchainConfig, type AgentToolRef, type ConfigKind } from "./schema.js";

export type ConfigIssue = { path: string; line?: number; message: string };

/** A config file that cannot be applied. Nothing from it is applied; every issue names its field and line. */
export class ConfigError extends Error {
  override name = "ConfigError";
  constructor(
    readonly file: string,
    readonly issues: ConfigIssue[],
  ) {
    super(
      `${file} is invalid, nothing was applied:\n` +
        issues.map((i) => `  ${file}${i.line ? `:${i.line}` : ""}: ${i.path ? `${i.path}: ` : ""}${i.message}`).join("\n"),
    );
  }
}

/** Names already known elsewhere (e.g. applied earlier), so a file may refer to them. */
export type KnownNames = Partial<Record<ConfigKind, Iterable<string>>>;

/**
 * The yaml library, loaded when a config is first parsed: 72 modules that every CLI command and service would
 * otherwise load at start-up, where only apply and the services' config files parse YAML.
 */
let yaml: typeof Yaml | undefined;
function yamlLib(): typeof Yaml {
  return (yaml ??= createRequire(import.meta.url)("yaml") as typeof Yaml);
}

/** Parses and validates a smallchain.yaml text: syntax, schema, then every reference between its parts. */
export function parseConfig(text: string, file = "smallchain.yaml", known: KnownNames = {}): SmallchainConfig {
  const { LineCounter, parseDocument, isNode } = yamlLib();
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      file,
      doc.errors.map((e) => ({
        path: "",
        line: e.linePos?.[0].line,
        // The pretty message repeats the position and quotes the source; the line number says it already.
        message: (e.message.split("\n")[0] ?? e.message).replace(/ at line \d+, column \d+:?$/, ""),
      })),
    );
  }
  const raw: unknown = doc.toJS() ?? {};
  const lineOf = (path: readonly PropertyKey[]): number | undefined => {
    for (let n = path.length; n >= 0; n--) {
      const node = doc.getIn(path.slice(0, n) as (string | number)[], true);
      if (isNode(node) && node.range) return lineCounter.linePos(node.range[0]).line;
    }
    return undefined;
  };
  const parsed = SmallchainConfig.safeParse(raw);
  if (!parsed.success) {
    throw new ConfigError(file, zodIssues(parsed.error, raw, lineOf));
  }
  const issues = referenceIssues(parsed.data, known, file).map((i) => ({
    path: formatPath(i.path, raw),
    line: lineOf(i.path),
    message: i.message,
  }));
  if (issues.length > 0) throw new ConfigError(file, issues);
  return parsed.data;
}

function zodIssues(
  error: ZodError,
  raw: unknown,
  lineOf: (path: readonly PropertyKey[]) => number | undefined,
): ConfigIssue[] {
  return error.issues.map((issue) => {
    let message = issue.message;
    if (issue.code === "unrecognized_keys") message = `unknown field(s) ${issue.keys.map((k) => `"${k}"`).join(", ")}`;
    const path = issue.code === "unrecognized_keys" && issue.keys[0] ? [...issue.path, issue.keys[0]] : issue.path;
    return { path: formatPath(issue.path, raw), line: lineOf(path), message };
  });
}

/** `agents[1] (calculator_operator).llm`: the index and, where there is one, the item's name. */
function formatPath(path: readonly PropertyKey[], raw: unknown): string {
  let out = "";
  let node: unknown = raw;
  for (const key of path) {
    node = node !== null && typeof node === "object" ? (node as Record<PropertyKey, unknown>)[key] : undefined;
    if (typeof key === "number") {
      const name = node !== null && typeof node === "object" ? (node as { name?: unknown }).name : undefined;
      out += `[${key}]${typeof name === "string" ? ` (${name})` : ""}`;
    } else {
      out += `${out ? "." : ""}${String(key)}`;
    }
  }
  return out;
}

type RefIssue = { path: (string | number)[]; message: string };

function referenceIssues(config: SmallchainConfig, known: KnownNames, file: string): RefIssue[] {
  const issues: RefIssue[] = [];
  const sets = {
    llm: new Set([...(known.llm ?? []), ...config.llms.map((l) => l.name)]),
    agent: new Set([...(known.agent ?? []), ...config.agents.map((a) => a.name)]),
    tool: new Set([...(known.tool ?? []), ...config.tools.map((t) => t.name)]),
    task: new Set([...(known.task ?? []), ...config.tasks.map((t) => t.name)]),
  };
  const plural = { llm: "llms", agent: "agents", tool: "tools", task: "tasks" } as const;
  const missing = (kind: ConfigKind, name: string, path: (string | number)[], owner: string) => {
    if (sets[kind].has(name)) return;
    const have = [...sets[kind]].join(", ") || "none";
    const where = [...(known[kind] ?? [])].length > 0 ? `${file} or the applied config` : file;
    issues.push({ path, message: `${owner}: ${kind} "${name}" not found in ${where} (${plural[kind]}: ${have})` });
  };
  const duplicates = (kind: keyof typeof plural, items: { name: string }[]) => {
    const seen = new Set<string>();
    items.forEach((item, i) => {
      if (seen.has(item.name)) issues.push({ path: [plural[kind], i, "name"], message: `duplicate ${kind} name "${item.name}"` });
      seen.add(item.name);
    });
  };
  duplicates("llm", config.llms);
  duplicates("agent", config.agents);
  duplicates("tool", config.tools);
  duplicates("task", config.tasks);

  config.agents.forEach((agent, i) => {
    const owner = `agent "${agent.name}"`;
    missing("llm", agent.llm, ["agents", i, "llm"], owner);
    agent.tools.forEach((ref: AgentToolRef, j) => {
      if (typeof ref === "string") missing("tool", ref, ["agents", i, "tools", j], owner);
      else if ("tool" in ref) missing("tool", ref.tool, ["agents", i, "tools", j, "tool"], owner);
      else missing("agent", ref.agent, ["agents", i, "tools", j, "agent"], owner);
    });
  });
  config.tasks.forEach((task, i) => missing("agent", task.agent, ["tasks", i, "agent"], `task "${task.name}"`));
  const runNames = new Set<string>();
  config.runs.forEach((run, i) => {
    missing("task", run.task, ["runs", i, "task"], `run "${run.name}"`);
    if (runNames.has(run.name)) issues.push({ path: ["runs", i, "name"], message: `duplicate run name "${run.name}"` });
    runNames.add(run.name);
  });
  return issues;
}
