import { ROOT_CONTEXT, SpanStatusCode, context, propagation, trace, type Attributes, type Context } from "@opentelemetry/api";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BatchSpanProcessor, NodeTracerProvider, SimpleSpanProcessor, type SpanExporter } from "@opentelemetry/sdk-trace-node";

/**
 * OpenTelemetry traces, one trace per run: a run's request starts it, its W3C `traceparent` travels in the
 * RunRequested envelope (children inherit it) and in the `traceparent` header of every command, so the
 * scheduler's decisions, LLM calls and tool calls of a run (and of its child runs) land in one trace.
 * Off unless an OTLP endpoint is configured (OTEL_EXPORTER_OTLP_ENDPOINT or ..._TRACES_ENDPOINT) or a test
 * passes an exporter: then nothing here costs more than a boolean check.
 */
let enabled = false;
const TRACER = "smallchain";

export type Tracing = { shutdown(): Promise<void>; flush(): Promise<void> };

export function initTracing(service: string, opts: { exporter?: SpanExporter; env?: NodeJS.ProcessEnv } = {}): Tracing | undefined {
  const env = opts.env ?? process.env;
  const otlp = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? env.OTEL_EXPORTER_OTLP_ENDPOINT;
  if (!opts.exporter && !otlp) return undefined;
  const processor = opts.exporter ? new SimpleSpanProcessor(opts.exporter) : new BatchSpanProcessor(new OTLPTraceExporter());
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({ "service.name": env.OTEL_SERVICE_NAME ?? `smallchain-${service}` }),
    spanProcessors: [processor],
  });
  provider.register();
  enabled = true;
  return {
    flush: () => provider.forceFlush(),
    shutdown: async () => {
      enabled = false;
      await provider.shutdown();
    },
  };
}

export function tracingEnabled(): boolean {
  return enabled;
}

function contextOf(traceparent: string | undefined): Context {
  return traceparent ? propagation.extract(ROOT_CONTEXT, { traceparent }) : ROOT_CONTEXT;
}

/** The `traceparent` of the active span (to put in a header or an envelope), if tracing is on. */
export function currentTraceparent(): string | undefined {
  if (!enabled) return undefined;
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  return carrier.traceparent;
}

/** Starts a run's trace: a short span for its request, whose traceparent the run keeps. */
export function startRunTrace(runId: string, attributes: Attributes = {}, parent?: string): string | undefined {
  if (!enabled) return parent;
  const span = trace.getTracer(TRACER).startSpan("run requested", { attributes: { "smallchain.run_id": runId, ...attributes } }, contextOf(parent));
  const carrier: Record<string, string> = {};
  propagation.inject(trace.setSpan(ROOT_CONTEXT, span), carrier);
  span.end();
  return carrier.traceparent;
}

/** Runs `fn` in a span that continues `parent` (a traceparent); without tracing, just runs it. */
export async function inSpan<T>(name: string, parent: string | undefined, attributes: Attributes, fn: () => Promise<T>): Promise<T> {
  if (!enabled) return fn();
  return trace.getTracer(TRACER).startActiveSpan(name, { attributes }, contextOf(parent), async (span) => {
    try {
      return await fn();
    } catch (err) {
      span.recordException(err as Error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
      throw err;
    } finally {
      span.end();
    }
  });
}
