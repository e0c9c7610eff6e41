local u = import '../lib/utils.libsonnet';

{
  local sel(matchers=[]) = u.selector([$._config.idleDropMetricsSelector] + matchers),

  prometheusRules+:: {
    groups+: [
      {
        name: 'idle_drop_exporter.recording',
        rules: [
          // Closed connections that should have survived (guard, low sentinel, or below the
          // lower bound), per second over 5 minutes: what pages.
          {
            record: 'idle_drop:unexpected_closed_connections:rate5m',
            expr: 'sum by (job, instance, target, role, kind) (rate(idle_drop_unexpected_closed_connections_total%s[5m]))' % sel(),
          },
          // Every closed probe connection by kind: how the path kills idle flows.
          {
            record: 'idle_drop:closed_connections:rate5m',
            expr: 'sum by (job, instance, target, kind) (rate(idle_drop_closed_connections_total%s[5m]))' % sel(),
          },
          // Share of probe uses that found the connection alive, per ladder rung.
          {
            record: 'idle_drop:probe_survival:ratio30m',
            expr: |||
              sum by (job, instance, target, rung) (rate(idle_drop_probe_uses_total%(ok)s[30m]))
                /
              sum by (job, instance, target, rung) (rate(idle_drop_probe_uses_total%(all)s[30m]))
            ||| % { ok: sel(['outcome="ok"']), all: sel() },
          },
        ],
      },
    ],
  },
}
