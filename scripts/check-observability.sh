#!/usr/bin/env bash
# Checks what we ship besides the binary: alert rules (promtool check + unit tests), the
# Grafana dashboard, the Dockerfile (hadolint), the Kubernetes manifests (kubernetes-validate),
# that the PrometheusRule is generated from alerts/, that dashboards/ and alerts/ are the
# rendered monitoring mixin (mixin/), which also renders for another job and for several
# clusters, the mixin against mixtool's lint rules (scripts/lint-mixin.py), the kustomize
# component for kube-prometheus-stack, the docs' Alertmanager routing (amtool), the systemd unit
# (systemd-analyze verify), and every shell script (shellcheck). Installs its tools on a fresh
# Debian machine (as root) when missing, through scripts/install-deps.sh.
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
# mixtool lint's rules (alerts and dashboard-linter's), as mixtool itself cannot be installed here.
check "mixin lint (mixtool's rules) on alerts/ and dashboards/" python3 scripts/lint-mixin.py
check "hadolint Dockerfile" hadolint Dockerfile
check "Dockerfile and Cargo.toml Rust >= every dependency's rust-version" python3 scripts/check-rust-version.py
check "kubernetes-validate core manifests" kubernetes-validate --strict --quiet \
  deploy/kubernetes/configmap.yaml deploy/kubernetes/secret.yaml \
  deploy/kubernetes/deployment.yaml deploy/kubernetes/service.yaml \
  deploy/kubernetes/sharded/statefulset.yaml
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

# dashboards/ and alerts/ are the mixin's output with the default _config.
mixin_rendered() {
  local out rc=0
  out=$(mktemp -d)
  if ! { scripts/render-mixin.sh "$out" &&
    diff -r dashboards "$out/dashboards" &&
    diff alerts/idle_drop_exporter.rules.yml "$out/alerts/idle_drop_exporter.rules.yml"; }; then
    rc=1
    echo "dashboards/ or alerts/ differ from mixin/: run scripts/render-mixin.sh"
  fi
  rm -rf "$out"
  return "$rc"
}
check "dashboards/ and alerts/ rendered from mixin/" mixin_rendered

# Re-targeted at a job named pg-idle, every selector of the rules and the dashboard names it, the
# rules load, and the unit tests pass once their series carry that job.
mixin_retargeted() {
  local out rc=0
  out=$(mktemp -d)
  mkdir -p "$out/alerts/tests"
  sed -e 's/job="idle_drop_exporter"/job="pg-idle"/g; s/job: idle_drop_exporter/job: pg-idle/g' \
    -e 's/of job idle_drop_exporter/of job pg-idle/g' \
    alerts/tests/idle_drop_exporter.test.yml >"$out/alerts/tests/pg-idle.test.yml"
  scripts/render-mixin.sh "$out" '{ jobName: "pg-idle", idleDropMetricsSelector: "job=\"pg-idle\"" }' &&
    promtool check rules "$out/alerts/idle_drop_exporter.rules.yml" &&
    promtool test rules "$out/alerts/tests/pg-idle.test.yml" &&
    python3 - "$out" <<'EOF' || rc=1
import json, re, sys, yaml
out = sys.argv[1]
rules = yaml.safe_load(open(f"{out}/alerts/idle_drop_exporter.rules.yml"))
dashboard = json.load(open(f"{out}/dashboards/idle_drop_exporter.json"))
exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
exprs += [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
problems, seen = [], 0
for expr in exprs:
    for m in re.finditer(r"\b(idle_drop[_:][a-z0-9_:]*|up|scrape_duration_seconds)\b(\{[^}]*\})?", expr):
        seen += 1
        if 'job="pg-idle"' not in (m.group(2) or ""):
            problems.append(f"{m.group(0)!r} in {expr!r}")
def strings(node):
    if isinstance(node, dict):
        node = list(node.values())
    if isinstance(node, list):
        return [s for n in node for s in strings(n)]
    return [node] if isinstance(node, str) else []
problems += [f"default job left in {s!r}" for s in strings([rules, dashboard]) if "job idle_drop_exporter" in s or 'job="idle_drop_exporter"' in s]
print("\n".join(problems) or f"{seen} selectors, all with job=\"pg-idle\"")
sys.exit(1 if problems else 0)
EOF
  rm -rf "$out"
  return "$rc"
}
check "mixin re-targeted at job pg-idle: selectors, promtool check and unit tests" mixin_retargeted

# With showMultiCluster, the dashboard gets a cluster variable and every query and variable
# filters by it; the render still passes the lint and the dashboard checks.
mixin_multi_cluster() {
  local out rc=0
  out=$(mktemp -d)
  scripts/render-mixin.sh "$out" '{ showMultiCluster: true }' &&
    python3 scripts/lint-mixin.py --rules "$out/alerts/idle_drop_exporter.rules.yml" --dashboards "$out/dashboards" &&
    python3 scripts/check-dashboard.py "$out/dashboards/idle_drop_exporter.json" --cluster-label cluster || rc=1
  rm -rf "$out"
  return "$rc"
}
check "mixin with showMultiCluster: lint and dashboard variables" mixin_multi_cluster

# _config sets each alert's severity and the runbook base URL; a severity for a name no alert
# has fails the render, and a severity outside critical|warning|info fails the lint.
mixin_alert_config() {
  local out rc=0
  out=$(mktemp -d)
  scripts/render-mixin.sh "$out" \
    '{ alertSeverities+: { IdleDropTargetDown: "critical" }, runbookURLBase: "https://wiki.example.internal/idle-drop" }' &&
    python3 - "$out/alerts/idle_drop_exporter.rules.yml" <<'EOF' || rc=1
import sys, yaml
rules = {r["alert"]: r for g in yaml.safe_load(open(sys.argv[1]))["groups"] for r in g["rules"] if "alert" in r}
assert rules["IdleDropTargetDown"]["labels"]["severity"] == "critical", rules["IdleDropTargetDown"]
assert rules["IdleDropClosedConnectionsSpike"]["labels"]["severity"] == "critical"
assert rules["IdleDropTargetOutage"]["labels"]["severity"] == "warning"
bad = [a for a, r in rules.items() if r["annotations"]["runbook_url"] != "https://wiki.example.internal/idle-drop#" + a.lower()]
assert not bad, bad
print(f"{len(rules)} alerts: severities and runbook_url from _config")
EOF
  if scripts/render-mixin.sh "$out/typo" '{ alertSeverities+: { IdleDropTargteDown: "critical" } }' 2>"$out/typo.err"; then
    echo "a severity for an alert that does not exist was accepted"
    rc=1
  elif ! grep -q 'alertSeverities names no alert of the mixin: IdleDropTargteDown' "$out/typo.err"; then
    cat "$out/typo.err"
    rc=1
  fi
  if ! scripts/render-mixin.sh "$out/page" '{ alertSeverities+: { IdleDropClosedConnectionsSpike: "page" } }'; then
    rc=1
  elif python3 scripts/lint-mixin.py --rules "$out/page/alerts/idle_drop_exporter.rules.yml" \
    --dashboards "$out/page/dashboards" >"$out/page.lint"; then
    echo "the lint accepted severity page"
    rc=1
  elif ! grep -q "\[alert-severity-rule\] Alert 'IdleDropClosedConnectionsSpike'" "$out/page.lint"; then
    cat "$out/page.lint"
    rc=1
  fi
  rm -rf "$out"
  return "$rc"
}
check "mixin _config: alertSeverities, runbookURLBase, typo refused, lint refuses severity page" mixin_alert_config

# _config.targetInfoLabels: the per-target alerts copy those labels of idle_drop_target_info
# (two here, and the rules load); [] renders no join at all.
mixin_target_info() {
  local out rc=0
  out=$(mktemp -d)
  scripts/render-mixin.sh "$out/two" '{ targetInfoLabels: ["team", "app"] }' &&
    promtool check rules "$out/two/alerts/idle_drop_exporter.rules.yml" >/dev/null &&
    scripts/render-mixin.sh "$out/none" '{ targetInfoLabels: [] }' &&
    promtool check rules "$out/none/alerts/idle_drop_exporter.rules.yml" >/dev/null || rc=1
  python3 - "$out" <<'EOF' || rc=1
import sys, yaml
out = sys.argv[1]
def rules(variant):
    groups = yaml.safe_load(open(f"{out}/{variant}/alerts/idle_drop_exporter.rules.yml"))["groups"]
    return {r["alert"]: r["expr"] for g in groups for r in g["rules"] if "alert" in r}
two, none = rules("two"), rules("none")
joined = sorted(a for a, e in two.items() if "group_left (team, app)" in e and "idle_drop_target_info" in e)
assert len(joined) == 6, joined
assert not any("idle_drop_target_info" in e for e in none.values()), none
print(f"{len(joined)} per-target alerts join team and app; none with []")
EOF
  rm -rf "$out"
  return "$rc"
}
check "mixin _config.targetInfoLabels: the per-target alerts join them, [] joins nothing" mixin_target_info

# mixin/jsonnetfile.json declares no dependency: true while the mixin imports only its own files.
mixin_jsonnetfile() {
  python3 - <<'EOF'
import json, re
from pathlib import Path
spec = json.loads(Path("mixin/jsonnetfile.json").read_text())
assert spec["version"] == 1 and spec["dependencies"] == [], spec
imports = 0
for f in Path("mixin").rglob("*sonnet"):
    code = re.sub(r"(?m)^\s*//.*$", "", f.read_text())  # usage examples in comments
    for path in re.findall(r"import(?:str)?\s+'([^']+)'", code):
        imports += 1
        assert (f.parent / path).exists() or (Path("mixin") / path).exists(), f"{f}: import {path!r} is not a file of mixin/"
print(f"no dependencies; {imports} imports, all files of mixin/")
EOF
}
check "mixin/jsonnetfile.json: no dependency, every import a file of mixin/" mixin_jsonnetfile

# kube-prometheus-stack: the component puts release= on the ServiceMonitor and PrometheusRule.
check "kustomize component for kube-prometheus-stack (release label)" python3 scripts/check-kustomize.py

# The Alertmanager routing example of docs/observability.md, checked by amtool: it loads, and each
# alert goes where its severity says (the page to the pager).
alertmanager_example() {
  local dir rc=0 alert severity want got
  dir=$(mktemp -d)
  python3 - "$dir/alertmanager.yml" <<'EOF' || rc=1
import re, sys
text = open("docs/observability.md").read()
block = re.search(r"Routing in Alertmanager.*?```yaml\n(.*?)```", text, re.S)
assert block, "no routing example in docs/observability.md"
open(sys.argv[1], "w").write(block.group(1))
EOF
  amtool check-config "$dir/alertmanager.yml" >/dev/null || rc=1
  while read -r alert severity; do
    case $severity in
      critical) want=pager ;;
      warning) want=tickets ;;
      info) want=null ;;
      *) want="(no receiver for severity $severity)" ;;
    esac
    got=$(amtool config routes test --config.file="$dir/alertmanager.yml" "alertname=$alert" "severity=$severity" 2>/dev/null)
    if [ "$got" != "$want" ]; then
      echo "$alert (severity $severity) goes to $got, not $want"
      rc=1
    fi
  done < <(python3 -c '
import yaml
for g in yaml.safe_load(open("alerts/idle_drop_exporter.rules.yml"))["groups"]:
    for r in g["rules"]:
        if "alert" in r: print(r["alert"], r["labels"]["severity"])')
  # A page of a target whose labels say team="payments" goes to that team's pager.
  got=$(amtool config routes test --config.file="$dir/alertmanager.yml" \
    alertname=IdleDropClosedConnectionsSpike severity=critical team=payments 2>/dev/null)
  if [ "$got" != payments-pager ]; then
    echo "a critical alert with team=payments goes to $got, not payments-pager"
    rc=1
  fi
  rm -rf "$dir"
  [ "$rc" -eq 0 ] && echo "every alert routed by its severity, a team's page to its pager"
  return "$rc"
}
check "Alertmanager routing example in docs/observability.md routes every alert by severity, and by team" alertmanager_example

# The systemd unit, verified as a copy whose ExecStart names an existing executable (verify
# insists on one): the built exporter if there is one, else /bin/true. verify only warns (exit 0)
# on unknown keys and bad values, so any line naming the unit fails too.
systemd_unit_verified() {
  local dir binary output rc=0
  binary=/bin/true
  for candidate in target/release/idle_drop_exporter target/debug/idle_drop_exporter; do
    if [ -x "$candidate" ]; then binary=$PWD/$candidate; break; fi
  done
  dir=$(mktemp -d)
  sed "s|^ExecStart=/usr/local/bin/idle_drop_exporter |ExecStart=$binary |" \
    deploy/systemd/idle_drop_exporter.service >"$dir/idle_drop_exporter.service"
  output=$(systemd-analyze verify "$dir/idle_drop_exporter.service" 2>&1) || rc=1
  if grep -q 'idle_drop_exporter\.service' <<<"$output"; then rc=1; fi
  [ -z "$output" ] || echo "$output"
  echo "verified with ExecStart=$binary"
  rm -rf "$dir"
  return "$rc"
}
check "systemd-analyze verify deploy/systemd/idle_drop_exporter.service" systemd_unit_verified

echo "observability: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
