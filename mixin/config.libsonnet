// What re-targets the mixin. Override in your own jsonnet:
//   (import 'idle_drop_exporter/mixin.libsonnet') + { _config+:: { jobName: 'pg-idle' } }
// The defaults render dashboards/ and alerts/ of this repository (scripts/render-mixin.sh).
{
  _config+:: {
    // The Prometheus scrape job of the exporter: in alert text, and the default of
    // idleDropSelector.
    jobName: 'idle_drop_exporter',

    // Selects the exporter's scrape targets in Prometheus' own series (`up`,
    // `scrape_duration_seconds`): IdleDropExporterAbsent and the dashboard's health panels.
    idleDropSelector: 'job="%s"' % self.jobName,

    // Extra label matchers put in every idle_drop_* (and idle_drop:*) selector of the recording
    // rules, the alerts (their expressions and the queries in their text) and the dashboard.
    // Empty: every idle_drop series Prometheus has, which is right while one exporter job
    // writes them. Set it when several jobs or clusters share a Prometheus, e.g.
    // 'job="pg-idle"' or 'job="idle_drop_exporter",cluster="eu-1"'.
    idleDropMetricsSelector: '',

    // Grafana dashboard. The uid stays the same so an import updates the existing dashboard;
    // the data source is always the dashboard's ${datasource} variable.
    dashboardUid: 'idle-drop-exporter',
    dashboardTitle: 'idle_drop_exporter',
    dashboardTags: ['postgresql', 'idle_drop_exporter'],
    dashboardRefresh: '30s',
    dashboardTimeFrom: 'now-6h',
  },
}
