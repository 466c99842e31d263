export { startProjector, type ProjectorOptions } from "./projector.js";
