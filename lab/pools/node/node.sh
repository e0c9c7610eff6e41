# shellcheck shell=bash disable=SC2034,SC2154
# (sourced: `here` comes from the script that sources this, and NODE, NODE_PINNED are for it)
# Sourced by install.sh and run: sets NODE to a Node.js of at least 20.19 (TypeORM 1.1 and
# Prisma 7 need it), the machine's own if it is new enough, else the one install.sh put in .node/
# from the npm registry (Debian 12's nodejs is 18).
node_ok() {
  [ -x "$(command -v "$1" 2>/dev/null)" ] && "$1" -e '
    const [a, b] = process.versions.node.split(".").map(Number)
    process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)' 2>/dev/null
}
case "$(uname -m)" in
  x86_64) node_arch=x64 ;;
  aarch64) node_arch=arm64 ;;
  *) node_arch=unsupported ;;
esac
NODE_PINNED="node-linux-$node_arch@20.20.2"
NODE_LOCAL="$here/.node/node_modules/node-linux-$node_arch/bin/node"
if node_ok node; then NODE=$(command -v node); else NODE=$NODE_LOCAL; fi
