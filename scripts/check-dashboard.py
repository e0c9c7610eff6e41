#!/usr/bin/env python3
"""Checks the Grafana dashboard: valid JSON, the datasource only through the ${datasource}
variable (no hard-coded uid), every metric a query names is one the exporter documents
(docs/metrics.md), a recording rule in alerts/, or Prometheus' own; and the variables:
job, instance and target (cluster too with --cluster-label), each multi-select with All, each
offering only the values the variables before it leave, and every selector of every query
filtered by them (target only where the series has a target label).

  scripts/check-dashboard.py [DASHBOARD_JSON] [--cluster-label LABEL]

DASHBOARD_JSON defaults to dashboards/idle_drop_exporter.json; --cluster-label is for a render
with _config.showMultiCluster (the cluster variable, and LABEL=~"$cluster" everywhere)."""
import argparse
import json
import re
import sys
from pathlib import Path

import yaml

import dashboard_promql as dp

root = Path(__file__).resolve().parent.parent
ap = argparse.ArgumentParser()
ap.add_argument("dashboard", nargs="?", type=Path, default=root / "dashboards/idle_drop_exporter.json")
ap.add_argument("--cluster-label")
args = ap.parse_args()
dashboard = json.loads(args.dashboard.read_text())

# docs/metrics.md: | `name` | type | labels | meaning |
labels_of = {
    m.group(1): {label.strip() for label in m.group(2).split(",")}
    for m in re.finditer(r"^\| `(idle_drop_[a-z_]+)` \|[^|]*\|([^|]*)\|", (root / "docs/metrics.md").read_text(), re.M)
}
documented = set(labels_of)
recording_rules = {
    rule["record"]: rule["expr"]
    for p in (root / "alerts").glob("*.yml")
    for group in yaml.safe_load(p.read_text())["groups"]
    for rule in group["rules"]
    if "record" in rule
}
for name, expr in recording_rules.items():
    # A recording rule's labels are those it aggregates by.
    labels_of[name] = {label.strip() for by in re.findall(r"\bby \(([^)]*)\)", expr) for label in by.split(",")}
prometheus_own = {"up", "scrape_duration_seconds"}
problems = []


def walk(node, path="$"):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "uid" and path.endswith("datasource") and value != "${datasource}":
                problems.append(f"{path}: hard-coded datasource uid {value!r}")
            walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            walk(value, f"{path}[{i}]")


def metric_labels(name):
    base = re.sub(r"_(bucket|sum|count)$", "", name)
    return labels_of.get(name, labels_of.get(base, set()))


def check_selectors(where, expr, required, target=True):
    """Every selector of `expr` filters each label of `required` by its variable; with
    `target`, target too where the series has it. Returns the number of selectors."""
    try:
        node = dp.parse(expr)
    except ValueError as e:
        problems.append(f"{where}: invalid PromQL {expr!r}: {e}")
        return 0
    found = dp.selectors(node)
    for selector, _ in found:
        name = selector.name or ""
        known = name in recording_rules or name in prometheus_own or name in documented \
            or re.sub(r"_(bucket|sum|count)$", "", name) in documented
        if not known:
            problems.append(f"{where}: {name} is not an exported metric or recording rule")
        labels = list(required) + (["target"] if target and "target" in metric_labels(name) else [])
        for label in labels:
            variable = "cluster" if label == args.cluster_label else label
            if (label, "=~", f"${variable}") not in dp.matchers(selector):
                problems.append(f"{where}: {selector} is not filtered by {label}=~\"${variable}\"")
    return len(found)


walk(dashboard)
variables = {v["name"]: v for v in dashboard["templating"]["list"]}
if variables.get("datasource", {}).get("type") != "datasource":
    problems.append("no datasource variable")
chain = ([args.cluster_label] if args.cluster_label else []) + ["job", "instance", "target"]
if "cluster" in variables and not args.cluster_label:
    problems.append("a cluster variable, but no --cluster-label to check it with")
for i, label in enumerate(chain):
    name = "cluster" if label == args.cluster_label else label
    v = variables.get(name)
    if v is None:
        problems.append(f"no {name} variable")
        continue
    if not (v.get("multi") and v.get("includeAll") and v.get("allValue") == ".+"):
        problems.append(f"the {name} variable must be multi-select with All as '.+'")
    query = dp.variable_query(v)
    m = re.fullmatch(rf"label_values\((.+),\s*{label}\)", query)
    if not m:
        problems.append(f"the {name} variable is not label_values(..., {label}): {query!r}")
        continue
    # The values left by the variables before it (job's values in the selected clusters, ...).
    check_selectors(f"variable {name}", m.group(1), chain[:i], target=False)

selectors = 0
for panel in dp.panels(dashboard):
    for t in panel.get("targets", []):
        selectors += check_selectors(f"panel {panel['title']!r}", t["expr"], chain[:-1])

if problems:
    print("\n".join(problems))
    sys.exit(1)
print(f"dashboard OK: {len(list(dp.panels(dashboard)))} panels, {selectors} selectors, each of a known "
      f"metric and filtered by {', '.join(chain)} (target where the series has it)")
