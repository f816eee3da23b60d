# syntax=docker/dockerfile:1
# rolloutd: one bundled, minified JavaScript file on a distroless Node 24 image, non-root, no shell at runtime.
# The bundle (npm run build: esbuild after tsc) holds what the daemon uses of its dependencies: loading
# client-node's whole generated API from node_modules kept about 35 MB more resident (npm run bench, phase F).

# 1. Type-check and compile TypeScript, then bundle it, with the full toolchain.
FROM node:24-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# 2. Production dependencies only (no install scripts are needed by them): pino and its pretty-printer stay
#    outside the bundle, since pino loads its transports by name in a worker thread.
FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

# 3. Runtime: node and our files, nothing else.
FROM gcr.io/distroless/nodejs24-debian12:nonroot
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /src/dist/rolloutd.mjs ./dist/rolloutd.mjs
# The bundled packages' license notices, kept beside the bundle rather than in it (package.json "bundle").
COPY --from=build /src/dist/rolloutd.mjs.LEGAL.txt ./dist/rolloutd.mjs.LEGAL.txt
COPY package.json ./
# V8 would otherwise size its young generation for the node's memory, not the container's: with its default,
# new space alone committed 128 MB of an idle daemon's RSS (npm run bench, phase F). 2 MB semi-spaces cost a few
# more scavenges under load. The chart sets NODE_OPTIONS itself (values.yaml nodeOptions), replacing this.
ENV NODE_OPTIONS="--max-semi-space-size=2"
# Numeric, so the kubelet can verify runAsNonRoot (65532 is distroless's nonroot).
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/nodejs/bin/node", "dist/rolloutd.mjs"]
CMD ["run", "--policies=/etc/rolloutd/policies"]
