#!/usr/bin/env python3
"""Checks the Grafana dashboard: valid JSON, the datasource only through the ${datasource}
variable (no hard-coded uid), a multi-select target variable, and every metric a query names is
one the exporter documents (docs/metrics.md), a recording rule in alerts/, or Prometheus' own."""
import json
import re
import sys
from pathlib import Path

import yaml

root = Path(__file__).resolve().parent.parent
dashboard = json.loads((root / "dashboards/idle_drop_exporter.json").read_text())
documented = set(re.findall(r"`(idle_drop_[a-z_]+)`", (root / "docs/metrics.md").read_text()))
recorded = {
    rule["record"]
    for p in (root / "alerts").glob("*.yml")
    for group in yaml.safe_load(p.read_text())["groups"]
    for rule in group["rules"]
    if "record" in rule
}
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


walk(dashboard)
variables = {v["name"]: v for v in dashboard["templating"]["list"]}
if variables.get("datasource", {}).get("type") != "datasource":
    problems.append("no datasource variable")
target = variables.get("target", {})
if not (target.get("multi") and target.get("includeAll")):
    problems.append("the target variable must be multi-select with All")

for panel in dashboard["panels"]:
    for t in panel.get("targets", []):
        # Label lists of grouping and matching modifiers name labels, not metrics.
        expr = re.sub(r"\b(on|ignoring|group_left|group_right|by|without)\s*\([^)]*\)", " ", t["expr"])
        for name in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*(?=\s*[{\[(]|\s*$|\s*[<>=!)])", expr):
            if name in {"Inf", "sum", "by", "rate", "increase", "max", "histogram_quantile", "le", "target", "kind", "role", "state", "direction", "instance", "job", "rung"}:
                continue
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            if name in recorded or name in prometheus_own or base in documented or name in documented:
                continue
            problems.append(f"panel {panel['title']!r}: {name} is not an exported metric or recording rule")

if problems:
    print("\n".join(problems))
    sys.exit(1)
print(f"dashboard OK: {len(dashboard['panels'])} panels, every query names known metrics")
