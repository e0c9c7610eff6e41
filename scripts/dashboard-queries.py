#!/usr/bin/env python3
"""Prints every PromQL expression of the Grafana dashboard, one per line, with Grafana's
variables replaced by concrete values, so a test can run each against a real Prometheus.

  scripts/dashboard-queries.py [DASHBOARD_JSON] [--prometheus HOST:PORT]

Without --prometheus, every query variable (cluster, job, instance, target) is "All" (its
allValue, `.+`). With it, each variable is resolved the way Grafana resolves it: its
label_values() query, with the variables before it already substituted, is asked of that
Prometheus (/api/v1/series), and all the values it offers are selected, as Grafana writes a
multi-value selection into a regex matcher: `(a|b)`, regex characters escaped. A variable that
offers no value is an error (exit 1): its query or the ones before it select nothing."""
import argparse
import json
import re
import sys
import urllib.parse
import urllib.request
from pathlib import Path

GLOBALS = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "5m",
}


def substitute(expr, values):
    for var, value in GLOBALS.items():
        expr = expr.replace(var, value)
    for name, value in values.items():
        expr = expr.replace(f"${{{name}:regex}}", value).replace(f"${name}", value)
    return expr


def grafana_regex(values):
    """A multi-value selection as Grafana's Prometheus data source writes it into `=~"..."`:
    regex characters escaped with a backslash that is itself escaped in the PromQL string."""
    escaped = [re.sub(r"([\\^$*+?.()|{}\[\]/])", r"\\\\\1", v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def label_values(prometheus, selector, label):
    url = f"http://{prometheus}/api/v1/series?" + urllib.parse.urlencode({"match[]": selector})
    with urllib.request.urlopen(url, timeout=10) as response:
        series = json.load(response)["data"]
    return sorted({s[label] for s in series if label in s})


def resolve(dashboard, prometheus):
    values = {}
    for variable in dashboard["templating"]["list"]:
        if variable.get("type") != "query":
            continue
        name = variable["name"]
        if prometheus is None:
            values[name] = variable.get("allValue") or ".+"
            continue
        query = variable["query"]
        query = query.get("query", "") if isinstance(query, dict) else query
        m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", substitute(query, values))
        if not m:
            sys.exit(f"variable {name}: not a label_values(SELECTOR, LABEL) query: {query!r}")
        found = label_values(prometheus, m.group(1), m.group(2))
        if not found:
            sys.exit(f"variable {name}: {m.group(0)} offers no value in Prometheus {prometheus}")
        print(f"variable {name} = {found}", file=sys.stderr)
        values[name] = grafana_regex(found)
    return values


def expressions(dashboard, values):
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], substitute(target["expr"], values)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("dashboard", nargs="?", default="dashboards/idle_drop_exporter.json")
    ap.add_argument("--prometheus", help="HOST:PORT of the Prometheus to resolve the variables with")
    args = ap.parse_args()
    dashboard = json.loads(Path(args.dashboard).read_text())
    values = resolve(dashboard, args.prometheus)
    for _, expr in expressions(dashboard, values):
        print(" ".join(expr.split()))
