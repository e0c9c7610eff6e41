local u = import '../lib/utils.libsonnet';

// Every query goes through the dashboard's ${datasource} variable: no data source uid is
// hard-coded (scripts/check-dashboard.py checks it).
local datasource = { type: 'prometheus', uid: '${datasource}' };

// Queries get refIds A, B, C... in order; stat panels ask for instant values.
local targets(queries, instant) = [
  { datasource: datasource, refId: std.char(std.codepoint('A') + i), expr: queries[i][0], legendFormat: queries[i][1] }
  + (if instant then { instant: true, range: false } else {})
  for i in std.range(0, std.length(queries) - 1)
];

local panel(id, type, title, description, gridPos, defaults, queries, options, instant=false) = {
  id: id,
  type: type,
  title: title,
  description: description,
  datasource: datasource,
  gridPos: { x: gridPos[0], y: gridPos[1], w: gridPos[2], h: gridPos[3] },
  targets: targets(queries, instant),
  fieldConfig: { defaults: defaults, overrides: [] },
  options: options,
};

local stat(id, title, description, gridPos, defaults, queries, textMode='value_and_name') =
  panel(id, 'stat', title, description, gridPos, defaults, queries, {
    reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false },
    textMode: textMode,
    colorMode: 'value',
    graphMode: 'none',
  }, instant=true);

local timeseries(id, title, description, gridPos, defaults, queries) =
  panel(id, 'timeseries', title, description, gridPos, defaults, queries, {});

{
  local cfg = $._config,
  // Matchers of the dashboard's variables, outermost first: cluster (with showMultiCluster),
  // job, instance. Variables come before the configured selectors in every selector, so each
  // query reads `{job=~"$job",instance=~"$instance",...}` as dashboard linters expect.
  local clusterMatchers = if cfg.showMultiCluster then ['%s=~"$cluster"' % cfg.clusterLabel] else [],
  local exporterMatchers = clusterMatchers + ['job=~"$job"', 'instance=~"$instance"'],
  // idle_drop series of the selected exporters and targets, and of the configured selector;
  // t([]) for the exporter's own series, which have no target label.
  local t(matchers=['target=~"$target"']) = u.selector(exporterMatchers + matchers + [cfg.idleDropMetricsSelector]),
  // The exporter's scrape targets in Prometheus' own series (up, scrape_duration_seconds).
  local job = u.selector(exporterMatchers + [cfg.idleDropSelector]),
  // Series grouped per exporter and target: the same target name can be probed by several
  // exporters (shards, clusters), and a sum over both would mix two network paths.
  local by(labels) = 'by (%s)' % std.join(', ', (if cfg.showMultiCluster then [cfg.clusterLabel] else []) + ['instance'] + labels),

  // A query variable, as dashboard linters want it: through ${datasource}, multi-select with
  // All as `.+`, refreshed when the time range changes (a target that appeared since shows up).
  // `all`: All is selected when the dashboard opens (every exporter); else Grafana's default,
  // the first value (one target, not a thousand).
  local variable(name, label, query, all=true) = {
    name: name,
    label: label,
    type: 'query',
    datasource: datasource,
    query: { query: query, refId: name },
    definition: query,
    multi: true,
    includeAll: true,
    allValue: '.+',
    current: if all then { selected: true, text: ['All'], value: ['$__all'] } else {},
    refresh: 2,
    sort: 1,
    hide: 0,
  },

  grafanaDashboards+:: {
    'idle_drop_exporter.json': {
      title: cfg.dashboardTitle,
      uid: cfg.dashboardUid,
      tags: cfg.dashboardTags,
      schemaVersion: 39,
      version: 1,
      editable: true,
      graphTooltip: 1,
      refresh: cfg.dashboardRefresh,
      time: { from: cfg.dashboardTimeFrom, to: 'now' },
      annotations: { list: [] },
      templating: {
        // Each variable offers the values left by the ones before it: cluster, then the
        // exporters' jobs and instances (idle_drop_build_info: every exporter has it, whatever
        // its targets), then their targets.
        list: [
          {
            name: 'datasource',
            label: 'Data source',
            type: 'datasource',
            query: 'prometheus',
            current: {},
            hide: 0,
            refresh: 1,
          },
        ] + (
          if cfg.showMultiCluster then [
            variable('cluster', 'Cluster', 'label_values(idle_drop_build_info%s, %s)'
                                           % [u.selector([cfg.idleDropMetricsSelector]), cfg.clusterLabel]),
          ] else []
        ) + [
          variable('job', 'Job', 'label_values(idle_drop_build_info%s, job)'
                                 % u.selector(clusterMatchers + [cfg.idleDropMetricsSelector])),
          variable('instance', 'Instance', 'label_values(idle_drop_build_info%s, instance)'
                                           % u.selector(clusterMatchers + ['job=~"$job"', cfg.idleDropMetricsSelector])),
          variable('target', 'Target', 'label_values(idle_drop_target_up%s, target)' % t([]), all=false),
        ],
      },
      panels: [
        {
          id: 1,
          type: 'text',
          title: 'How to read this dashboard',
          gridPos: { x: 0, y: 0, w: 24, h: 5 },
          options: {
            mode: 'markdown',
            content: std.rstripChars(|||
              **Lower bound**: the longest idle a probe connection survived. **Upper bound**: the shortest idle that killed one. The network path drops idle connections somewhere in between.

              **Set your pool's max idle lifetime at or below the recommended value** (quaint/Prisma `max_idle_connection_lifetime`, HikariCP `idleTimeout`/`keepaliveTime`, pgx `MaxConnIdleTime`, SQLAlchemy `pool_recycle`, node-postgres `idleTimeoutMillis`) and a socket timeout, and put that lifetime in the exporter's `app_max_idle_lifetime` so the guard probe watches it. Unexpected closed connections (guard, low sentinel) page: they are connections your application would have lost too. `timeout` = silent drop, `reset` = RST from a NAT/LB, `eof` = closed, `server_terminated` = PostgreSQL (57P05 = idle_session_timeout).
            |||, '\n'),
          },
        },
        stat(2,
             'Survived up to (lower bound)',
             'Longest idle a probe connection survived.',
             [0, 5, 6, 5],
             { unit: 's' },
             [['idle_drop_threshold_lower_bound_seconds%s' % t(), '{{target}}']]),
        stat(3,
             'Killed from (upper bound)',
             'Shortest idle that killed a probe connection; +Inf while none did.',
             [6, 5, 6, 5],
             { unit: 's' },
             [['idle_drop_threshold_upper_bound_seconds%s' % t(), '{{target}}']]),
        stat(4,
             'Recommended pool max idle lifetime',
             'Lower bound minus the configured margin.',
             [12, 5, 6, 5],
             { color: { mode: 'fixed', fixedColor: 'green' }, unit: 's' },
             [['idle_drop_recommended_max_idle_lifetime_seconds%s' % t(), '{{target}}']]),
        stat(5,
             "Your app's max idle lifetime (guarded)",
             "The lifetime the guard probe idles, keep it below the recommended value. The name says where it came from: config (app_max_idle_lifetime), url (the app's DATABASE_URL max_idle_connection_lifetime) or library_default (quaint's 300 s when the URL has none).",
             [18, 5, 6, 5],
             { unit: 's' },
             [[
               'idle_drop_app_max_idle_lifetime_seconds%s * ignoring (source) group_left (source) (idle_drop_app_lifetime_source%s == 1)'
               % [t(), t()],
               '{{target}} ({{source}})',
             ]]),
        timeseries(6,
                   'Idle-drop bracket over time',
                   'The threshold lies between lower and upper.',
                   [0, 10, 12, 8],
                   { unit: 's' },
                   [
                     ['idle_drop_threshold_lower_bound_seconds%s' % t(), '{{target}} lower'],
                     ['idle_drop_threshold_upper_bound_seconds%s < +Inf' % t(), '{{target}} upper'],
                     ['idle_drop_app_max_idle_lifetime_seconds%s' % t(), '{{target}} app lifetime'],
                   ]),
        timeseries(7,
                   'Survival by ladder rung',
                   'Share of probe uses that found the connection alive, by idle rung (30m window).',
                   [12, 10, 12, 8],
                   { min: 0, max: 1, unit: 'percentunit' },
                   [['idle_drop:probe_survival:ratio30m%s' % t(), '{{target}} {{rung}}']]),
        timeseries(8,
                   'Closed connections by kind',
                   'Every probe connection death, by how it died (expected ones included: high sentinel, discovery above the threshold).',
                   [0, 18, 12, 8],
                   { unit: 'ops' },
                   [['sum %s (rate(idle_drop_closed_connections_total%s[$__rate_interval]))' % [by(['target', 'kind']), t()], '{{target}} {{kind}}']]),
        timeseries(9,
                   'Unexpected closed connections (pages)',
                   'Deaths of connections that should have survived: what IdleDropClosedConnectionsSpike pages on.',
                   [12, 18, 12, 8],
                   { thresholds: { mode: 'absolute', steps: [{ color: 'green', value: null }, { color: 'red', value: 1 }] }, unit: 'short' },
                   [['sum %s (increase(idle_drop_unexpected_closed_connections_total%s[5m]))' % [by(['target', 'role', 'kind']), t()], '{{target}} {{role}} {{kind}}']]),
        timeseries(10,
                   'Time to failure',
                   'How long a query on a dead connection takes to fail: your application waits this long without a socket timeout.',
                   [0, 26, 12, 8],
                   { unit: 's' },
                   [
                     ['histogram_quantile(%s, sum %s (rate(idle_drop_time_to_failure_seconds_bucket%s[$__rate_interval])))' % [q[0], by(['le', 'target', 'kind']), t()], '%s {{target}} {{kind}}' % q[1]]
                     for q in [['0.5', 'p50'], ['0.9', 'p90']]
                   ]),
        timeseries(11,
                   'Ghost backends',
                   'Dead probe sessions the server still listed, and those the exporter terminated.',
                   [12, 26, 12, 8],
                   { unit: 'short' },
                   [
                     ['idle_drop_ghost_backends%s' % t(), '{{target}} alive'],
                     ['increase(idle_drop_ghost_backends_seen_total%s[1h])' % t(), '{{target}} seen /1h'],
                     ['increase(idle_drop_ghost_backends_reaped_total%s[1h])' % t(), '{{target}} reaped /1h'],
                   ]),
        stat(12,
             'Discovery state',
             'discovering, confirming (a stored measurement is being confirmed), watching, no_drop, below_range or unreachable.',
             [0, 34, 8, 6],
             { unit: 'none' },
             [['max %s (idle_drop_discovery_state%s) == 1' % [by(['target', 'state']), t()], '{{target}}: {{state}}']],
             textMode='name'),
        timeseries(13,
                   'Threshold changes and discovery time',
                   'Times a watch sentinel moved the threshold (per hour), and how long the last discovery took.',
                   [8, 34, 8, 6],
                   { unit: 'short' },
                   [
                     ['increase(idle_drop_threshold_changes_total%s[1h])' % t(), '{{target}} moved {{direction}} /1h'],
                     ['idle_drop_discovery_duration_seconds%s' % t(), '{{target}} last discovery took (s)'],
                   ]),
        timeseries(14,
                   'Connect errors by kind',
                   'refused, timeout, dns, tls, auth, too_many_connections...',
                   [16, 34, 8, 6],
                   { unit: 'ops' },
                   [['sum %s (rate(idle_drop_connect_errors_total%s[$__rate_interval]))' % [by(['target', 'kind']), t()], '{{target}} {{kind}}']]),
        timeseries(15,
                   'Exporter health',
                   'Target reachability, sessions the exporter holds (never above max_connections), scrape and reload health.',
                   [0, 40, 12, 7],
                   { unit: 'short' },
                   [
                     ['idle_drop_target_up%s' % t(), '{{target}} up'],
                     ['idle_drop_probe_connections%s' % t(), '{{target}} sessions held'],
                     ['up%s' % job, 'scrape up {{instance}}'],
                     ['idle_drop_config_last_reload_successful%s' % t([]), 'config reload ok {{instance}}'],
                   ]),
        timeseries(16,
                   'Scrape duration',
                   "How long Prometheus takes to scrape each exporter; near the scrape timeout, scrapes start failing (up = 0).",
                   [12, 40, 12, 7],
                   { unit: 's' },
                   [['scrape_duration_seconds%s' % job, '{{instance}}']]),
      ],
    },
  },
}
