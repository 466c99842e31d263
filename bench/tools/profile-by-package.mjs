// Self time of a V8 .cpuprofile grouped by where the code lives (package, our workspace, node, GC, idle).
import { readFileSync } from "node:fs";

const profile = JSON.parse(readFileSync(process.argv[2], "utf8"));
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const groups = new Map();
const dt = profile.timeDeltas;
const groupOf = (f) => {
  const url = f.url;
  if (!url) return f.functionName.startsWith("(") ? f.functionName : `native ${f.functionName}`;
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return nm[1];
  if (url.startsWith("node:")) return "node internals";
  const ws = /\/(packages|services)\/([^/]+)\//.exec(url);
  return ws ? `${ws[1]}/${ws[2]}` : url;
};
profile.samples.forEach((id, i) => {
  const g = groupOf(byId.get(id).callFrame);
  groups.set(g, (groups.get(g) ?? 0) + (dt[i] ?? 0));
});
const total = [...groups.values()].reduce((a, b) => a + b, 0);
const idle = groups.get("(idle)") ?? 0;
groups.delete("(idle)");
const busy = total - idle;
console.log(`${(total / 1e6).toFixed(1)} s sampled, ${((busy / total) * 100).toFixed(0)}% busy; share of the busy time:`);
for (const [g, v] of [...groups].sort((a, b) => b[1] - a[1]).slice(0, 20)) console.log(`${((v / busy) * 100).toFixed(1).padStart(5)}%  ${g}`);
