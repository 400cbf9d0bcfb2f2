# syntax=docker/dockerfile:1
#
# bar-writer image: `docker build -t bar-writer .`
#
# Base: node:20-bookworm-slim. Node 20 is the LTS line the service is developed and tested on
# (package.json engines >=20, @types/node 20); Debian bookworm gives glibc, which the prebuilt
# lz4-napi binary (linux-*-gnu) needs. Both stages use the SAME base image, so the zstd-napi addon
# compiled in the build stage is ABI-compatible with the runtime stage that copies it.
# Override with --build-arg NODE_IMAGE=... only to another glibc image of the same Node major.
ARG NODE_IMAGE=node:20-bookworm-slim

# ---- build: dependencies (with native addons), TypeScript, then drop dev dependencies ----------
FROM ${NODE_IMAGE} AS build
WORKDIR /app

# zstd-napi builds a native addon at install (prebuild-install, falling back to node-gyp):
# node-gyp needs python3, make and a C++ compiler.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
# node-gyp: use the headers shipped in the image (/usr/local/include/node) instead of downloading them.
ENV npm_config_nodedir=/usr/local

# Manifests first, so the dependency layer is cached until they change.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund

COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund

# Fail the build, not the first compressed batch: main.ts exits 3 when a codec cannot load, so check
# here, with production dependencies only, that snappy, lz4 and zstd all load.
RUN node -e "const bad = require('./dist/consumer/codecs').registerCodecs().filter((c) => !c.ok); \
if (bad.length) { console.error(JSON.stringify(bad)); process.exit(1); }"

# ---- runtime: production node_modules, compiled JS and the migrations only -------------------
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app

# Files stay owned by root (read-only for the service user); nothing is written at run time, so the
# container also runs with a read-only root filesystem.
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# Read at run time from dist/store/../../migrations, i.e. /app/migrations (node dist/cli/migrate.js).
COPY migrations ./migrations
# The operator CLI on PATH: `bar-writer <command>` (dist/cli/main.js, executable since npm run build).
RUN ln -s /app/dist/cli/main.js /usr/local/bin/bar-writer

# The image's unprivileged "node" user (uid 1000). Kubernetes' runAsNonRoot cannot check a user
# name, so deploy/kubernetes sets runAsUser: 1000 explicitly.
USER node

# HTTP_PORT (default 8080): /healthz, /readyz, /metrics, /v1/bars/...
EXPOSE 8080

# Liveness through node itself (the slim image has no curl or wget).
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "require('http').get('http://127.0.0.1:'+(process.env.HTTP_PORT||8080)+'/healthz',r=>process.exit(r.statusCode===200?0:1)).on('error',()=>process.exit(1))"]

# Exec form, node as PID 1's only process: SIGTERM reaches node directly (no shell, no npm wrapper)
# and starts the graceful drain bounded by SHUTDOWN_TIMEOUT (default 25s). Give the container a stop
# grace period above that (compose: stop_grace_period; Kubernetes: terminationGracePeriodSeconds).
# The same node flags as `npm start` (package.json): --single-threaded-gc, no GC helper threads
# competing for a 1-CPU container (bench/README.md: 1.035x on the 1M-bar drain).
CMD ["node", "--single-threaded-gc", "dist/main.js"]
