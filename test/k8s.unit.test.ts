import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { parse, parseAllDocuments } from "yaml";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const K8S = `${ROOT}deploy/k8s/`;
const SERVICES = { scheduler: 2, projector: 2, "llm-worker": 2, "tool-worker": 2, gateway: 2 } as const;
/** Applied by hand, never by `kubectl apply -k`: see kustomization.yaml. */
const BY_HAND = ["openai-secret.example.yaml", "calculator-example-job.yaml"];

type Manifest = { file: string; apiVersion: string; kind: string; metadata: { name: string; annotations?: Record<string, string> }; [k: string]: unknown };
type Probe = { httpGet?: { path?: string; port?: string | number } };
type EnvVar = { name: string; value?: string; valueFrom?: { configMapKeyRef?: { name: string; key: string }; secretKeyRef?: { name: string; key: string; optional?: boolean } } };
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

const files = readdirSync(K8S).filter((f) => f.endsWith(".yaml"));
const manifests: Manifest[] = files
  .filter((f) => f !== "kustomization.yaml")
  .flatMap((file) =>
    parseAllDocuments(readFileSync(`${K8S}${file}`, "utf8")).map((doc) => {
      if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors.map((e) => e.message).join("; ")}`);
      return { ...(doc.toJS() as Omit<Manifest, "file">), file } as Manifest;
    }),
  );

function find<T extends Manifest = Manifest>(kind: string, name: string): T {
  const found = manifests.find((m) => m.kind === kind && m.metadata.name === name);
  if (!found) throw new Error(`no ${kind} ${name} in deploy/k8s`);
  return found as T;
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
    const kustomization = parse(readFileSync(`${K8S}kustomization.yaml`, "utf8")) as {
      kind: string;
      namespace: string;
      resources: string[];
      images: { name: string; newName?: string; newTag?: string }[];
    };
    expect(kustomization.kind).toBe("Kustomization");
    expect(kustomization.namespace).toBe("smallchain");
    expect(find("Namespace", "smallchain").file).toBe("namespace.yaml");
    expect([...kustomization.resources].sort()).toEqual(files.filter((f) => f !== "kustomization.yaml" && !BY_HAND.includes(f)).sort());
    expect(kustomization.images.map((i) => i.name)).toEqual(["smallchain"]);

    // Where kubectl is installed, its kustomize builds the same objects, all in the namespace, images set.
    if (spawnSync("kubectl", ["version", "--client"], { stdio: "ignore", timeout: 30_000 }).status !== 0) return;
    const built = spawnSync("kubectl", ["kustomize", K8S], { encoding: "utf8", timeout: 60_000 });
    expect(built.status, built.stderr).toBe(0);
    const objects = parseAllDocuments(built.stdout).map((d) => d.toJS() as Manifest & { spec?: { template?: PodTemplate } });
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
    expect(find<Manifest & { data: Record<string, string> }>("ConfigMap", "smallchain").data.NATS_URL).toBe("nats://nats:4222");
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
  });
});
