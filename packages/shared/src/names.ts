/**
 * Every JetStream and subject name derives from one prefix, so tests (and tenants) can isolate themselves.
 * With the default prefix "sc" the names are those of the design: stream SC_EVENTS on sc.run.<runId>.ev (and .llm, .tool, .res), etc.
 */
export type Names = ReturnType<typeof names>;

/** A run's subjects its writes are guarded on: see `Names.runSubject`. */
export type Lane = "ev" | "llm" | "tool";
export const LANES: readonly Lane[] = ["ev", "llm", "tool"];

/** The lane a run subject is, from its last token; undefined for the results (`res`) and anything else. */
export function laneOfSubject(subject: string): Lane | undefined {
  const last = subject.slice(subject.lastIndexOf(".") + 1);
  return last === "ev" || last === "llm" || last === "tool" ? last : undefined;
}

export const DEFAULT_PREFIX = "sc";

export function names(prefix: string = DEFAULT_PREFIX) {
  if (!/^[a-z][a-z0-9]*$/.test(prefix)) {
    throw new Error(`prefix "${prefix}" must be lowercase letters and digits, starting with a letter`);
  }
  const up = prefix.toUpperCase();
  return {
    prefix,
    eventsStream: `${up}_EVENTS`,
    commandsStream: `${up}_COMMANDS`,
    ingressStream: `${up}_INGRESS`,
    runIndexStream: `${up}_RUNINDEX`,
    runIndexSubject: `${prefix}.index.runs`,
    /**
     * A run's events are on four subjects. Its decisions and the inputs people and systems give (approvals, answers,
     * callbacks, cancels, resumes) are on its three lanes, each write on the lane of the run's state it was made from
     * (`laneOf`), guarded by that lane's last sequence: `runLaneSubject(id, "llm")` where the next decision is an LLM
     * call (the LLM workers read it), `"tool"` while the calls of a step are out (the tool workers read it), and
     * `runSubject` (`.ev`, the "ev" lane) otherwise, with the run's request. Two writers at one state write to one
     * lane, so only one lands (see docs/performance.md, session 18). The workers' results of its calls are on
     * `runResultsSubject`, unguarded (deduplicated by their ids): a decision depends on nothing else but the results
     * of the calls it waited for, so a result landing beside it cannot make it stale (session 11).
     */
    runSubject: (runId: string) => `${prefix}.run.${runId}.ev`,
    runResultsSubject: (runId: string) => `${prefix}.run.${runId}.res`,
    runLaneSubject: (runId: string, lane: Lane) => `${prefix}.run.${runId}.${lane}`,
    /** The four subjects of a run, literally (reads look each up by name). */
    runSubjects: (runId: string) => [...LANES.map((l) => `${prefix}.run.${runId}.${l}`), `${prefix}.run.${runId}.res`],
    /** All four subjects of a run, in stream order. */
    runEventsSubject: (runId: string) => `${prefix}.run.${runId}.*`,
    allRunsSubject: `${prefix}.run.*.*`,
    /** Every run's lane of a worker kind: its workers read the commands decisions carry from it. */
    allLaneSubject: (lane: "llm" | "tool") => `${prefix}.run.*.${lane}`,
    runIdOfSubject: (subject: string) => subject.slice(prefix.length + 5, subject.lastIndexOf(".")),
    llmCommandSubject: `${prefix}.cmd.llm`,
    toolCommandSubject: (executor: string) => `${prefix}.cmd.tool.${executor}`,
    allToolCommandsSubject: `${prefix}.cmd.tool.>`,
    allCommandsSubject: `${prefix}.cmd.>`,
    taskSubject: (task: string) => `${prefix}.tasks.${task}`,
    allTasksSubject: `${prefix}.tasks.>`,
    taskOfSubject: (subject: string) => subject.slice(prefix.length + 7),
    liveSubject: (runId: string) => `${prefix}.stream.${runId}`,
    /** Request/reply subjects of people and the outside world: approve or reject, answer, call back. */
    approvalSubject: (runId: string, callId: string) => `${prefix}.approval.${runId}.${callId}`,
    respondSubject: (runId: string, callId: string) => `${prefix}.respond.${runId}.${callId}`,
    callbackSubject: (token: string) => `${prefix}.callback.${token}`,
    /** Resume a paused run, cancel a run and its descendants. */
    resumeSubject: (runId: string) => `${prefix}.resume.${runId}`,
    cancelSubject: (runId: string) => `${prefix}.cancel.${runId}`,
    controlSubjects: [`${prefix}.approval.*.*`, `${prefix}.respond.*.*`, `${prefix}.callback.*`, `${prefix}.resume.*`, `${prefix}.cancel.*`],
    controlQueue: `${prefix}-control`,
    runsBucket: `${prefix}_runs`,
    /** Object Store bucket of payloads too large for an event (tool results over 256 KiB). */
    blobsBucket: `${prefix}_blobs`,
    configBucket: `${prefix}_config`,
    effectsBucket: `${prefix}_effects`,
    /** Calls waiting for a due time; a key per call (`<run>.<call>`), read by every scheduler to wake the run. */
    timersBucket: `${prefix}_timers`,
    /** Calls waiting for people or the outside (approvals, questions, callbacks), for listing. */
    waitsBucket: `${prefix}_waits`,
    /** Runs cancelled lately (a key per run, kept a day): workers drop their commands. */
    cancelledBucket: `${prefix}_cancelled`,
    /** Spend per run, agent and task per budget hour (`<kind>.<name>.<hour>`), written by the projector. */
    spendBucket: `${prefix}_spend`,
    consumers: {
      scheduler: "scheduler",
      projector: "projector",
      llmWorker: "llm-worker",
      toolWorker: "tool-worker",
      /**
       * The workers' consumers of their kind's lane: the commands the decisions carry. (Named anew for the lanes: until
       * session 18 `llm-worker-decisions` and `tool-worker-decisions` read every decision. NATS 2.9 changes a consumer's
       * filter when it is added again, and one so changed was seen to stop delivering.)
       */
      llmDecisions: "llm-worker-lane",
      toolDecisions: "tool-worker-lane",
      ingress: "ingress",
    },
  } as const;
}

/** NATS header names used by Smallchain. */
export const Header = {
  ContentType: "Content-Type",
  EventType: "Sc-Event-Type",
  RunId: "Sc-Run-Id",
  /** On a decision that carries a command: whose it is (`llm` or `tool`), so other consumers skip it unread. */
  Command: "Sc-Command",
  /**
   * On an event or command written by Smallchain's own code from values its types checked at compile time: readers
   * take it after a few checks of its envelope instead of validating it whole (see `decodeTyped`). What comes from
   * outside (a RunRequested any client publishes, a task, an input) has no such header and is validated whole.
   */
  Typed: "Sc-Typed",
} as const;
export type Header = (typeof Header)[keyof typeof Header];
