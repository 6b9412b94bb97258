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
# pinned (pin the digest too in your registry mirror), and CI runs the tests on exactly
# this Node version (.ci/run reads it from here).
#
# A private npm registry or proxy: pass its .npmrc and, if its certificate is signed by a
# private CA, that CA as build secrets. They are mounted for the `npm ci` steps only and
# never stored in a layer:
#   docker build --secret id=npmrc,src=$HOME/.npmrc --secret id=npm_ca,src=corp-ca.pem -t tokengate .
#
# No HEALTHCHECK: Kubernetes ignores it (the manifests in deploy/ probe /healthz and
# /readyz), OCI-format images cannot carry it, and a fixed port would be wrong whenever
# admin.port is changed. With plain Docker, add one at run time on the admin port:
#   docker run --health-cmd "node -e \"fetch('http://127.0.0.1:9090/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))\"" ...
ARG NODE_IMAGE=node:24.11.0-alpine3.22

# ---- build: dev dependencies, TypeScript -> dist/ ----------------------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN --mount=type=secret,id=npmrc,target=/root/.npmrc \
    --mount=type=secret,id=npm_ca,target=/run/secrets/npm_ca \
    if [ -s /run/secrets/npm_ca ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/npm_ca; fi \
 && npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# ---- runtime: production dependencies only, non-root, read-only friendly ----------------
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    TOKENGATE_CONFIG=/etc/tokengate/gateway.yaml
WORKDIR /app
COPY package.json package-lock.json ./
RUN --mount=type=secret,id=npmrc,target=/root/.npmrc \
    --mount=type=secret,id=npm_ca,target=/run/secrets/npm_ca \
    if [ -s /run/secrets/npm_ca ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/npm_ca; fi \
 && npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
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
ENTRYPOINT ["node", "bin/tokengate.js"]
CMD []
