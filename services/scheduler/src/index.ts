export { startScheduler, type SchedulerOptions, type Service } from "./scheduler.js";
export { decide, childRunId, type DecideInput } from "./decide.js";
export { effectsOf, type Effect } from "./effects.js";
