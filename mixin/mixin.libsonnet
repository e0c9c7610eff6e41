// The idle_drop_exporter monitoring mixin: prometheusRules (recording rules), prometheusAlerts
// and grafanaDashboards, re-targeted through _config (config.libsonnet).
(import 'config.libsonnet') +
(import 'rules/rules.libsonnet') +
(import 'alerts/alerts.libsonnet') +
(import 'dashboards/dashboards.libsonnet')
