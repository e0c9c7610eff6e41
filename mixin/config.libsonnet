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

    // Labels of idle_drop_target_info (each target's `labels:` in the exporter's configuration)
    // that the per-target alerts copy, so Alertmanager can route by them (`team: payments` to
    // the payments receiver). A target without one of them gets an alert without it. Add the
    // names your targets carry, e.g. ['team', 'app']; [] leaves the alerts without the join.
    targetInfoLabels: ['team'],

    // The `severity` label of each alert, for Alertmanager's routes. Defaults follow the
    // monitoring-mixin convention: critical pages someone now, warning needs a look within
    // working hours, info is context for the other two. Override one with
    //   _config+:: { alertSeverities+: { IdleDropTargetDown: 'critical' } }
    // A name here that is no alert of the mixin fails the render (a typo would go unnoticed).
    alertSeverities: {
      IdleDropClosedConnectionsSpike: 'critical',
      IdleDropAppPoolLifetimeUnsafe: 'warning',
      IdleDropThresholdChanged: 'info',
      IdleDropGhostBackendsAccumulating: 'warning',
      IdleDropTargetDown: 'warning',
      IdleDropTargetOutage: 'warning',
      IdleDropExporterAbsent: 'warning',
      IdleDropConfigReloadFailed: 'warning',
      IdleDropTargetFileInvalid: 'warning',
      IdleDropShardMissing: 'warning',
    },

    // Every alert's runbook_url is this URL + '#' + the alert's name in lower case: a section of
    // docs/runbook.md. The project has no public home to link to, so the default is a
    // placeholder (example.com, RFC 2606): set it to where your on-call reads docs/runbook.md
    // (your Git host's view of it, a wiki page with the same section anchors).
    runbookURLBase: 'https://runbooks.example.com/idle_drop_exporter/runbook.md',

    // Several clusters' exporters in one Prometheus (Thanos, Mimir, a federating Prometheus):
    // true adds a `cluster` variable to the dashboard and clusterLabel=~"$cluster" to every
    // dashboard query and variable. Off, the dashboard has neither (the label need not exist).
    showMultiCluster: false,
    clusterLabel: 'cluster',

    // Grafana dashboard. The uid stays the same so an import updates the existing dashboard;
    // the data source is always the dashboard's ${datasource} variable, and the job, instance
    // and target variables (cluster too, with showMultiCluster) filter every query.
    dashboardUid: 'idle-drop-exporter',
    dashboardTitle: 'idle_drop_exporter',
    dashboardTags: ['postgresql', 'idle_drop_exporter'],
    dashboardRefresh: '30s',
    dashboardTimeFrom: 'now-6h',
  },
}
