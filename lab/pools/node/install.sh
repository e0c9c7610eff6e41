#!/usr/bin/env bash
# Installs what the Node.js harnesses need: Node.js 20.19 or later, the pinned libraries from npm
# (package-lock.json: pg, postgres 4, postgres 3 as the alias postgres3, knex, sequelize, typeorm,
# prisma, @prisma/client, @prisma/adapter-pg, typescript), and Prisma's generated client. Only the
# npm registry and Debian are used: `npm ci --ignore-scripts` skips @prisma/engines' postinstall
# (a download from binaries.prisma.sh), and `prisma generate` runs without network. Idempotent
# and quick when done; run as root on Debian.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
if ! command -v npm >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
# shellcheck disable=SC1091 # node.sh, beside this file, is checked on its own
. "$here/node.sh"
if ! node_ok "$NODE"; then
  npm install --prefix "$here/.node" --no-save --no-audit --no-fund --loglevel=error "$NODE_PINNED"
  node_ok "$NODE" || { echo "node install: no Node.js >= 20.19 at $NODE" >&2; exit 1; }
fi

lock=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ "$(cat node_modules/.installed-lock 2>/dev/null)" != "$lock" ]; then
  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
  echo "$lock" > node_modules/.installed-lock
fi

# Prisma's client: generated (TypeScript) and compiled to CommonJS in prisma/client/.
client=$(cat package-lock.json prisma/schema.prisma prisma/tsconfig.json | sha256sum | cut -d' ' -f1)
if [ "$(cat prisma/client/.generated-from 2>/dev/null)" != "$client" ]; then
  rm -rf prisma/generated prisma/client
  # Without network where we can (root: a namespace of our own), so nothing is fetched from
  # outside the registries; CHECKPOINT_DISABLE stops Prisma's version check.
  nonet=()
  if unshare -n true 2>/dev/null; then nonet=(unshare -n); fi
  PATH="$(dirname "$NODE"):$PATH" CHECKPOINT_DISABLE=1 PRISMA_HIDE_UPDATE_MESSAGE=1 \
    PRISMA_SCHEMA_ENGINE_BINARY="$here/prisma/no-schema-engine" \
    "${nonet[@]}" "$NODE" node_modules/prisma/build/index.js generate --schema prisma/schema.prisma >/dev/null
  "$NODE" node_modules/typescript/bin/tsc -p prisma/tsconfig.json
  echo "$client" > prisma/client/.generated-from
fi
