# One image for every Smallchain service and the CLI. Pick what runs with the command, e.g.
#   docker run smallchain:local services/scheduler/dist/main.js
#   docker run smallchain:local packages/cli/bin/smallchain.js get runs
# docker-compose.yml builds it once as smallchain:local and runs each service from it.

ARG NODE_IMAGE=node:20-bookworm-slim

# ---- manifests: only the package.json files and the lockfile, so dependency layers stay cached across source edits
FROM ${NODE_IMAGE} AS manifests
WORKDIR /app
COPY package.json package-lock.json ./
COPY packages/shared/package.json packages/shared/
COPY packages/cli/package.json packages/cli/
COPY services/scheduler/package.json services/scheduler/
COPY services/projector/package.json services/projector/
COPY services/llm-worker/package.json services/llm-worker/
COPY services/tool-worker/package.json services/tool-worker/
COPY services/gateway/package.json services/gateway/

# ---- prod-deps: production node_modules only. npm links the workspaces as relative symlinks
# (node_modules/@smallchain/shared -> ../../packages/shared), which resolve again under /app in the runtime stage.
FROM manifests AS prod-deps
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

# ---- build: all dependencies plus the sources, compiled by `tsc -b` into each package's dist/
FROM manifests AS build
# Lifecycle scripts are not needed to compile TypeScript (they only build optional native addons of dev tools).
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.base.json ./
COPY packages/ packages/
COPY services/ services/
RUN npm run build

# ---- runtime
FROM ${NODE_IMAGE} AS runtime
# The tool-worker runs `command` tools with bash, node and python3. python3 rather than python3-minimal:
# the minimal interpreter has no json module, which python tools need to read their arguments from stdin.
RUN apt-get update \
 && apt-get install -y --no-install-recommends bash python3 \
 && rm -rf /var/lib/apt/lists/*

ENV NODE_ENV=production
# Services serve /metrics and /healthz here (unset SC_METRICS_PORT to serve nothing); the CLI ignores it.
ENV SC_METRICS_PORT=9464
EXPOSE 9464
WORKDIR /app

COPY --from=prod-deps /app/package.json /app/package-lock.json ./
COPY --from=prod-deps /app/node_modules ./node_modules
COPY --from=prod-deps /app/packages/shared/package.json packages/shared/
COPY --from=prod-deps /app/packages/cli/package.json packages/cli/
COPY --from=prod-deps /app/services/scheduler/package.json services/scheduler/
COPY --from=prod-deps /app/services/projector/package.json services/projector/
COPY --from=prod-deps /app/services/llm-worker/package.json services/llm-worker/
COPY --from=prod-deps /app/services/tool-worker/package.json services/tool-worker/
COPY --from=prod-deps /app/services/gateway/package.json services/gateway/
COPY --from=build /app/packages/shared/dist packages/shared/dist
COPY --from=build /app/packages/cli/dist packages/cli/dist
COPY --from=build /app/services/scheduler/dist services/scheduler/dist
COPY --from=build /app/services/projector/dist services/projector/dist
COPY --from=build /app/services/llm-worker/dist services/llm-worker/dist
COPY --from=build /app/services/tool-worker/dist services/tool-worker/dist
COPY --from=build /app/services/gateway/dist services/gateway/dist
COPY packages/cli/bin packages/cli/bin
COPY examples examples

# The node image's unprivileged user (uid 1000). The files above stay root-owned: read-only to the services.
USER node

# Healthy while the service's NATS connection is up. No curl in the image: node's fetch asks /healthz.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.SC_METRICS_PORT||9464)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]

ENTRYPOINT ["node"]
CMD ["services/scheduler/dist/main.js"]
