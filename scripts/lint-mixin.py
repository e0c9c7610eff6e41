#!/usr/bin/env python3
"""Lints the rendered monitoring mixin with the rules `mixtool lint` applies, because mixtool
(Go, with grafana/dashboard-linter inside) has no Debian, PyPI or npm package to install here.
The rule names are mixtool's and dashboard-linter's, so a finding reads the same as theirs:

alerts (mixtool's pkg/mixer/lint.go, the guidelines of monitoring.mixins.dev):
  alert-name-camelcase, alert-severity-rule (critical|warning|info),
  alert-summary-missing-rule, alert-summary-templating, alert-summary-style (a sentence: capital
  first, period last), alert-description-missing-rule, alert-description-templating;
  plus alert-runbook-url: an absolute runbook_url whose #anchor is a section of docs/runbook.md
  that says what the alert means, how to confirm it and what to change (the guidelines ask for
  runbook_url; mixtool does not check it).
recording rules (Prometheus' naming practice level:metric:operations): record-name-format.
dashboards (dashboard-linter's default rule set, which mixtool runs):
  dashboard-title-uid, template-datasource-rule, template-job-rule, template-instance-rule,
  template-label-promql-rule, template-on-time-change-reload, panel-datasource-rule,
  panel-title-description-rule, panel-units-rule, panel-no-targets-rule, target-promql-rule,
  target-rate-interval-rule, target-job-rule, target-instance-rule, target-counter-agg-rule.
mixtool counts dashboard-linter's warnings as errors, and so does this script.

  scripts/lint-mixin.py [--rules FILE] [--dashboards DIR] [--runbook FILE]

Defaults: the repository's alerts/idle_drop_exporter.rules.yml, dashboards/, docs/runbook.md.
Prints one line per finding and exits 1 when there is one."""
import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

import dashboard_promql as dp

root = Path(__file__).resolve().parent.parent

CAMEL_CASE = re.compile(r"^([A-Z]+[a-z0-9]+)+$")
GO_TEMPLATE = re.compile(r"\{\{.+\}\}")
SENTENCE = re.compile(r"^[A-Z].+\.$", re.DOTALL)
RECORD_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*:[a-zA-Z0-9_:]+:[a-zA-Z0-9_]+$")
SEVERITIES = {"critical", "warning", "info"}
RUNBOOK_PARTS = ["What it means", "How to confirm it", "What to change"]
# Panel types dashboard-linter lints; `text` and `row` have no queries.
QUERY_PANELS = {"stat", "singlestat", "graph", "table", "timeseries", "gauge"}
LABEL_FUNCTIONS = {"label_names", "label_values", "metrics", "query_result"}
# Grafana's unit ids (packages/grafana-data/src/valueFormats/categories.ts) that a dashboard of
# durations, counts and rates can use; any other fails, as it does in dashboard-linter.
UNITS = {
    "none", "string", "short", "percent", "percentunit", "sci", "locale", "bool", "bool_yes_no",
    "bool_on_off", "hertz", "ns", "µs", "ms", "s", "m", "h", "d", "dtdurationms", "dtdurations",
    "dthms", "dtdhms", "timeticks", "clockms", "clocks", "cps", "ops", "reqps", "rps", "wps",
    "iops", "cpm", "opm", "rpm", "wpm", "bytes", "decbytes", "bits", "decbits", "kbytes",
    "mbytes", "gbytes", "Bps", "bps", "binBps", "binbps", "pps", "dateTimeAsIso",
    "dateTimeFromNow",
}


def slug(heading):
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def runbook_sections(path):
    """{anchor: section text} of the runbook's level-2 sections."""
    sections, current = {}, None
    for line in path.read_text().splitlines():
        if line.startswith("## "):
            current = slug(line[3:])
            sections[current] = ""
        elif current:
            sections[current] += line + "\n"
    return sections


def lint_alert(rule, runbook):
    name = rule["alert"]
    labels, annotations = rule.get("labels", {}), rule.get("annotations", {})
    if not CAMEL_CASE.match(name):
        yield "alert-name-camelcase", f"Alert '{name}' name is not in camel case"
    severity = labels.get("severity")
    if severity not in SEVERITIES:
        yield ("alert-severity-rule",
               f"Alert '{name}' severity must be 'warning', 'critical' or 'info', is currently '{severity}'")
    description = annotations.get("description")
    if description is None:
        yield "alert-description-missing-rule", f"Alert '{name}' must have annotation 'description'"
    elif not GO_TEMPLATE.search(description):
        yield "alert-description-templating", f"Alert {name} annotation 'description' must use templates"
    summary = annotations.get("summary")
    if summary is None:
        yield "alert-summary-missing-rule", f"Alert '{name}' must have annotation 'summary'"
    else:
        if GO_TEMPLATE.search(summary):
            yield "alert-summary-templating", f"Alert {name} annotation 'summary' must not use templates"
        if not SENTENCE.match(summary):
            yield ("alert-summary-style",
                   f"Alert {name} annotation 'summary' must start with capital letter and end with period, is currently '{summary}'")
    yield from lint_runbook_url(name, annotations.get("runbook_url"), runbook)


def lint_runbook_url(name, url, runbook):
    if url is None:
        yield "alert-runbook-url", f"Alert '{name}' must have annotation 'runbook_url'"
        return
    if not re.match(r"^https?://[^\s#]+#[\w-]+$", url):
        yield "alert-runbook-url", f"Alert '{name}' runbook_url {url!r} is not an absolute URL with an #anchor"
        return
    anchor = url.rsplit("#", 1)[1]
    if anchor not in runbook:
        yield "alert-runbook-url", f"Alert '{name}' runbook_url anchor #{anchor} is no section of the runbook"
        return
    missing = [part for part in RUNBOOK_PARTS if f"**{part}" not in runbook[anchor]]
    if missing:
        yield "alert-runbook-url", f"Alert '{name}': runbook section #{anchor} lacks {', '.join(missing)}"


def lint_rules(path, runbook):
    problems, alerts, records = [], 0, 0
    for group in yaml.safe_load(path.read_text())["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                alerts += 1
                problems += list(lint_alert(rule, runbook))
            else:
                records += 1
                if not RECORD_NAME.match(rule["record"]):
                    problems.append(("record-name-format",
                                     f"Recording rule '{rule['record']}' is not named level:metric:operations"))
    return problems, alerts, records


def check_template(d, name, problems):
    """dashboard-linter's checkTemplate: the job and instance variables."""
    found = [v for v in d["templating"]["list"] if v.get("name") == name]
    rule = f"template-{name}-rule"
    if not found:
        problems.append((rule, f"'{d['title']}' is missing the {name} template"))
        return
    v = found[0]
    uid = (v.get("datasource") or {}).get("uid") if isinstance(v.get("datasource"), dict) else v.get("datasource")
    if uid not in ("$datasource", "${datasource}", "$prometheus_datasource", "${prometheus_datasource}"):
        problems.append((rule, f"'{d['title']}' {name} template should use datasource '$datasource', is currently '{uid}'"))
    if v.get("type") != "query":
        problems.append((rule, f"'{d['title']}' {name} template should be a Prometheus query, is currently '{v.get('type')}'"))
    if v.get("label") != name.title():
        problems.append((rule, f"'{d['title']}' {name} template should be labeled '{name.title()}', is currently '{v.get('label')}'"))
    if not v.get("multi"):
        problems.append((rule, f"'{d['title']}' {name} template should be a multi select"))
    if v.get("allValue") != ".+":
        problems.append((rule, f"'{d['title']}' {name} template allValue should be '.+', is currently '{v.get('allValue')}'"))


def lint_templates(d, problems):
    title = d["title"]
    variables = d.get("templating", {}).get("list", [])
    sources = [v for v in variables if v.get("type") == "datasource"]
    if not sources:
        problems.append(("template-datasource-rule", f"Dashboard '{title}' does not have a templated data source"))
    for v in sources:
        query = v.get("query", "")
        allowed_names = {f"{query.lower()}_datasource"} | ({"datasource"} if len(sources) == 1 else set())
        allowed_labels = {f"{query.title()} data source"} | ({"Data source"} if len(sources) == 1 else set())
        if v.get("name") not in allowed_names:
            problems.append(("template-datasource-rule", f"Dashboard '{title}' templated data source variable named '{v.get('name')}', should be one of {sorted(allowed_names)}"))
        if v.get("label") not in allowed_labels:
            problems.append(("template-datasource-rule", f"Dashboard '{title}' templated data source variable labeled '{v.get('label')}', should be one of {sorted(allowed_labels)}"))
    if any(v.get("query") == "prometheus" for v in sources):
        check_template(d, "job", problems)
        check_template(d, "instance", problems)
    for v in variables:
        if v.get("type") != "query":
            continue
        query = dp.variable_query(v)
        m = re.fullmatch(r"\s*([a-z_]+)\((.+)\)\s*", query, re.DOTALL)
        if not m or m.group(1) not in LABEL_FUNCTIONS:
            problems.append(("template-label-promql-rule", f"Dashboard '{title}', template '{v['name']}' invalid templated label '{query}'"))
        else:
            argument = m.group(2).rsplit(",", 1)[0] if m.group(1) == "label_values" and "," in m.group(2) else m.group(2)
            try:
                dp.parse(argument)
            except ValueError as e:
                problems.append(("template-label-promql-rule", f"Dashboard '{title}', template '{v['name']}' invalid PromQL '{argument}': {e}"))
        if v.get("refresh") != 2:
            problems.append(("template-on-time-change-reload", f"Dashboard '{title}' variable '{v['name']}' should refresh on time range change (2), is {v.get('refresh')}"))


def lint_target(d, p, t, problems):
    where = f"Dashboard '{d['title']}', panel '{p.get('title')}', target {t.get('refId')}"
    expr = t.get("expr", "")
    try:
        node = dp.parse(expr)
    except ValueError as e:
        problems.append(("target-promql-rule", f"{where}: invalid PromQL {expr!r}: {e}"))
        return
    for n, parents in dp.walk(node):
        if isinstance(n, dp.pp.MatrixSelector) and parents and isinstance(parents[-1], dp.pp.Call) \
                and parents[-1].func.name in ("rate", "irate") and n.range != dp.RANGE_OF["__rate_interval"]:
            problems.append(("target-rate-interval-rule", f"{where}: {expr!r} should use $__rate_interval"))
    for selector, parents in dp.selectors(node):
        for label in ("job", "instance"):
            if not dp.has_variable_matcher(selector, label):
                problems.append((f"target-{label}-rule", f"{where}: {selector} has no {label}=~\"${label}\" matcher"))
        name = selector.name or ""
        if name.endswith("_total") and not (
                len(parents) >= 2 and isinstance(parents[-1], dp.pp.MatrixSelector)
                and isinstance(parents[-2], dp.pp.Call)
                and parents[-2].func.name in ("rate", "irate", "increase")):
            problems.append(("target-counter-agg-rule", f"{where}: counter metric '{selector}' is not aggregated with rate, irate, or increase"))


def lint_dashboard(filename, d):
    problems = []
    if not d.get("title"):
        problems.append(("dashboard-title-uid", f"dashboard has no title: {filename}"))
    if not d.get("uid"):
        problems.append(("dashboard-title-uid", f"dashboard has no UID, please set one for links to work: {filename}"))
    lint_templates(d, problems)
    source_uids = {f"${v['name']}" for v in d["templating"]["list"] if v.get("type") == "datasource"}
    source_uids |= {f"${{{u[1:]}}}" for u in source_uids}
    for p in dp.panels(d):
        if p.get("type") not in QUERY_PANELS:
            continue
        where = f"Dashboard '{d['title']}', panel '{p.get('title')}'"
        if (p.get("datasource") or {}).get("uid") not in source_uids:
            problems.append(("panel-datasource-rule", f"{where} does not use a templated datasource"))
        if not p.get("title") or not p.get("description"):
            problems.append(("panel-title-description-rule", f"{where} (id {p.get('id')}) has a missing title or description"))
        unit = p.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
        if unit not in UNITS:
            problems.append(("panel-units-rule", f"{where} has no or invalid units defined: '{unit}'"))
        if not p.get("targets"):
            problems.append(("panel-no-targets-rule", f"{where} has no targets"))
        for t in p.get("targets", []):
            lint_target(d, p, t, problems)
    return problems


def promtool_parse(dashboards):
    """Every dashboard query through Prometheus' own parser (promtool check rules on a file of
    recording rules), as dashboard-linter's target-promql-rule does with the Go parser."""
    rules = [{"record": f"lint:query_{i}:expr", "expr": dp.expand(t["expr"])}
             for d in dashboards.values() for p in dp.panels(d) for i, t in enumerate(p.get("targets", []))]
    if not rules:
        return []
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as f:
        yaml.safe_dump({"groups": [{"name": "dashboard_queries", "rules": rules}]}, f)
        f.flush()
        run = subprocess.run(["promtool", "check", "rules", f.name], capture_output=True, text=True)
    if run.returncode != 0:
        return [("target-promql-rule", f"promtool rejects a dashboard query: {run.stdout}{run.stderr}".strip())]
    return []


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rules", type=Path, default=root / "alerts/idle_drop_exporter.rules.yml")
    ap.add_argument("--dashboards", type=Path, default=root / "dashboards")
    ap.add_argument("--runbook", type=Path, default=root / "docs/runbook.md")
    args = ap.parse_args()
    runbook = runbook_sections(args.runbook) if args.runbook.exists() else {}
    problems, alerts, records = lint_rules(args.rules, runbook)
    dashboards = {f.name: json.loads(f.read_text()) for f in sorted(args.dashboards.glob("*.json"))}
    for filename, d in dashboards.items():
        problems += lint_dashboard(filename, d)
    problems += promtool_parse(dashboards)
    for rule, message in problems:
        print(f"[{rule}] {message}")
    counts = {}
    for rule, _ in problems:
        counts[rule] = counts.get(rule, 0) + 1
    print(f"mixin lint: {len(problems)} findings in {alerts} alerts, {records} recording rules, "
          f"{len(dashboards)} dashboards" + (f" ({', '.join(f'{r}: {n}' for r, n in sorted(counts.items()))})" if counts else ""))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
