import { Readable, pipeline, type Transform } from "node:stream";
import { createBrotliDecompress, createGunzip, createInflate } from "node:zlib";
import { EnvHttpProxyAgent, interceptors, request, type Dispatcher } from "undici";

export type Fetch = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

/**
 * The openai SDK's transport: fetch's interface over undici's `request`.
 *
 * Node's global fetch cost 0.90-0.94 ms of the client's CPU per streamed call against the local fake server at
 * 1 at once, the SDK's own work included; this costs 0.63-0.66 (bench/tools/sdk-call.mjs, docs/performance.md). fetch builds a WHATWG Request, runs the fetch
 * algorithm's steps and wraps the connection in web streams on both sides; `request` writes the body and hands
 * back a Node stream, and only the response becomes a web stream, because the SDK reads it as one.
 *
 * What fetch would have done is kept: redirects are followed, compressed answers are decoded, and
 * HTTP_PROXY, HTTPS_PROXY and NO_PROXY are honoured (Node 20's global fetch ignores them). Anything but a
 * string or bytes as the body (a form, a stream), or a Request as the input, goes to the global fetch.
 */
export function requestFetch(dispatcher: Dispatcher = dispatcherFor(process.env)): Fetch {
  return async (input, init = {}) => {
    const body = init.body;
    if (input instanceof Request || !(body == null || typeof body === "string" || body instanceof Uint8Array)) {
      return fetch(input, init);
    }
    const url = typeof input === "string" ? input : input.href;
    const method = init.method ?? "GET";
    const res = await request(url, {
      method: method as Dispatcher.HttpMethod,
      headers: init.headers instanceof Headers ? init.headers : new Headers(init.headers),
      body: body ?? null,
      signal: init.signal ?? undefined,
      dispatcher,
    });
    const headers = new Headers();
    for (const [name, value] of Object.entries(res.headers)) {
      if (Array.isArray(value)) for (const v of value) headers.append(name, v);
      else if (value !== undefined) headers.append(name, value);
    }
    // These carry no body, and Response refuses one for them.
    const empty = method === "HEAD" || res.statusCode === 204 || res.statusCode === 205 || res.statusCode === 304;
    if (empty) await res.body.dump();
    const decoder = empty ? undefined : decoderFor(res.headers["content-encoding"]);
    // A decoder that fails destroys itself with the error, and so errors the web stream the SDK reads.
    const stream = decoder ? pipeline(res.body, decoder, () => {}) : res.body;
    const response = new Response(empty ? null : (Readable.toWeb(stream) as ReadableStream<Uint8Array>), {
      status: res.statusCode,
      headers,
    });
    Object.defineProperty(response, "url", { value: url });
    return response;
  };
}

/** We ask for no compression; a server that compresses anyway is decoded as fetch would. */
function decoderFor(encoding: string | string[] | undefined): Transform | undefined {
  switch (typeof encoding === "string" ? encoding.trim().toLowerCase() : undefined) {
    case "gzip":
    case "x-gzip":
      return createGunzip();
    case "deflate":
      return createInflate();
    case "br":
      return createBrotliDecompress();
    default:
      return undefined;
  }
}

/**
 * A connection pool that reaches each host through the proxy `env` names for its scheme (HTTPS_PROXY, HTTP_PROXY,
 * or their lower-case forms), except for the hosts in NO_PROXY, and follows redirects.
 */
export function dispatcherFor(env: NodeJS.ProcessEnv): Dispatcher {
  // Empty strings, not undefined: undici would read process.env for a missing one.
  return new EnvHttpProxyAgent({
    httpProxy: env.http_proxy ?? env.HTTP_PROXY ?? "",
    httpsProxy: env.https_proxy ?? env.HTTPS_PROXY ?? "",
    noProxy: env.no_proxy ?? env.NO_PROXY ?? "",
  }).compose(interceptors.redirect({ maxRedirections: 5 }));
}
