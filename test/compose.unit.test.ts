import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const SMALLCHAIN_SERVICES = ["scheduler", "projector", "llm-worker", "tool-worker"] as const;
const WORKERS = ["llm-worker", "tool-worker"] as const;

type Service = {
  image?: string;
  build?: string | { context?: string; dockerfile?: string };
  command?: string | string[];
  entrypoint?: string | string[];
  environment?: Record<string, string> | string[];
  depends_on?: string[] | Record<string, { condition?: string }>;
  container_name?: string;
  ports?: unknown[];
  profiles?: string[];
  restart?: string;
  volumes?: unknown[];
  healthcheck?: { test?: string | string[]; disable?: boolean; interval?: string; retries?: number };
};
type ComposeFile = { services: Record<string, Service>; volumes?: Record<string, unknown> };

const composeText = readFileSync(`${ROOT}docker-compose.yml`, "utf8");
// `merge: true` resolves the `<<: *smallchain` keys as Compose does.
const compose = parse(composeText, { merge: true }) as ComposeFile;
const services = compose.services;

function service(name: string): Service {
  const found = services[name];
  if (!found) throw new Error(`docker-compose.yml has no service ${name}`);
  return found;
}

function env(svc: Service): Record<string, string> {
  if (!Array.isArray(svc.environment)) return svc.environment ?? {};
  return Object.fromEntries(svc.environment.map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]));
}

function dependsOn(svc: Service): Record<string, string> {
  const deps = svc.depends_on ?? {};
  if (Array.isArray(deps)) return Object.fromEntries(deps.map((d) => [d, "service_started"]));
  return Object.fromEntries(Object.entries(deps).map(([name, d]) => [name, d.condition ?? "service_started"]));
}

/** Dockerfile instructions as [KEYWORD, rest], comments dropped and `\` continuations joined. */
function dockerfileInstructions(): [string, string][] {
  const text = readFileSync(`${ROOT}Dockerfile`, "utf8")
    .split("\n")
    .filter((line) => !/^\s*#/.test(line))
    .join("\n")
    .replace(/\\\n/g, " ");
  return text
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "")
    .map((line) => {
      const [keyword = "", ...rest] = line.split(/\s+/);
      return [keyword.toUpperCase(), rest.join(" ")];
    });
}

/** The compose CLI on this machine: the `docker compose` plugin, else the standalone `docker-compose`, else none. */
function composeCli(): string[] | undefined {
  const candidates = [["docker", "compose"], ["docker-compose"]];
  return candidates.find(([cmd, ...args]) => spawnSync(cmd!, [...args, "version"], { stdio: "ignore", timeout: 30_000 }).status === 0);
}

describe("docker-compose.yml", () => {
  it("runs nats and the four services, all from one image built from the Dockerfile", () => {
    expect(Object.keys(services)).toEqual(expect.arrayContaining(["nats", ...SMALLCHAIN_SERVICES]));
    expect(service("nats").image).toMatch(/^nats:2\.10/);
    for (const name of SMALLCHAIN_SERVICES) {
      const svc = service(name);
      expect(svc.image, name).toBe("smallchain:local");
      expect(svc.build, name).toMatchObject({ context: "." });
      expect(svc.command, name).toEqual([`services/${name}/dist/main.js`]);
      expect(svc.restart, name).toBe("unless-stopped");
    }
  });

  it("gives workers (and the other services) no container_name and no host ports, so --scale works", () => {
    for (const name of [...WORKERS, ...SMALLCHAIN_SERVICES]) {
      expect(service(name).container_name, name).toBeUndefined();
      expect(service(name).ports, name).toBeUndefined();
    }
  });

  it("starts every smallchain service only once nats is healthy, and nats has a healthcheck", () => {
    // then
    for (const name of [...SMALLCHAIN_SERVICES, "example"]) {
      expect(dependsOn(service(name)).nats, name).toBe("service_healthy");
    }
    const nats = service("nats");
    expect(nats.healthcheck?.test).toEqual(expect.arrayContaining([expect.stringContaining("/healthz")]));
    expect(String(nats.command)).toContain("-js");
    expect(nats.volumes).toEqual(expect.arrayContaining([expect.stringMatching(/:\/data$/)]));
    expect(nats.ports).toEqual([expect.stringMatching(/^127\.0\.0\.1:/)]);
  });

  it("health-checks every smallchain service through /healthz with node (no curl in the image), on its metrics port", () => {
    for (const name of SMALLCHAIN_SERVICES) {
      const svc = service(name);
      expect(env(svc).SC_METRICS_PORT, name).toBe("9464");
      const test = svc.healthcheck?.test;
      expect(Array.isArray(test) ? test.slice(0, 3) : test, name).toEqual(["CMD", "node", "-e"]);
      const script = String((test as string[])[3]);
      expect(script, name).toContain("http://127.0.0.1:9464/healthz");
      expect(script, name).toMatch(/process\.exit\(r\.ok\?0:1\)/);
      expect(svc.healthcheck?.interval, name).toBeDefined();
      expect(svc.healthcheck?.retries, name).toBeGreaterThan(0);
      expect(svc.restart, name).toBe("unless-stopped");
    }
    // The one-shot CLI serves no /healthz, and waits for the services to be healthy.
    expect(service("example").healthcheck?.disable).toBe(true);
    for (const name of SMALLCHAIN_SERVICES) expect(dependsOn(service("example"))[name], name).toBe("service_healthy");
  });

  it("connects services to nats by service name and passes the OpenAI key through from the host", () => {
    for (const name of SMALLCHAIN_SERVICES) {
      expect(env(service(name)), name).toMatchObject({
        NATS_URL: "nats://nats:4222",
        OPENAI_API_KEY: "${OPENAI_API_KEY:-}",
      });
    }
  });

  it("runs the example only under the example profile: apply the config, then run the task and wait", () => {
    // given
    const example = service("example");
    // then
    expect(example.profiles).toEqual(["example"]);
    expect(example.restart).toBe("no");
    const script = [example.entrypoint, example.command].flat().join(" ");
    expect(script).toMatch(/apply -f examples\/calculator\.yaml\s*&&.*run do_some_math --wait/);
    expect(Object.keys(dependsOn(example))).toEqual(expect.arrayContaining([...SMALLCHAIN_SERVICES]));
    for (const name of Object.keys(services)) {
      if (name !== "example" && name !== "gateway") expect(service(name).profiles, name).toBeUndefined();
    }
  });

  it("adds the HTTP gateway only under the gateway profile, with its bearer token from the host and its port on loopback", () => {
    const gateway = service("gateway");
    expect(gateway.profiles).toEqual(["gateway"]);
    expect(gateway.command).toEqual(["services/gateway/dist/main.js"]);
    expect(env(gateway)).toMatchObject({ NATS_URL: "nats://nats:4222", SC_GATEWAY_TOKEN: "${SC_GATEWAY_TOKEN:-}", SC_GATEWAY_PORT: "8080" });
    expect(gateway.ports).toEqual(["127.0.0.1:${GATEWAY_PORT:-8080}:8080"]);
    expect(gateway.healthcheck?.test).toBeDefined();
  });

  it("passes `docker compose config -q`, with and without the example profile, where a compose CLI exists", () => {
    // YAML-level checks that hold everywhere: every dependency and named volume is defined.
    for (const [name, svc] of Object.entries(services)) {
      for (const dep of Object.keys(dependsOn(svc))) expect(services, `${name} depends on ${dep}`).toHaveProperty([dep]);
      for (const volume of svc.volumes ?? []) {
        const source = String(volume).split(":")[0] ?? "";
        if (!/^[./~]/.test(source)) expect(compose.volumes ?? {}, `${name} mounts ${source}`).toHaveProperty([source]);
      }
    }

    const cli = composeCli();
    if (!cli) return; // neither `docker compose` nor `docker-compose` here: the checks above are all we can do
    const [cmd, ...base] = cli;
    for (const profile of [[], ["--profile", "example"], ["--profile", "gateway"]]) {
      // when
      const result = spawnSync(cmd!, [...base, "-f", "docker-compose.yml", ...profile, "config", "-q"], {
        cwd: ROOT,
        encoding: "utf8",
        timeout: 60_000,
      });
      // then
      expect(result.status, `${cli.join(" ")} ${profile.join(" ")} config -q: ${result.stderr}`).toBe(0);
    }
  });
});

describe("docker-compose.cluster.yml", () => {
  const NATS_NODES = ["nats1", "nats2", "nats3"] as const;
  const SERVER_LIST = "nats://nats1:4222,nats://nats2:4222,nats://nats3:4222";
  const cluster = parse(readFileSync(`${ROOT}docker-compose.cluster.yml`, "utf8"), { merge: true }) as ComposeFile;
  const svc = (name: string): Service => {
    const found = cluster.services[name];
    if (!found) throw new Error(`docker-compose.cluster.yml has no service ${name}`);
    return found;
  };
  /** A command's value after a flag, e.g. flag(["-m", "8222"], "-m") is "8222". */
  const flag = (command: Service["command"], name: string): string | undefined => {
    const args = Array.isArray(command) ? command : String(command ?? "").split(/\s+/);
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };

  it("runs three JetStream servers in one cluster, each named, with its own volume and routes to the other two", () => {
    expect(Object.keys(cluster.services)).toEqual(expect.arrayContaining([...NATS_NODES, ...SMALLCHAIN_SERVICES]));
    expect(Object.keys(cluster.services).filter((name) => svc(name).image?.startsWith("nats"))).toEqual([...NATS_NODES]);
    const volumes = new Set<string>();
    for (const name of NATS_NODES) {
      const nats = svc(name);
      expect(nats.image, name).toMatch(/^nats:2\.10/);
      expect(nats.command, name).toEqual(expect.arrayContaining(["-js"]));
      expect(flag(nats.command, "-sd"), name).toBe("/data");
      expect(flag(nats.command, "-m"), name).toBe("8222");
      expect(flag(nats.command, "--server_name"), name).toBe(name);
      expect(flag(nats.command, "--cluster_name"), name).toBe("smallchain");
      expect(flag(nats.command, "--cluster"), name).toBe("nats://0.0.0.0:6222");
      const routes = (flag(nats.command, "--routes") ?? "").split(",").sort();
      expect(routes, name).toEqual(NATS_NODES.filter((other) => other !== name).map((other) => `nats://${other}:6222`));
      const volume = (nats.volumes ?? []).map(String).find((v) => v.endsWith(":/data"));
      expect(volume, name).toBeDefined();
      volumes.add(volume!.split(":")[0]!);
      expect(cluster.volumes ?? {}, name).toHaveProperty([volume!.split(":")[0]!]);
      expect(nats.healthcheck?.test, name).toEqual(expect.arrayContaining(["http://127.0.0.1:8222/healthz"]));
      expect(nats.healthcheck?.retries, name).toBeGreaterThan(0);
      expect(nats.ports, name).toEqual([expect.stringMatching(/^127\.0\.0\.1:\$\{NATS[123]_PORT:-422[234]\}:4222$/)]);
      expect(nats.restart, name).toBe("unless-stopped");
    }
    expect(volumes.size).toBe(3);
  });

  it("gives every smallchain process the whole server list and SC_REPLICAS=3, and starts it once all three servers are healthy", () => {
    const smallchain = Object.keys(cluster.services).filter((name) => svc(name).image === "smallchain:local");
    expect(smallchain).toEqual(expect.arrayContaining([...SMALLCHAIN_SERVICES, "gateway", "example"]));
    for (const name of smallchain) {
      expect(env(svc(name)), name).toMatchObject({ NATS_URL: SERVER_LIST, SC_REPLICAS: "3", SC_PREFIX: "${SC_PREFIX:-sc}" });
      for (const node of NATS_NODES) expect(dependsOn(svc(name))[node], `${name} on ${node}`).toBe("service_healthy");
    }
    for (const name of SMALLCHAIN_SERVICES) {
      const s = svc(name);
      expect(s.build, name).toMatchObject({ context: "." });
      expect(s.command, name).toEqual([`services/${name}/dist/main.js`]);
      expect(env(s).OPENAI_API_KEY, name).toBe("${OPENAI_API_KEY:-}");
      expect(s.healthcheck?.test, name).toEqual(service(name).healthcheck?.test);
      expect(s.restart, name).toBe("unless-stopped");
    }
    for (const name of [...WORKERS, ...SMALLCHAIN_SERVICES]) {
      expect(svc(name).container_name, name).toBeUndefined();
      expect(svc(name).ports, name).toBeUndefined();
    }
    expect(svc("gateway").profiles).toEqual(["gateway"]);
    expect(env(svc("gateway")).SC_GATEWAY_TOKEN).toBe("${SC_GATEWAY_TOKEN:-}");
    expect(svc("example").profiles).toEqual(["example"]);
    for (const name of SMALLCHAIN_SERVICES) expect(dependsOn(svc("example"))[name], name).toBe("service_healthy");
  });

  it("passes `docker compose config -q`, with and without profiles, where a compose CLI exists", () => {
    for (const [name, s] of Object.entries(cluster.services)) {
      for (const dep of Object.keys(dependsOn(s))) expect(cluster.services, `${name} depends on ${dep}`).toHaveProperty([dep]);
    }
    const cli = composeCli();
    if (!cli) return;
    const [cmd, ...base] = cli;
    for (const profile of [[], ["--profile", "example"], ["--profile", "gateway"]]) {
      const result = spawnSync(cmd!, [...base, "-f", "docker-compose.cluster.yml", ...profile, "config", "-q"], { cwd: ROOT, encoding: "utf8", timeout: 60_000 });
      expect(result.status, `${cli.join(" ")} -f docker-compose.cluster.yml ${profile.join(" ")} config -q: ${result.stderr}`).toBe(0);
    }
    // And the resolved file still says what the YAML above says (anchors and merges included).
    const resolved = spawnSync(cmd!, [...base, "-f", "docker-compose.cluster.yml", "--profile", "gateway", "config"], { cwd: ROOT, encoding: "utf8", timeout: 60_000 });
    const services = (parse(resolved.stdout) as ComposeFile).services;
    for (const name of [...SMALLCHAIN_SERVICES, "gateway"]) {
      expect(env(services[name]!), name).toMatchObject({ NATS_URL: SERVER_LIST, SC_REPLICAS: "3" });
    }
  });
});

describe("Dockerfile", () => {
  const instructions = dockerfileInstructions();
  const froms = instructions.flatMap(([k], i) => (k === "FROM" ? [i] : []));
  const lastStage = instructions.slice(froms.at(-1));

  it("is a multi-stage build whose runtime stage copies the build output from an earlier stage", () => {
    expect(froms.length).toBeGreaterThanOrEqual(2);
    expect(lastStage.filter(([k, rest]) => k === "COPY" && rest.startsWith("--from=")).length).toBeGreaterThan(0);
    expect(lastStage.some(([k, rest]) => k === "RUN" && /npm run build|tsc/.test(rest))).toBe(false);
  });

  it("runs as a non-root user with NODE_ENV=production and bash and python3 installed", () => {
    const users = lastStage.filter(([k]) => k === "USER").map(([, rest]) => rest.split(":")[0]);
    expect(users.length).toBeGreaterThan(0);
    expect(["root", "0"]).not.toContain(users.at(-1));
    expect(lastStage.some(([k, rest]) => k === "ENV" && /NODE_ENV[= ]production/.test(rest))).toBe(true);
    const installs = lastStage.filter(([k, rest]) => k === "RUN" && rest.includes("apt-get install")).map(([, rest]) => rest);
    expect(installs.join(" ")).toMatch(/--no-install-recommends/);
    expect(installs.join(" ")).toMatch(/\bbash\b/);
    expect(installs.join(" ")).toMatch(/\bpython3\b/);
    expect(installs.join(" ")).toMatch(/rm -rf \/var\/lib\/apt\/lists/);
  });

  it("serves metrics on 9464 and health-checks /healthz with node, since the image has no curl", () => {
    expect(lastStage.some(([k, rest]) => k === "ENV" && /SC_METRICS_PORT[= ]9464/.test(rest))).toBe(true);
    expect(lastStage.some(([k, rest]) => k === "EXPOSE" && rest.split(/\s+/).includes("9464"))).toBe(true);
    const checks = lastStage.filter(([k]) => k === "HEALTHCHECK").map(([, rest]) => rest);
    expect(checks).toHaveLength(1);
    const cmd = JSON.parse(checks[0]!.slice(checks[0]!.indexOf("CMD") + 3).trim()) as string[];
    expect(cmd.slice(0, 2)).toEqual(["node", "-e"]);
    expect(cmd[2]).toContain("/healthz");
    expect(cmd[2]).toContain("process.env.SC_METRICS_PORT||9464");
    expect(checks[0]).not.toMatch(/curl|wget/);
  });
});
