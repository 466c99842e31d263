import { readFileSync, readdirSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { AGENT_TOOL_PARAMETERS, BUILTIN_TOOLS, ResolveError, mcpToolName, resolveAgent, type ConfigLookup } from "../run/spec.js";
import { ConfigError, parseConfig, type ConfigIssue, type KnownNames } from "./load.js";
import type { ConfigKind, SmallchainConfig } from "./schema.js";

const calculatorYaml = readFileSync(new URL("../../../../examples/calculator.yaml", import.meta.url), "utf8");

/** A valid base: one mock llm, one builtin tool, one agent, one task. */
const base = `llms:
  - name: mock-llm
    provider: mock
    replies: [{ content: hi }]
tools:
  - name: add
    builtin: add
agents:
  - name: assistant
    llm: mock-llm
    tools: [add]
tasks:
  - name: sums
    user_message: add things
    agent: assistant
`;

/** The ConfigError parseConfig throws for `text` (fails the test if it parses). */
function refused(text: string, known?: KnownNames): ConfigError {
  try {
    parseConfig(text, "smallchain.yaml", known);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error("expected the config to be refused, but it parsed");
}

function onlyIssue(err: ConfigError): ConfigIssue {
  expect(err.issues).toHaveLength(1);
  return err.issues[0]!;
}

describe("examples/", () => {
  it("holds only files that parse and resolve", () => {
    const dir = new URL("../../../../examples/", import.meta.url);
    const files = readdirSync(dir).filter((f) => f.endsWith(".yaml"));
    expect(files).toEqual(expect.arrayContaining(["calculator.yaml", "approvals.yaml"]));
    for (const f of files) expect(() => parseConfig(readFileSync(new URL(f, dir), "utf8"), `examples/${f}`), f).not.toThrow();
  });

  it("gives approvals.yaml an approval with a deadline and waits that fail after a day", () => {
    const config = parseConfig(readFileSync(new URL("../../../../examples/approvals.yaml", import.meta.url), "utf8"));
    const invoice = config.tools.find((t) => t.name === "send_invoice");
    expect(invoice?.approval).toEqual({ required: true, timeout: 86_400_000, on_timeout: "reject" });
    expect(config.tools.find((t) => t.name === "ask_human")).toMatchObject({ builtin: "human_input", timeout: 86_400_000, on_timeout: "fail" });
  });
});

describe("parseConfig", () => {
  it("parses the calculator example", () => {
    const config = parseConfig(calculatorYaml, "examples/calculator.yaml");

    expect(config.llms.map((l) => l.name)).toEqual(["assistant-llm", "operator-llm"]);
    expect(config.agents.map((a) => a.name)).toEqual(["assistant", "calculator_operator"]);
    expect(config.agents[0]?.tools).toEqual([{ agent: "calculator_operator" }]);
    expect(config.tools.map((t) => t.name)).toEqual(["add", "subtract"]);
    expect(config.tasks).toEqual([{ name: "do_some_math", user_message: "add (3 + 4) and (5 + 3) and add the results", agent: "assistant" }]);
    expect(config.runs).toEqual([{ name: "my first run", task: "do_some_math" }]);
  });

  it("fills in the defaults", () => {
    const config = parseConfig(base);

    expect(config.agents[0]).toMatchObject({ system_prompt: "", max_steps: 50 });
    expect(config.llms[0]).toMatchObject({ api_key_env: "OPENAI_API_KEY", parameters: {}, timeout_ms: 120_000 });
    expect(config.runs).toEqual([]);
  });

  it("accepts an empty file as an empty config", () => {
    expect(parseConfig("")).toEqual({ llms: [], agents: [], tools: [], tasks: [], runs: [] });
  });

  describe("refuses", () => {
    it("invalid YAML syntax, with its line", () => {
      const err = refused("llms:\n  - name: a\n   provider: mock\n");

      const issue = onlyIssue(err);
      expect(issue.line).toBe(3);
      expect(issue.path).toBe("");
      expect(issue.message).not.toMatch(/at line \d+/);
      expect(err.message).toContain("smallchain.yaml:3: ");
    });

    it("a field of the wrong type, naming its path with the item's name, and its line", () => {
      const text = base.replace("    tools: [add]\n", '    tools: [add]\n    max_steps: "ten"\n');

      const issue = onlyIssue(refused(text));

      expect(issue.path).toBe("agents[0] (assistant).max_steps");
      expect(issue.line).toBe(12);
      expect(issue.message).toMatch(/expected number/);
    });

    it("an unknown field, naming it and its line", () => {
      const text = base.replace("    tools: [add]\n", "    tools: [add]\n    colour: blue\n");

      const issue = onlyIssue(refused(text));

      expect(issue.path).toBe("agents[0] (assistant)");
      expect(issue.message).toBe('unknown field(s) "colour"');
      expect(issue.line).toBe(12);
    });

    it("an unknown top-level section", () => {
      const issue = onlyIssue(refused(`${base}workers: []\n`));

      expect(issue.message).toBe('unknown field(s) "workers"');
      expect(issue.line).toBe(16);
    });

    it("an agent whose llm does not exist, naming it and the llms there are", () => {
      const text = base.replace("    llm: mock-llm\n", "    llm: gpt-5\n");

      const issue = onlyIssue(refused(text));

      expect(issue).toEqual({
        path: "agents[0] (assistant).llm",
        line: 10,
        message: 'agent "assistant": llm "gpt-5" not found in smallchain.yaml (llms: mock-llm)',
      });
    });

    it("an agent whose tool does not exist, naming it and the tools there are", () => {
      const text = base.replace("    tools: [add]\n", "    tools: [add, multiply]\n");

      const issue = onlyIssue(refused(text));

      expect(issue.path).toBe("agents[0] (assistant).tools[1]");
      expect(issue.line).toBe(11);
      expect(issue.message).toBe('agent "assistant": tool "multiply" not found in smallchain.yaml (tools: add)');
    });

    it("an agent delegating to an agent that does not exist, naming it and the agents there are", () => {
      const text = base.replace("    tools: [add]\n", "    tools: [add, { agent: operator }]\n");

      const issue = onlyIssue(refused(text));

      expect(issue.path).toBe("agents[0] (assistant).tools[1].agent");
      expect(issue.message).toBe('agent "assistant": agent "operator" not found in smallchain.yaml (agents: assistant)');
    });

    it("a task whose agent does not exist, naming it and the agents there are", () => {
      const text = base.replace("    agent: assistant\n", "    agent: helper\n");

      const issue = onlyIssue(refused(text));

      expect(issue).toEqual({
        path: "tasks[0] (sums).agent",
        line: 15,
        message: 'task "sums": agent "helper" not found in smallchain.yaml (agents: assistant)',
      });
    });

    it("a run whose task does not exist", () => {
      const issue = onlyIssue(refused(`${base}runs:\n  - name: nightly\n    task: chores\n`));

      expect(issue.path).toBe("runs[0] (nightly).task");
      expect(issue.message).toBe('run "nightly": task "chores" not found in smallchain.yaml (tasks: sums)');
    });

    it("says 'none' when nothing of the missing kind exists", () => {
      const issue = onlyIssue(refused("tasks:\n  - name: t\n    user_message: m\n    agent: a\n"));

      expect(issue.message).toBe('task "t": agent "a" not found in smallchain.yaml (agents: none)');
    });

    it("duplicate names, pointing at the second one", () => {
      const text = `${base}  - name: sums\n    user_message: again\n    agent: assistant\n`;

      const issue = onlyIssue(refused(text));

      expect(issue).toEqual({ path: "tasks[1] (sums).name", line: 16, message: 'duplicate task name "sums"' });
    });

    it("duplicate names of every kind", () => {
      const text = `llms:
  - { name: l, provider: mock, replies: [{ content: a }] }
  - { name: l, provider: mock, replies: [{ content: b }] }
tools:
  - { name: t, builtin: add }
  - { name: t, builtin: subtract }
agents:
  - { name: a, llm: l }
  - { name: a, llm: l }
runs:
  - { name: r, task: k }
  - { name: r, task: k }
tasks:
  - { name: k, user_message: m, agent: a }
`;

      const messages = refused(text).issues.map((i) => i.message);

      expect(messages).toEqual(
        expect.arrayContaining([
          'duplicate llm name "l"',
          'duplicate tool name "t"',
          'duplicate agent name "a"',
          'duplicate run name "r"',
        ]),
      );
    });

    it("reports every problem of the file at once", () => {
      const text = base.replace("    llm: mock-llm\n", "    llm: gpt-5\n").replace("    agent: assistant\n", "    agent: helper\n");

      expect(refused(text).issues.map((i) => i.path)).toEqual(["agents[0] (assistant).llm", "tasks[0] (sums).agent"]);
    });
  });

  it("accepts references to names applied earlier", () => {
    const text = `agents:
  - name: reviewer
    llm: gpt-5
    tools: [search, { agent: assistant }]
tasks:
  - name: review
    user_message: review it
    agent: reviewer
runs:
  - name: first review
    task: sums
`;
    const known: KnownNames = { llm: ["gpt-5"], tool: ["search"], agent: ["assistant"], task: ["sums"] };

    expect(() => parseConfig(text, "more.yaml", known)).not.toThrow();
  });

  it("lists the names applied earlier among those that exist", () => {
    const text = "agents:\n  - name: reviewer\n    llm: gpt-6\n";

    const issue = onlyIssue(refused(text, { llm: ["gpt-5", "local"] }));

    expect(issue.message).toBe('agent "reviewer": llm "gpt-6" not found in smallchain.yaml or the applied config (llms: gpt-5, local)');
  });

  it("says that nothing was applied, and lists each issue with file, line and path", () => {
    const text = base.replace("    llm: mock-llm\n", "    llm: gpt-5\n");

    let err: unknown;
    try {
      parseConfig(text, "team.yaml");
    } catch (e) {
      err = e;
    }

    expect(err).toBeInstanceOf(ConfigError);
    const configError = err as ConfigError;
    expect(configError.name).toBe("ConfigError");
    expect(configError.file).toBe("team.yaml");
    expect(configError.message).toBe(
      "team.yaml is invalid, nothing was applied:\n" +
        '  team.yaml:10: agents[0] (assistant).llm: agent "assistant": llm "gpt-5" not found in team.yaml (llms: mock-llm)',
    );
  });
});

/** A ConfigLookup over a parsed config, as the config store offers over the applied one. */
function lookupOf(config: SmallchainConfig): ConfigLookup {
  const lists: Record<ConfigKind, { name: string }[]> = { llm: config.llms, agent: config.agents, tool: config.tools, task: config.tasks };
  return {
    llm: (name) => config.llms.find((x) => x.name === name),
    agent: (name) => config.agents.find((x) => x.name === name),
    tool: (name) => config.tools.find((x) => x.name === name),
    task: (name) => config.tasks.find((x) => x.name === name),
    names: (kind) => lists[kind].map((x) => x.name).sort(),
  };
}

describe("resolveAgent", () => {
  const calculator = lookupOf(parseConfig(calculatorYaml));

  it("snapshots the agent with its llm, system prompt and max_steps", () => {
    const agent = resolveAgent("calculator_operator", calculator);

    expect(agent).toMatchObject({ name: "calculator_operator", systemPrompt: "you are a careful calculator operator", maxSteps: 50 });
    expect(agent.llm).toEqual(calculator.llm("operator-llm"));
  });

  it("gives a builtin tool its default description and schema", () => {
    const [add] = resolveAgent("calculator_operator", calculator).tools;

    expect(add).toEqual({
      kind: "builtin",
      name: "add",
      description: BUILTIN_TOOLS.add.description,
      parameters: BUILTIN_TOOLS.add.parameters,
      builtin: "add",
    });
  });

  it("keeps a command tool's own description, schema and executor", () => {
    const subtract = resolveAgent("calculator_operator", calculator).tools[1];

    expect(subtract).toMatchObject({
      kind: "command",
      name: "subtract",
      description: "subtract b from a",
      parameters: { type: "object", properties: { a: { type: "number" }, b: { type: "number" } }, required: ["a", "b"] },
      command: { runtime: "python", timeout_ms: 30_000, env: [] },
    });
  });

  it("gives an agent tool a message parameter and a description from the agent's prompt", () => {
    const tools = resolveAgent("assistant", calculator).tools;

    expect(tools).toEqual([
      {
        kind: "agent",
        name: "calculator_operator",
        description: 'delegate a task to the agent "calculator_operator": you are a careful calculator operator',
        parameters: AGENT_TOOL_PARAMETERS,
        agent: "calculator_operator",
      },
    ]);
    expect(AGENT_TOOL_PARAMETERS).toMatchObject({ properties: { message: { type: "string" } }, required: ["message"] });
  });

  it("throws a ResolveError naming an unknown tool and the tools there are", () => {
    // The file may refer to a tool applied earlier that has since gone from the applied config.
    const config = parseConfig(base.replace("    tools: [add]\n", "    tools: [add, multiply]\n"), "s.yaml", { tool: ["multiply"] });

    expect(() => resolveAgent("assistant", lookupOf(config))).toThrow(ResolveError);
    expect(() => resolveAgent("assistant", lookupOf(config))).toThrow(
      'agent "assistant": tool "multiply" not found in the applied config (tools: add)',
    );
  });

  it("throws a ResolveError naming an unknown agent", () => {
    expect(() => resolveAgent("ghost", calculator)).toThrow(
      new ResolveError('agent "ghost" not found in the applied config (agents: assistant, calculator_operator)'),
    );
  });

  it("throws a ResolveError naming an unknown llm of the agent", () => {
    const config = parseConfig(base.replace("    llm: mock-llm\n", "    llm: gpt-5\n"), "s.yaml", { llm: ["gpt-5"] });

    expect(() => resolveAgent("assistant", lookupOf(config))).toThrow(
      'agent "assistant": llm "gpt-5" not found in the applied config (llms: mock-llm)',
    );
  });

  it("expands an MCP tool into one tool per listed server tool, named <tool>__<name> in OpenAI's alphabet", () => {
    const yaml = base
      .replace("    tools: [add]\n", "    tools: [{ tool: fs, approval: required }]\n")
      .replace(
        "tools:\n  - name: add\n    builtin: add\n",
        `tools:
  - name: fs
    mcp:
      command: node
      args: [server.js]
      tools:
        - { name: read_file, description: read a file, input_schema: { type: object, properties: { path: { type: string } } } }
        - { name: "notes.count", input_schema: { type: object } }
`,
      );
    const tools = resolveAgent("assistant", lookupOf(parseConfig(yaml)));

    expect(tools.tools.map((t) => t.name)).toEqual(["fs__read_file", "fs__notes_count"]);
    expect(tools.tools[0]).toMatchObject({
      kind: "mcp",
      description: "read a file",
      parameters: { properties: { path: { type: "string" } } },
      mcp: { tool: "read_file", server: { command: "node", args: ["server.js"], timeout_ms: 60_000 } },
      approval: { onTimeout: "reject" },
    });
    expect(tools.tools[1]).toMatchObject({ description: "notes.count", mcp: { tool: "notes.count" } });
  });

  it("keeps long or odd MCP tool names valid and distinct", () => {
    const long = mcpToolName("fs", "x".repeat(80));
    expect(long).toMatch(/^[A-Za-z0-9_-]{64}$/);
    expect(long).not.toBe(mcpToolName("fs", `${"x".repeat(79)}y`));
    expect(mcpToolName("fs", "a b/c")).toBe("fs__a_b_c");
  });
});

describe("http and mcp tools in smallchain.yaml", () => {
  it("fills in an http executor's defaults", () => {
    const config = parseConfig(base.replace("    builtin: add\n", "    parameters: { type: object }\n    executor: { http: { url: http://127.0.0.1:1/x } }\n"));
    expect(config.tools[0]!.executor?.http).toEqual({ url: "http://127.0.0.1:1/x", method: "POST", headers: {}, timeout_ms: 30_000, max_response_bytes: 65_536, idempotent: false });
  });

  it("refuses an mcp tool with both a command and a url, or with parameters", () => {
    const both = refused(base.replace("    builtin: add\n", "    mcp: { command: node, url: http://127.0.0.1:1/mcp }\n"));
    expect(both.message).toMatch(/tools\[0\] \(add\)\.mcp: an mcp tool needs exactly one of command \(stdio\) or url/);
    const params = refused(base.replace("    builtin: add\n", "    parameters: { type: object }\n    mcp: { command: node }\n"));
    expect(params.message).toMatch(/parameters: an mcp tool takes its tools' parameters from the server/);
  });
});

describe("waits in the config", () => {
  const base = (tools: string, agentTools = "[ t ]") => `
llms: [ { name: m, provider: mock, replies: [ { content: hi } ] } ]
agents: [ { name: a, llm: m, tools: ${agentTools} } ]
tools:
${tools}
`;

  it("names a duration that is not one, with examples", () => {
    const issue = onlyIssue(refused(base("  - { name: t, builtin: add, approval: { timeout: soon } }")));
    expect(issue.path).toBe("tools[0] (t).approval.timeout");
    expect(issue.message).toContain('"soon" is not a duration (examples: 90s, 5m, 2h, 1d, 1h30m)');
  });

  it("refuses a callback tool with neither subject nor url", () => {
    const issue = onlyIssue(refused(base("  - { name: t, callback: {}, parameters: { type: object } }")));
    expect(issue.message).toBe("a callback needs a subject, a url, or both");
  });

  it("lets an agent require approval for a tool that does not, and lift it for one that does", () => {
    const config = parseConfig(
      base(
        "  - { name: t, builtin: add }\n  - { name: u, builtin: add, approval: { timeout: 90m, on_timeout: fail } }",
        "[ { tool: t, approval: required }, { tool: u, approval: none }, u ]",
      ),
    );
    const lookup = lookupOf(config);
    const [t, uLifted, u] = resolveAgent("a", lookup).tools;
    expect(t?.approval).toEqual({ onTimeout: "reject" });
    expect(uLifted?.approval).toBeUndefined();
    expect(u?.approval).toEqual({ timeoutMs: 5_400_000, onTimeout: "fail" });
  });

  it("names an unknown tool in an agent's { tool: ... } reference", () => {
    const issue = onlyIssue(refused(base("  - { name: t, builtin: add }", "[ { tool: nope, approval: required } ]")));
    expect(issue.path).toBe("agents[0] (a).tools[0].tool");
    expect(issue.message).toContain('tool "nope" not found');
  });
});
