# syntax=docker/dockerfile:1
# tokengate container image.
#
#   docker build -t tokengate .
#   docker run --read-only -p 8080:8080 -p 127.0.0.1:9090:9090 \
#     -v "$PWD/gateway.yaml:/etc/tokengate/gateway.yaml:ro" tokengate
#
# The config is read from /etc/tokengate/gateway.yaml (TOKENGATE_CONFIG); mount it there
# (Kubernetes: a ConfigMap volume on /etc/tokengate, which hot-reloads). Signals reach the
# gateway directly: `node` is PID 1 (no npm/npx/shell wrapper), so SIGTERM drains and
# SIGHUP reloads. Nothing is written at run time: the image works with a read-only root
# filesystem and needs no writable /tmp. Node 24 is the current Active LTS line; the tag is
# pinned (pin the digest too in your registry mirror).
ARG NODE_IMAGE=node:24.11.0-alpine3.22

# ---- build: dev dependencies, TypeScript -> dist/ ----------------------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# ---- runtime: production dependencies only, non-root, read-only friendly ----------------
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    TOKENGATE_CONFIG=/etc/tokengate/gateway.yaml
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force \
 && addgroup -S -g 10001 tokengate \
 && adduser -S -D -H -u 10001 -G tokengate tokengate
COPY --from=build /app/dist ./dist
COPY bin ./bin
# The .proto files the gRPC ext_authz listener loads at start.
COPY proto ./proto
# Numeric so Kubernetes' runAsNonRoot can verify it without a runAsUser.
USER 10001:10001
# 8080 proxy, 8081 decision (forward auth), 9191 gRPC ext_authz (each when configured), 9090 admin.
EXPOSE 8080 8081 9090 9191
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s \
  CMD ["node", "-e", "fetch('http://127.0.0.1:9090/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "bin/tokengate.js"]
CMD []
