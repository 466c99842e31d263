import type { Attributes, Context } from "@opentelemetry/api";
import type { SpanExporter } from "@opentelemetry/sdk-trace-node";

/**
 * OpenTelemetry traces, one trace per run: a run's request starts it, its W3C `traceparent` travels in the
 * RunRequested envelope (children inherit it) and in the `traceparent` header of every command, so the
 * scheduler's decisions, LLM calls and tool calls of a run (and of its child runs) land in one trace.
 * Off unless an OTLP endpoint is configured (OTEL_EXPORTER_OTLP_ENDPOINT or ..._TRACES_ENDPOINT) or a test
 * passes an exporter: then nothing here costs more than a check, and the SDK is not even loaded (the CLI
 * starts faster for it).
 */
type Api = typeof import("@opentelemetry/api");
let otel: Api | undefined;
const TRACER = "smallchain";

export type Tracing = { shutdown(): Promise<void>; flush(): Promise<void> };

export async function initTracing(service: string, opts: { exporter?: SpanExporter; env?: NodeJS.ProcessEnv } = {}): Promise<Tracing | undefined> {
  const env = opts.env ?? process.env;
  const otlp = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? env.OTEL_EXPORTER_OTLP_ENDPOINT;
  if (!opts.exporter && !otlp) return undefined;
  const [api, sdk, resources] = await Promise.all([import("@opentelemetry/api"), import("@opentelemetry/sdk-trace-node"), import("@opentelemetry/resources")]);
  const exporter = opts.exporter ?? new (await import("@opentelemetry/exporter-trace-otlp-http")).OTLPTraceExporter();
  const processor = opts.exporter ? new sdk.SimpleSpanProcessor(exporter) : new sdk.BatchSpanProcessor(exporter);
  const provider = new sdk.NodeTracerProvider({
    resource: resources.resourceFromAttributes({ "service.name": env.OTEL_SERVICE_NAME ?? `smallchain-${service}` }),
    spanProcessors: [processor],
  });
  provider.register();
  otel = api;
  return {
    flush: () => provider.forceFlush(),
    shutdown: async () => {
      otel = undefined;
      await provider.shutdown();
    },
  };
}

export function tracingEnabled(): boolean {
  return otel !== undefined;
}

function contextOf(api: Api, traceparent: string | undefined): Context {
  return traceparent ? api.propagation.extract(api.ROOT_CONTEXT, { traceparent }) : api.ROOT_CONTEXT;
}

/** The `traceparent` of the active span (to put in a header or an envelope), if tracing is on. */
export function currentTraceparent(): string | undefined {
  if (!otel) return undefined;
  const carrier: Record<string, string> = {};
  otel.propagation.inject(otel.context.active(), carrier);
  return carrier.traceparent;
}

/** Starts a run's trace: a short span for its request, whose traceparent the run keeps. */
export function startRunTrace(runId: string, attributes: Attributes = {}, parent?: string): string | undefined {
  const api = otel;
  if (!api) return parent;
  const span = api.trace.getTracer(TRACER).startSpan("run requested", { attributes: { "smallchain.run_id": runId, ...attributes } }, contextOf(api, parent));
  const carrier: Record<string, string> = {};
  api.propagation.inject(api.trace.setSpan(api.ROOT_CONTEXT, span), carrier);
  span.end();
  return carrier.traceparent;
}

/** Runs `fn` in a span that continues `parent` (a traceparent); without tracing, just runs it. */
export async function inSpan<T>(name: string, parent: string | undefined, attributes: Attributes, fn: () => Promise<T>): Promise<T> {
  const api = otel;
  if (!api) return fn();
  return api.trace.getTracer(TRACER).startActiveSpan(name, { attributes }, contextOf(api, parent), async (span) => {
    try {
      return await fn();
    } catch (err) {
      span.recordException(err as Error);
      span.setStatus({ code: api.SpanStatusCode.ERROR, message: (err as Error).message });
      throw err;
    } finally {
      span.end();
    }
  });
}
