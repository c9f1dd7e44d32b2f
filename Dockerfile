# ambit: one image for the control plane, the node proxy (DaemonSet) and waypoints.
#   docker build -t REGISTRY/ambit:0.1.0 .
# Stage 1 compiles the TypeScript and the native socket helpers (needs a C toolchain and the
# dev dependencies); stage 2 carries only what runs: production node_modules, dist/, the protos,
# the addon and the waypoint template.

FROM node:20-slim AS build
WORKDIR /src
# python3, make and g++ for node-gyp (src/redirect/native); without them the addon is skipped and
# netns capture is unavailable, so the image would not work as a node proxy.
RUN apt-get update \
  && apt-get install -y --no-install-recommends python3 make g++ \
  && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
# Scripts off here: the install (native addon) and prepare (tsc) steps need the sources, which
# come next; dependencies are a layer of their own so a source change does not refetch them.
RUN npm ci --ignore-scripts
COPY scripts ./scripts
COPY tsconfig.json ./
COPY src ./src
COPY proto ./proto
COPY bin ./bin
RUN node scripts/build-native.mjs \
  && test -f src/redirect/native/build/Release/ambit_native.node \
  && npx tsc -p tsconfig.json \
  && npm prune --omit=dev --ignore-scripts

FROM node:20-slim
# iptables and iproute2: the node agent installs the in-pod redirection rules with them.
RUN apt-get update \
  && apt-get install -y --no-install-recommends iptables iproute2 \
  && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY --from=build /src/bin ./bin
COPY --from=build /src/proto ./proto
COPY --from=build /src/src/redirect/native/binding.gyp /src/src/redirect/native/ambit-native.c ./src/redirect/native/
COPY --from=build /src/src/redirect/native/build/Release/ambit_native.node ./src/redirect/native/build/Release/
COPY daemonset/waypoint-template.yaml ./daemonset/waypoint-template.yaml
# Non-root by default (the node image's `node` user, uid 1000): the control plane and waypoints
# run as it; only the node proxy's DaemonSet asks for uid 0 plus the capabilities it lists.
USER 1000:1000
EXPOSE 15008 15012 15014 15020 15021
ENTRYPOINT ["node", "/app/bin/ambit.js"]
CMD ["--help"]
