# Portcullis in a container: docs/deploy.md#docker.
#
#   docker build -t portcullis .
#   docker run -d --name portcullis -p 25:25 \
#     -v portcullis-data:/var/lib/portcullis \
#     -v "$PWD/config.json:/etc/portcullis/config.json:ro" portcullis
#
# Runs as the unprivileged user "portcullis". Port 25 without root: Docker (20.10 and
# later) sets net.ipv4.ip_unprivileged_port_start=0 in a container's own network
# namespace; elsewhere, listen on a high port and publish it as 25 (-p 25:2525).

# --- build: dependencies (with their native parts) and the compiled host -------------
FROM node:20-slim AS build
# Only needed when sqlite3's prebuilt binary cannot be downloaded and node-gyp builds it.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json ./
# Dependencies first (a layer reused until the lock file changes); our own "prepare"
# (the TypeScript build) runs below, once the sources are there.
RUN npm ci --ignore-scripts && npm rebuild sqlite3 esbuild
COPY . .
RUN npm run build && npm prune --omit=dev

# --- run ------------------------------------------------------------------------------
FROM node:20-slim
ENV NODE_ENV=production
RUN groupadd --system portcullis \
 && useradd --system --gid portcullis --home-dir /var/lib/portcullis --shell /usr/sbin/nologin portcullis \
 && mkdir -p /etc/portcullis /var/lib/portcullis \
 && chown portcullis:portcullis /var/lib/portcullis
WORKDIR /opt/portcullis
# What the running host reads: its code, the SDK and built-in rules it compiles rules
# against, the config schema, and the production dependencies.
COPY --from=build /src/package.json /src/LICENSE ./
COPY --from=build /src/bin ./bin
COPY --from=build /src/dist ./dist
COPY --from=build /src/sdk ./sdk
COPY --from=build /src/rules ./rules
COPY --from=build /src/schemas ./schemas
COPY --from=build /src/node_modules ./node_modules
RUN ln -s /opt/portcullis/bin/portcullis.js /usr/local/bin/portcullis
# A default that works as is (mail for localhost into /var/lib/portcullis/mailbox);
# mount your own config over it.
RUN printf '%s\n' '{ "listen": ["0.0.0.0:25"], "dataDir": "/var/lib/portcullis" }' > /etc/portcullis/config.json
# The image can run: the config validates and every built-in rule compiles and loads.
RUN portcullis check --config /etc/portcullis/config.json

USER portcullis
VOLUME /var/lib/portcullis
EXPOSE 25
# Alive = the host rewrites status.json every 10 s. Not an SMTP probe: each probe would
# be a session for the rules (connect-flood counts sessions that never send MAIL).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
  CMD ["node", "-e", "process.exit(Date.now() - require('node:fs').statSync('/var/lib/portcullis/status.json').mtimeMs < 30000 ? 0 : 1)"]
# docker stop sends SIGTERM: idle clients get 421 at once, a message in flight is
# finished (limits.shutdownGraceMs, 20 s); give it time: docker stop -t 45.
STOPSIGNAL SIGTERM
ENTRYPOINT ["portcullis"]
CMD ["start", "--config", "/etc/portcullis/config.json"]
