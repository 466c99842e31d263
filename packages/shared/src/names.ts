/**
 * Every JetStream and subject name derives from one prefix, so tests (and tenants) can isolate themselves.
 * With the default prefix "sc" the names are those of the design: stream SC_EVENTS on sc.run.<runId>.ev (and .res), etc.
 */
export type Names = ReturnType<typeof names>;

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
     * A run's events are on two subjects. Its decisions and every input from outside (requests, approvals, answers,
     * cancels, a child's end) are on `runSubject`, each decision guarded by that subject's last sequence; the
     * workers' results of its calls are on `runResultsSubject`, unguarded (deduplicated by their ids). A decision
     * depends on nothing else but the results of the calls it waited for, so a result landing beside it cannot make
     * it stale (see docs/performance.md, session 11).
     */
    runSubject: (runId: string) => `${prefix}.run.${runId}.ev`,
    runResultsSubject: (runId: string) => `${prefix}.run.${runId}.res`,
    /** Both subjects of a run, in stream order. */
    runEventsSubject: (runId: string) => `${prefix}.run.${runId}.*`,
    allRunsSubject: `${prefix}.run.*.*`,
    /** Every run's subject of decisions: the workers read the commands decisions carry from it. */
    allDecisionsSubject: `${prefix}.run.*.ev`,
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
      /** The workers' consumers of the runs' decisions (each kind's own): the commands the decisions carry. */
      llmDecisions: "llm-worker-decisions",
      toolDecisions: "tool-worker-decisions",
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
