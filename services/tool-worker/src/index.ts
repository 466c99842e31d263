export { startToolWorker, type ToolWorkerOptions } from "./tool-worker.js";
