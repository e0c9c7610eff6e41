#!/usr/bin/env bash
# Renders the monitoring mixin (mixin/, jsonnet) into dashboards/ and alerts/: the files in those
# directories are this script's output, edit mixin/ instead and run it again (then
# scripts/gen-prometheusrule.py for the Kubernetes PrometheusRule).
#
#   scripts/render-mixin.sh                      # default _config, into the repository
#   scripts/render-mixin.sh OUT_DIR              # into OUT_DIR/dashboards and OUT_DIR/alerts
#   scripts/render-mixin.sh OUT_DIR '{ jobName: "pg-idle" }'   # _config overrides (jsonnet)
#
# Needs jsonnet (Debian: apt-get install jsonnet; scripts/install-deps.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-.}
config=${2:-{\}}
mkdir -p "$out/dashboards" "$out/alerts"
jsonnet -J mixin --tla-code config="$config" -m "$out/dashboards" mixin/dashboards.jsonnet >/dev/null
jsonnet -J mixin --tla-code config="$config" -S -o "$out/alerts/idle_drop_exporter.rules.yml" mixin/alerts.jsonnet
