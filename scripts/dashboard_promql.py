"""PromQL of Grafana dashboards, parsed: Grafana's variables expanded to placeholders the way
grafana/dashboard-linter does it (what `mixtool lint` runs), then parsed with promql-parser (PyPI,
the Rust promql-parser's bindings; scripts/install-deps.sh installs it), and the vector
selectors listed with the chain of nodes above each. Used by scripts/lint-mixin.py and
scripts/check-dashboard.py."""
import re
from datetime import timedelta

import promql_parser as pp

# Grafana's time-range globals become distinct durations no real query uses, so a range can be
# traced back to its variable after parsing (dashboard-linter's "magic" durations).
_MAGIC_SECONDS = 11277964
_TIME_VARIABLES = ["__rate_interval", "__interval", "__interval_ms", "__range", "__range_s",
                   "__range_ms"]
RANGE_OF = {name: timedelta(seconds=_MAGIC_SECONDS + i) for i, name in enumerate(_TIME_VARIABLES)}

# $var, ${var} and ${var:format}, [[var]]; a `"` in front means the variable is inside a string
# (a matcher value) and stays as it is, so a matcher reads `job=~"$job"` after parsing.
_VARIABLE = re.compile(r'("\$|\$)(\w+)|("\$|\$)\{([^}]+)\}|\[\[([^\[\]]+)\]\]')


def _expand(match):
    text = match.group(0)
    if text.startswith('"'):
        return text
    name = next(g for g in (match.group(2), match.group(4), match.group(5)) if g).split(":")[0]
    if name in RANGE_OF:
        return f"{int(RANGE_OF[name].total_seconds())}s"
    return f"bgludgvy_{name}"


def expand(expr):
    """The expression with variables outside strings replaced by placeholders."""
    return _VARIABLE.sub(_expand, expr)


def parse(expr):
    """The parsed expression (variables expanded); raises ValueError on invalid PromQL."""
    return pp.parse(expand(expr))


def children(node):
    if isinstance(node, pp.BinaryExpr):
        return [node.lhs, node.rhs]
    if isinstance(node, pp.AggregateExpr):
        return [n for n in (node.param, node.expr) if isinstance(n, pp.Expr)]
    if isinstance(node, pp.Call):
        return list(node.args)
    if isinstance(node, (pp.ParenExpr, pp.UnaryExpr, pp.SubqueryExpr)):
        return [node.expr]
    if isinstance(node, pp.MatrixSelector):
        return [node.vector_selector]
    return []


def walk(node, parents=()):
    """Every node with the tuple of its ancestors, outermost first."""
    yield node, parents
    for child in children(node):
        yield from walk(child, parents + (node,))


def selectors(node):
    """(VectorSelector, ancestors) for every vector selector of the expression."""
    return [(n, parents) for n, parents in walk(node) if isinstance(n, pp.VectorSelector)]


def matchers(selector):
    """The selector's label matchers as (name, op, value), op one of = != =~ !~."""
    ops = [(pp.MatchOp.Equal, "="), (pp.MatchOp.NotEqual, "!="), (pp.MatchOp.Re, "=~"),
           (pp.MatchOp.NotRe, "!~")]
    return [(m.name, next(text for op, text in ops if m.op == op), m.value)
            for m in selector.matchers.matchers]


def has_variable_matcher(selector, label):
    """True when the selector filters `label` by the dashboard variable of that name."""
    return (label, "=~", f"${label}") in matchers(selector)


def panels(dashboard):
    """Every panel, those inside rows included."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def variable_query(variable):
    """The query of a template variable: a string, or Grafana's {query: ...} object."""
    query = variable.get("query", "")
    return query.get("query", "") if isinstance(query, dict) else query
