/** What running a tool produced. A failure is a result the agent sees, not an exception. */
export type ToolOutcome = { ok: true; output: string } | { ok: false; error: string };
