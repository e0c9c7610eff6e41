// Renders alerts/idle_drop_exporter.rules.yml: the recording rules and the alerts, one file for
// Prometheus' rule_files. `jsonnet -S -J mixin mixin/alerts.jsonnet`; another configuration:
// `--tla-code config='{ jobName: "pg-idle" }'` (fields in config.libsonnet).
function(config={})
  local mixin = (import 'mixin.libsonnet') + { _config+:: config };
  |||
    # GENERATED from mixin/ (jsonnet) by scripts/render-mixin.sh: do not edit. Change
    # mixin/alerts/alerts.libsonnet or mixin/rules/rules.libsonnet, then run scripts/render-mixin.sh.
    # Rendered with the default _config (scrape job `idle_drop_exporter`, see
    # docs/observability.md); re-target the rules through mixin/config.libsonnet instead.
    # deploy/kubernetes/prometheusrule.yaml is generated from this file by
    # scripts/gen-prometheusrule.py.
  ||| +
  std.manifestYamlDoc(
    { groups: mixin.prometheusRules.groups + mixin.prometheusAlerts.groups },
    indent_array_in_object=true,
    quote_keys=false,
  )
