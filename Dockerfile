# bertq: one image for workers (`bertq start`), the HTTP gateway (`bertq gateway`) and the CLI.
# CPU inference out of the box. For GPUs, build with --build-arg ORT_INSTALL=1 on a host that can
# reach ONNX Runtime's CUDA download, and run on a CUDA 12 + cuDNN 9 base (see deploy/README.md).
FROM node:20-bookworm-slim AS build
ARG ORT_INSTALL=skip
ENV ONNXRUNTIME_NODE_INSTALL=${ORT_INSTALL}
WORKDIR /app
COPY package.json package-lock.json .npmrc tsconfig.json tsconfig.base.json ./
COPY packages packages
COPY cli cli
COPY test test
COPY bench bench
# .npmrc skips install scripts; the GPU build needs onnxruntime-node's (it downloads the CUDA EP).
RUN npm ci --no-audit --no-fund --ignore-scripts=$([ "$ORT_INSTALL" = skip ] && echo true || echo false) \
  && npm run build && npm prune --omit=dev

FROM node:20-bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends nats-server ca-certificates && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /app /app
# Not root: the image's `node` user (uid 1000) owns only the cache.
RUN mkdir -p /cache && chown node:node /cache
USER node
ENV BERTQ_CACHE=/cache NODE_ENV=production
VOLUME ["/cache"]
ENTRYPOINT ["node", "/app/cli/bin/run.js"]
CMD ["--help"]
