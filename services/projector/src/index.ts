export { startProjector, type ProjectorOptions } from "./projector.js";
export { startProjectorThread, type ProjectorThread, type ProjectorThreadData } from "./thread.js";
