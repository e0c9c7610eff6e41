#!/usr/bin/env bash
# Checks what we ship besides the binary: alert rules (promtool check + unit tests), the
# Grafana dashboard, the Dockerfile (hadolint), the Kubernetes manifests (kubernetes-validate)
# and that the PrometheusRule is generated from alerts/. Installs its tools on a fresh Debian
# machine (as root) when missing, through scripts/install-deps.sh.
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

echo "observability: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
