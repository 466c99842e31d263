import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { parse, parseAllDocuments } from "yaml";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const K8S = `${ROOT}deploy/k8s/`;
/** The manifests `kubectl apply -k deploy/k8s` applies (deploy/k8s/kustomization.yaml only points here). */
const BASE = `${K8S}base/`;
/** The overlay for a 3-node NATS cluster: kubectl apply -k deploy/k8s/cluster. */
const CLUSTER = `${K8S}cluster/`;
const SERVICES = { scheduler: 2, projector: 2, "llm-worker": 2, "tool-worker": 2, gateway: 2 } as const;
/** Applied by hand, never by `kubectl apply -k`: see base/kustomization.yaml. They stay in deploy/k8s itself. */
const BY_HAND = ["openai-secret.example.yaml", "calculator-example-job.yaml"];

type Manifest = { file: string; apiVersion: string; kind: string; metadata: { name: string; annotations?: Record<string, string> }; [k: string]: unknown };
type Probe = { httpGet?: { path?: string; port?: string | number } };
type EnvVar = {
  name: string;
  value?: string;
  valueFrom?: { configMapKeyRef?: { name: string; key: string }; secretKeyRef?: { name: string; key: string; optional?: boolean }; fieldRef?: { fieldPath: string } };
};
type Container = {
  name: string;
  image?: string;
  args?: string[];
  env?: EnvVar[];
  ports?: { name?: string; containerPort: number }[];
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: { allowPrivilegeEscalation?: boolean; runAsNonRoot?: boolean; capabilities?: { drop?: string[] } };
};
type PodTemplate = {
  metadata?: { labels?: Record<string, string>; annotations?: Record<string, string> };
  spec: { containers: Container[]; securityContext?: { runAsNonRoot?: boolean; runAsUser?: number } };
};
type Workload = Manifest & { spec: { replicas?: number; selector: { matchLabels: Record<string, string> }; template: PodTemplate } };

/** The YAML files of a folder, its kustomization.yaml left out. */
const yamlFiles = (dir: string) => readdirSync(dir).filter((f) => f.endsWith(".yaml") && f !== "kustomization.yaml");
const load = (dir: string, file: string): Manifest[] =>
  parseAllDocuments(readFileSync(`${dir}${file}`, "utf8")).map((doc) => {
    if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors.map((e) => e.message).join("; ")}`);
    return { ...(doc.toJS() as Omit<Manifest, "file">), file } as Manifest;
  });
const files = yamlFiles(BASE);
const manifests: Manifest[] = [...files.flatMap((f) => load(BASE, f)), ...BY_HAND.flatMap((f) => load(K8S, f))];

function pick<T extends Manifest = Manifest>(objects: Manifest[], kind: string, name: string): T {
  const found = objects.find((m) => m.kind === kind && m.metadata.name === name);
  if (!found) throw new Error(`no ${kind} ${name}`);
  return found as T;
}

function find<T extends Manifest = Manifest>(kind: string, name: string): T {
  return pick<T>(manifests, kind, name);
}

/** Where kubectl is installed, `kubectl kustomize DIR` as objects; undefined without kubectl. */
function kustomize(dir: string): (Manifest & { spec?: { template?: PodTemplate } })[] | undefined {
  if (spawnSync("kubectl", ["version", "--client"], { stdio: "ignore", timeout: 30_000 }).status !== 0) return undefined;
  const built = spawnSync("kubectl", ["kustomize", dir], { encoding: "utf8", timeout: 60_000 });
  expect(built.status, built.stderr).toBe(0);
  return parseAllDocuments(built.stdout).map((d) => ({ ...(d.toJS() as Manifest & { spec?: { template?: PodTemplate } }), file: `kustomize ${dir}` }));
}

/** List fields that a strategic merge patch merges item by item, and the key it matches items by. */
const MERGE_KEYS: Record<string, (item: Record<string, unknown>) => unknown> = {
  containers: (i) => i.name,
  initContainers: (i) => i.name,
  env: (i) => i.name,
  volumes: (i) => i.name,
  volumeMounts: (i) => i.mountPath,
  // A container's ports by containerPort, a Service's by port.
  ports: (i) => i.containerPort ?? i.port,
};

/**
 * The strategic merge patches the overlay uses, applied as kustomize applies them: maps merge key by key, the lists
 * above item by item, every other list and every scalar is replaced. Enough for validating a patched object offline.
 */
function strategicMerge(base: unknown, patch: unknown, field = ""): unknown {
  if (Array.isArray(base) && Array.isArray(patch) && MERGE_KEYS[field]) {
    const key = MERGE_KEYS[field]!;
    const merged = base.map((b: Record<string, unknown>) => {
      const p = patch.find((q: Record<string, unknown>) => key(q) === key(b));
      return p === undefined ? b : strategicMerge(b, p);
    });
    return [...merged, ...patch.filter((p: Record<string, unknown>) => !base.some((b: Record<string, unknown>) => key(b) === key(p)))];
  }
  if (base && patch && typeof base === "object" && typeof patch === "object" && !Array.isArray(base) && !Array.isArray(patch)) {
    const out: Record<string, unknown> = { ...(base as Record<string, unknown>) };
    for (const [k, v] of Object.entries(patch)) out[k] = k in out ? strategicMerge(out[k], v, k) : v;
    return out;
  }
  return patch;
}

/**
 * Validates one object against the Kubernetes OpenAPI schema of its apiVersion and kind, as shipped (compiled,
 * offline) by kubernetes-models. Like kubeval without --strict, unknown fields pass: the checks below look up the
 * fields that matter by their right names, so a misspelt one fails there.
 */
async function validate(object: Record<string, unknown>): Promise<void> {
  const { apiVersion, kind } = object as { apiVersion?: string; kind?: string };
  if (!apiVersion || !kind) throw new Error("apiVersion and kind are required");
  let Model: new (data: unknown) => { validate(): void };
  try {
    Model = ((await import(/* @vite-ignore */ `kubernetes-models/${apiVersion}/${kind}`)) as Record<string, typeof Model>)[kind]!;
  } catch (err) {
    throw new Error(`unknown apiVersion/kind ${apiVersion}/${kind}`, { cause: err });
  }
  if (!Model) throw new Error(`unknown kind ${kind} in ${apiVersion}`);
  new Model(object).validate();
}

describe("deploy/k8s", () => {
  it("holds only objects that validate against their Kubernetes schema", async () => {
    expect(manifests.length).toBeGreaterThan(8);
    for (const m of manifests) {
      const { file, ...object } = m;
      await expect(validate(object), `${file}: ${m.kind} ${m.metadata.name}`).resolves.toBeUndefined();
    }
  });

  it("has a validator that refuses broken manifests", async () => {
    const { file: _, ...good } = structuredClone(find<Workload>("Deployment", "scheduler"));
    await expect(validate(good)).resolves.toBeUndefined();
    const broken = (change: (d: Workload) => void) => {
      const d = structuredClone(good) as Workload;
      change(d);
      return validate(d);
    };
    await expect(broken((d) => void (d.spec.replicas = "two" as unknown as number))).rejects.toThrow(/spec\/replicas must be integer/);
    await expect(broken((d) => void (d.spec.template.spec.containers[0]!.resources!.limits!.cpu = "lots"))).rejects.toThrow(/limits\/cpu must match format "quantity"/);
    await expect(broken((d) => void delete (d.spec as Partial<Workload["spec"]>).selector)).rejects.toThrow(/spec must have required property selector/);
    await expect(broken((d) => void (d.spec.template.spec.containers[0]!.ports![0]!.containerPort = "9464" as unknown as number))).rejects.toThrow(
      /containerPort must be integer/,
    );
    await expect(validate({ ...good, apiVersion: "apps/v1", kind: "Deploymnet" })).rejects.toThrow(/unknown apiVersion\/kind apps\/v1\/Deploymnet/);
  });

  it("lists every manifest in kustomization.yaml except the ones applied by hand, under one namespace", () => {
    const kustomization = parse(readFileSync(`${BASE}kustomization.yaml`, "utf8")) as {
      kind: string;
      namespace: string;
      resources: string[];
      images: { name: string; newName?: string; newTag?: string }[];
    };
    expect(kustomization.kind).toBe("Kustomization");
    expect(kustomization.namespace).toBe("smallchain");
    expect(find("Namespace", "smallchain").file).toBe("namespace.yaml");
    expect([...kustomization.resources].sort()).toEqual([...files].sort());
    expect(kustomization.images.map((i) => i.name)).toEqual(["smallchain"]);
    // deploy/k8s itself applies the base (kustomize refuses an overlay whose base is its parent folder, hence base/),
    // and holds only the files applied by hand besides.
    const top = parse(readFileSync(`${K8S}kustomization.yaml`, "utf8")) as { kind: string; resources: string[] };
    expect(top.kind).toBe("Kustomization");
    expect(top.resources).toEqual(["base"]);
    expect(yamlFiles(K8S).sort()).toEqual([...BY_HAND].sort());

    // Where kubectl is installed, its kustomize builds the same objects, all in the namespace, images set.
    const objects = kustomize(K8S);
    if (!objects) return;
    expect(objects.map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual(
      manifests.filter((m) => !BY_HAND.includes(m.file)).map((m) => `${m.kind}/${m.metadata.name}`).sort(),
    );
    for (const o of objects.filter((o) => o.kind !== "Namespace")) expect((o.metadata as { namespace?: string }).namespace).toBe("smallchain");
    const images = objects.flatMap((o) => o.spec?.template?.spec.containers.map((c) => c.image) ?? []);
    expect(images.filter((i) => i?.startsWith("smallchain"))).toEqual(Array(5).fill("smallchain:local"));
  });

  it("runs NATS with JetStream as a StatefulSet with a volume claim behind a headless Service", () => {
    const sts = find<Workload & { spec: { serviceName: string; volumeClaimTemplates: { metadata: { name: string } }[] } }>("StatefulSet", "nats");
    const svc = find<Manifest & { spec: { clusterIP: string; selector: Record<string, string>; ports: { port: number }[] } }>("Service", "nats");
    expect(sts.spec.serviceName).toBe("nats");
    expect(svc.spec.clusterIP).toBe("None");
    expect(svc.spec.ports.map((p) => p.port)).toContain(4222);
    expect(sts.spec.template.metadata?.labels).toMatchObject(svc.spec.selector);
    const nats = sts.spec.template.spec.containers[0]!;
    expect(nats.args).toEqual(expect.arrayContaining(["-js", "-sd", "/data"]));
    expect(sts.spec.volumeClaimTemplates.map((v) => v.metadata.name)).toEqual(["data"]);
    expect(find<Manifest & { data: Record<string, string> }>("ConfigMap", "smallchain").data).toMatchObject({ NATS_URL: "nats://nats:4222", SC_REPLICAS: "1" });
  });

  it("runs each service as a Deployment with probes on /healthz, resources, a non-root user and scrape annotations", () => {
    const config = find<Manifest & { data: Record<string, string> }>("ConfigMap", "smallchain").data;
    for (const [name, replicas] of Object.entries(SERVICES)) {
      const d = find<Workload>("Deployment", name);
      const pod = d.spec.template;
      const c = pod.spec.containers[0]!;
      expect(d.spec.replicas, name).toBe(replicas);
      expect(pod.metadata?.labels, name).toMatchObject(d.spec.selector.matchLabels);
      expect(c.image, name).toBe("smallchain");
      expect(c.args, name).toEqual([`services/${name}/dist/main.js`]);
      const env = Object.fromEntries((c.env ?? []).map((e) => [e.name, e]));
      expect(env.NATS_URL?.valueFrom?.configMapKeyRef, name).toEqual({ name: "smallchain", key: "NATS_URL" });
      expect(env.SC_METRICS_PORT?.value, name).toBe("9464");
      expect(env.SC_REPLICAS?.valueFrom?.configMapKeyRef, name).toEqual({ name: "smallchain", key: "SC_REPLICAS" });
      for (const e of c.env ?? []) {
        const ref = e.valueFrom?.configMapKeyRef;
        if (ref) expect(config, `${name} ${e.name}`).toHaveProperty([ref.key]);
      }
      const metricsPort = c.ports?.find((p) => p.containerPort === 9464)?.name;
      expect(metricsPort, name).toBeDefined();
      for (const probe of [c.readinessProbe, c.livenessProbe]) expect(probe?.httpGet, name).toEqual({ path: "/healthz", port: metricsPort });
      expect(c.resources?.requests, name).toEqual({ cpu: expect.any(String), memory: expect.any(String) });
      expect(c.resources?.limits, name).toEqual({ cpu: expect.any(String), memory: expect.any(String) });
      expect(pod.spec.securityContext?.runAsNonRoot, name).toBe(true);
      expect(pod.spec.securityContext?.runAsUser, name).not.toBe(0);
      expect(c.securityContext, name).toMatchObject({ allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } });
      expect(pod.metadata?.annotations, name).toMatchObject({ "prometheus.io/scrape": "true", "prometheus.io/port": "9464", "prometheus.io/path": "/metrics" });
    }
  });

  it("gives the llm-worker the OpenAI key from an optional Secret, whose example holds only a placeholder", () => {
    const c = find<Workload>("Deployment", "llm-worker").spec.template.spec.containers[0]!;
    const key = c.env?.find((e) => e.name === "OPENAI_API_KEY")?.valueFrom?.secretKeyRef;
    expect(key).toEqual({ name: "smallchain-openai", key: "OPENAI_API_KEY", optional: true });
    const secret = find<Manifest & { stringData: Record<string, string> }>("Secret", "smallchain-openai");
    expect(secret.file).toBe("openai-secret.example.yaml");
    expect(secret.stringData.OPENAI_API_KEY).toBe("sk-REPLACE-ME");
  });

  it("carries examples/calculator.yaml unchanged in a ConfigMap, which the example Job mounts", () => {
    const cm = find<Manifest & { data: Record<string, string> }>("ConfigMap", "calculator-example");
    expect(cm.data["calculator.yaml"]).toBe(readFileSync(`${ROOT}examples/calculator.yaml`, "utf8"));
    const job = find<Manifest & { spec: { template: PodTemplate & { spec: { volumes: { configMap?: { name: string } }[] } } } }>("Job", "calculator-example");
    expect(job.spec.template.spec.volumes.map((v) => v.configMap?.name)).toContain("calculator-example");
    // The CLI provisions streams too: it must ask for the same number of copies as the services.
    const env = job.spec.template.spec.containers[0]!.env ?? [];
    expect(env.find((e) => e.name === "SC_REPLICAS")?.valueFrom?.configMapKeyRef).toEqual({ name: "smallchain", key: "SC_REPLICAS" });
  });
});

describe("deploy/k8s/cluster", () => {
  type Kustomization = { kind: string; namespace?: string; resources: string[]; patches: { path: string }[] };
  type StatefulSet = Workload & {
    spec: {
      serviceName: string;
      podManagementPolicy?: string;
      template: PodTemplate & { spec: { volumes?: { name: string; configMap?: { name: string } }[] } };
    };
  };
  type Container2 = Container & {
    volumeMounts?: { name: string; mountPath: string }[];
    startupProbe?: Probe;
  };
  const kustomization = parse(readFileSync(`${CLUSTER}kustomization.yaml`, "utf8")) as Kustomization;
  const own = kustomization.resources.filter((r) => !r.startsWith("../")).flatMap((f) => load(CLUSTER, f));
  const patches = kustomization.patches.flatMap((p) => load(CLUSTER, p.path));
  const baseObjects = manifests.filter((m) => !BY_HAND.includes(m.file));
  /** The base with the overlay's patches applied and its own objects added: what the overlay applies. */
  const overlay: Manifest[] = [
    ...baseObjects.map((m) => {
      const patch = patches.find((p) => p.kind === m.kind && p.metadata.name === m.metadata.name);
      return patch ? ({ ...(strategicMerge(m, patch) as Manifest), file: `${m.file} + cluster/${patch.file}` } as Manifest) : m;
    }),
    ...own,
  ];

  /** What makes it a cluster, checked on the objects offline and again on what `kubectl kustomize` builds. */
  function expectCluster(objects: Manifest[]): void {
    const sts = pick<StatefulSet>(objects, "StatefulSet", "nats");
    expect(sts.spec.replicas).toBe(3);
    // A clustered server is healthy only with a meta leader, which needs two servers: start them together.
    expect(sts.spec.podManagementPolicy).toBe("Parallel");
    const nats = sts.spec.template.spec.containers.find((c) => c.name === "nats") as Container2;
    expect(nats.args).toEqual(["-c", "/etc/nats/nats.conf"]);
    expect(nats.env?.find((e) => e.name === "POD_NAME")?.valueFrom?.fieldRef).toEqual({ fieldPath: "metadata.name" });
    expect(nats.ports).toEqual(expect.arrayContaining([{ name: "cluster", containerPort: 6222 }, { name: "client", containerPort: 4222 }]));
    const mounts = Object.fromEntries((nats.volumeMounts ?? []).map((m) => [m.mountPath, m.name]));
    expect(mounts["/data"]).toBe("data");
    const configVolume = sts.spec.template.spec.volumes?.find((v) => v.name === mounts["/etc/nats"]);
    expect(configVolume?.configMap?.name).toBe("nats-config");
    for (const probe of [nats.startupProbe, nats.readinessProbe, nats.livenessProbe]) expect(probe?.httpGet?.path).toBe("/healthz?js-enabled-only=true");

    // nats.conf: each server named after its pod, JetStream on the volume, routes to every pod of the StatefulSet.
    const conf = pick<Manifest & { data: Record<string, string> }>(objects, "ConfigMap", "nats-config").data["nats.conf"]!;
    expect(conf).toMatch(/^server_name: \$POD_NAME$/m);
    expect(conf).toMatch(/jetstream\s*\{\s*store_dir: \/data\s*\}/);
    const cluster = /cluster\s*\{([\s\S]*?)\n\}/.exec(conf)?.[1] ?? "";
    expect(cluster).toMatch(/^\s*name: smallchain$/m);
    expect(cluster).toMatch(/^\s*listen: 0\.0\.0\.0:6222$/m);
    const routes = /routes:\s*\[([^\]]*)\]/.exec(cluster)?.[1]?.trim().split(/[\s,]+/) ?? [];
    expect(routes).toEqual([0, 1, 2].map((i) => `nats://nats-${i}.${sts.spec.serviceName}:6222`));

    const svc = pick<Manifest & { spec: { clusterIP: string; ports: { name?: string; port: number; targetPort?: string }[] } }>(objects, "Service", sts.spec.serviceName);
    expect(svc.spec.clusterIP).toBe("None");
    expect(svc.spec.ports).toEqual(expect.arrayContaining([{ name: "cluster", port: 6222, targetPort: "cluster" }, { name: "client", port: 4222, targetPort: "client" }]));
    expect(svc.spec.ports.filter((p) => p.port === 6222)).toHaveLength(1);

    // Every service connects to all three servers and keeps 3 copies; the rest of the base's settings stay.
    const config = pick<Manifest & { data: Record<string, string> }>(objects, "ConfigMap", "smallchain").data;
    expect(config).toEqual({
      NATS_URL: "nats://nats-0.nats:4222,nats://nats-1.nats:4222,nats://nats-2.nats:4222",
      SC_REPLICAS: "3",
      SC_PREFIX: "sc",
      LOG_LEVEL: "info",
    });
    for (const name of Object.keys(SERVICES)) {
      const env = pick<Workload>(objects, "Deployment", name).spec.template.spec.containers[0]!.env ?? [];
      for (const key of ["NATS_URL", "SC_REPLICAS"]) {
        expect(env.find((e) => e.name === key)?.valueFrom?.configMapKeyRef, `${name} ${key}`).toEqual({ name: "smallchain", key });
      }
    }

    const pdb = pick<Manifest & { spec: { maxUnavailable?: number; selector: { matchLabels: Record<string, string> } } }>(objects, "PodDisruptionBudget", "nats");
    expect(pdb.spec.maxUnavailable).toBe(1);
    expect(sts.spec.template.metadata?.labels).toMatchObject(pdb.spec.selector.matchLabels);
  }

  it("builds on the base and patches only objects the base has", () => {
    expect(kustomization.kind).toBe("Kustomization");
    expect(kustomization.namespace).toBe("smallchain");
    expect(kustomization.resources).toContain("../base");
    // Every file in the folder is used, as a resource or a patch.
    expect([...kustomization.resources.filter((r) => !r.startsWith("../")), ...kustomization.patches.map((p) => p.path)].sort()).toEqual(yamlFiles(CLUSTER).sort());
    for (const p of patches) expect(() => pick(baseObjects, p.kind, p.metadata.name), `${p.file}`).not.toThrow();
    expect(patches.map((p) => `${p.kind}/${p.metadata.name}`).sort()).toEqual(["ConfigMap/smallchain", "Service/nats", "StatefulSet/nats"]);
  });

  it("holds only objects that validate against their Kubernetes schema, patched ones once patched", async () => {
    for (const m of [...own, ...overlay.filter((o) => o.file.includes(" + "))]) {
      const { file, ...object } = m;
      await expect(validate(object), `${file}: ${m.kind} ${m.metadata.name}`).resolves.toBeUndefined();
    }
  });

  it("runs three NATS servers that route to each other, and every service on all three with SC_REPLICAS=3", () => {
    expectCluster(overlay);
  });

  it("has a nats.conf that nats-server accepts, where nats-server is installed", () => {
    const bin = ["nats-server", "/usr/sbin/nats-server", "/usr/local/bin/nats-server"].find(
      (b) => spawnSync(b, ["--version"], { stdio: "ignore", timeout: 30_000 }).status === 0,
    );
    if (!bin) return;
    const dir = mkdtempSync(join(tmpdir(), "sc-nats-conf-"));
    try {
      const file = join(dir, "nats.conf");
      writeFileSync(file, pick<Manifest & { data: Record<string, string> }>(own, "ConfigMap", "nats-config").data["nats.conf"]!);
      const ok = spawnSync(bin, ["-t", "-c", file], { encoding: "utf8", env: { ...process.env, POD_NAME: "nats-0" }, timeout: 30_000 });
      expect(ok.status, ok.stderr).toBe(0);
      // Without the downward API's POD_NAME the server refuses to start rather than pick a name of its own.
      const { POD_NAME: _, ...without } = process.env;
      const refused = spawnSync(bin, ["-t", "-c", file], { encoding: "utf8", env: without, timeout: 30_000 });
      expect(refused.status).not.toBe(0);
      expect(refused.stderr).toMatch(/POD_NAME/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("builds with kubectl kustomize, where kubectl is installed, into valid objects with the same cluster settings", async () => {
    const objects = kustomize(CLUSTER);
    if (!objects) return;
    expect(objects.map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual(overlay.map((m) => `${m.kind}/${m.metadata.name}`).sort());
    for (const o of objects.filter((o) => o.kind !== "Namespace")) expect((o.metadata as { namespace?: string }).namespace, `${o.kind}/${o.metadata.name}`).toBe("smallchain");
    for (const o of objects) {
      const { file: _, ...object } = o;
      await expect(validate(object), `${o.kind} ${o.metadata.name}`).resolves.toBeUndefined();
    }
    const images = objects.flatMap((o) => o.spec?.template?.spec.containers.map((c) => c.image) ?? []);
    expect(images.filter((i) => i?.startsWith("smallchain"))).toEqual(Array(5).fill("smallchain:local"));
    expectCluster(objects);
  });
});
