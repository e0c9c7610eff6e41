#!/usr/bin/env python3
"""Prints every PromQL expression of the Grafana dashboard, one per line, with Grafana's
variables replaced by concrete values, so a test can run each against a real Prometheus."""
import json
import sys
from pathlib import Path

SUBSTITUTIONS = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "5m",
    "${target:regex}": ".*",
    "$target": ".*",
}


def expressions(path):
    dashboard = json.loads(Path(path).read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for var, value in SUBSTITUTIONS.items():
                expr = expr.replace(var, value)
            yield panel["title"], expr


if __name__ == "__main__":
    path = sys.argv[1] if len(sys.argv) > 1 else "dashboards/idle_drop_exporter.json"
    for _, expr in expressions(path):
        print(" ".join(expr.split()))
