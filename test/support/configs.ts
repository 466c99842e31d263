/**
 * smallchain.yaml for an agent "adder" whose mock LLM replays `replies` (YAML flow mappings, one per LLM call)
 * and may call the builtin add (each call waiting for approval with `approval`); task "sum" starts it, and `runs`
 * named runs of it are started on apply.
 */
export function adderConfig(replies: string[], runs: number, runName = "run", { approval = false } = {}): string {
  return `
llms:
  - name: mock
    provider: mock
    replies:
${replies.map((r) => `      - ${r}`).join("\n")}
agents:
  - { name: adder, llm: mock, tools: [ add ] }
tools:
  - { name: add, builtin: add${approval ? ", approval: required" : ""} }
tasks:
  - { name: sum, user_message: go, agent: adder }
runs:
${Array.from({ length: runs }, (_, i) => `  - { name: ${runName}-${i}, task: sum }`).join("\n")}
`;
}
