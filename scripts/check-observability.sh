#!/usr/bin/env bash
# Checks what we ship besides the binary: alert rules (promtool check + unit tests), the
# Grafana dashboard, the Dockerfile (hadolint), the Kubernetes manifests (kubernetes-validate),
# that the PrometheusRule is generated from alerts/, and every shell script (shellcheck).
# Installs its tools on a fresh Debian machine (as root) when missing, through
# scripts/install-deps.sh.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

bash scripts/install-deps.sh
hash -r

passed=0
failed=0
check() {
  local name=$1; shift
  if output=$("$@" 2>&1); then
    passed=$((passed + 1))
    echo "ok   $name"
  else
    failed=$((failed + 1))
    echo "FAIL $name"
    echo "     ${output//$'\n'/$'\n'     }"
  fi
}

check "promtool check rules" promtool check rules alerts/idle_drop_exporter.rules.yml
check "promtool test rules" promtool test rules alerts/tests/*.yml
check "dashboard queries and variables" python3 scripts/check-dashboard.py
check "hadolint Dockerfile" hadolint Dockerfile
check "Dockerfile and Cargo.toml Rust >= every dependency's rust-version" python3 scripts/check-rust-version.py
check "kubernetes-validate core manifests" kubernetes-validate --strict --quiet \
  deploy/kubernetes/configmap.yaml deploy/kubernetes/secret.yaml \
  deploy/kubernetes/deployment.yaml deploy/kubernetes/service.yaml
check "CRD manifests parse" python3 -c '
import sys, yaml
for f in ["deploy/kubernetes/servicemonitor.yaml", "deploy/kubernetes/prometheusrule.yaml", "deploy/kubernetes/kustomization.yaml"]:
    doc = yaml.safe_load(open(f))
    assert doc.get("kind") in ("ServiceMonitor", "PrometheusRule", "Kustomization"), f
'
check "PrometheusRule generated from alerts/" python3 scripts/gen-prometheusrule.py --check

# Every shell script we ship: *.sh, and files without an extension whose first line is a sh or
# bash shebang (.ci/run, lab/pools/*/run); build output and installed libraries are not ours.
shell_scripts() {
  find . \( -name .git -o -name target -o -name node_modules -o -name build -o -name .venv \
      -o -name __pycache__ -o -name test-artifacts \) -prune \
    -o -type f -name '*.sh' -print0 \
    -o -type f ! -name '*.*' -exec sh -c \
      'head -n 1 "$1" | grep -Eq "^#! *(/usr)?/bin/(env +)?(ba)?sh( |$)"' sh {} \; -print0
}
shellcheck_all() {
  local scripts=()
  mapfile -d '' -t scripts < <(shell_scripts | sort -z)
  if [ ${#scripts[@]} -eq 0 ]; then
    echo "no shell script found"
    return 1
  fi
  shellcheck "${scripts[@]}"
}
check "shellcheck (every shell script, default severity)" shellcheck_all

echo "observability: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
