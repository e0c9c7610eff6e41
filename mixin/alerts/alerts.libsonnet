local u = import '../lib/utils.libsonnet';

{
  local cfg = $._config,
  local sel(matchers=[]) = u.selector([cfg.idleDropMetricsSelector] + matchers),

  // A Go-template query in an annotation: the value of `metric` for the alert's target on the
  // alert's exporter (job and instance: the same target name can be probed by several), as a
  // duration, or `fallback` when Prometheus has none. The selector goes inside a double-quoted
  // template string, hence the escaped quotes.
  local recommended(metric, fallback) =
    local prefix = if cfg.idleDropMetricsSelector == '' then ''
    else std.strReplace(cfg.idleDropMetricsSelector, '"', '\\"') + ',';
    '{{ with printf "%s{%sjob=\'%%s\',instance=\'%%s\',target=\'%%s\'}" $labels.job $labels.instance $labels.target | query }}{{ . | first | value | humanizeDuration }}{{ else }}%s{{ end }}'
    % [metric, prefix, fallback],

  // A per-target alert's expression joined with idle_drop_target_info, which carries each
  // target's `labels:` from the exporter's configuration: the alert gets the labels named in
  // _config.targetInfoLabels (for Alertmanager's routes), its value stays the expression's (the
  // info series is 1). A target without an info series (an exporter older than the metric)
  // joins the expression's own (job, instance, target) instead, so it keeps its alert.
  local withTargetInfo(expr) =
    local e = std.rstripChars(expr, '\n');
    local indent(text, by) = std.join('\n', [by + line for line in std.split(text, '\n')]);
    if cfg.targetInfoLabels == [] then expr
    else std.join('\n', [
      '(',
      indent(e, '  '),
      ')',
      '* on (job, instance, target) group_left (%s)' % std.join(', ', cfg.targetInfoLabels),
      '(',
      '  idle_drop_target_info%s' % sel(),
      '  or on (job, instance, target)',
      '  group by (job, instance, target) (',
      indent(e, '    '),
      '  )',
      ')',
      '',
    ]),

  // What every alert gets from _config: its severity and the runbook section about it.
  local withDefaults(rule) =
    assert std.objectHas(cfg.alertSeverities, rule.alert) :
           '_config.alertSeverities has no severity for %s' % rule.alert;
    rule {
      labels+: { severity: cfg.alertSeverities[rule.alert] },
      annotations+: { runbook_url: '%s#%s' % [cfg.runbookURLBase, std.asciiLower(rule.alert)] },
    },
  local withConfig(rules) =
    local unknown = std.setDiff(std.set(std.objectFields(cfg.alertSeverities)), std.set([r.alert for r in rules]));
    assert unknown == [] : '_config.alertSeverities names no alert of the mixin: %s' % std.join(', ', unknown);
    std.map(withDefaults, rules),

  prometheusAlerts+:: {
    groups+: [
      {
        name: 'idle_drop_exporter.alerts',
        rules: withConfig([
          {
            alert: 'IdleDropClosedConnectionsSpike',
            // Any unexpected death is a real connection the application would also have lost:
            // no `for`, the 5m window keeps the alert up between guard cycles.
            expr: withTargetInfo('sum by (job, instance, target, role, kind) (increase(idle_drop_unexpected_closed_connections_total%s[5m])) > 0' % sel()),
            annotations: {
              summary: 'Idle PostgreSQL connections that should have survived are being dropped.',
              description: u.fold(|||
                {{ $value | humanize }} connection(s) of role {{ $labels.role }} to {{ $labels.target }} died
                ({{ $labels.kind }}) although they were idle for less than the measured threshold.
                Applications pooling connections to this database are getting `kind: Closed` right now.
                Set the pool's max idle lifetime to at most
                %(lifetime)s
                (quaint/Prisma: max_idle_connection_lifetime; HikariCP: idleTimeout/keepaliveTime; pgx: MaxConnIdleTime)
                and a socket timeout of
                %(socket)s.
              ||| % {
                lifetime: recommended('idle_drop_recommended_max_idle_lifetime_seconds', "the value on the exporter's page"),
                socket: recommended('idle_drop_recommended_socket_timeout_seconds', '10s'),
              }),
            },
          },
          {
            alert: 'IdleDropAppPoolLifetimeUnsafe',
            expr: withTargetInfo(|||
              (
                sum by (job, instance, target) (increase(idle_drop_unexpected_closed_connections_total%(guard)s[15m])) > 0
              )
              or
              (
                idle_drop_app_max_idle_lifetime_seconds%(all)s
                  >= on (job, instance, target)
                (idle_drop_threshold_lower_bound_seconds%(all)s > 0)
                # Only a settled bracket: while discovering, the lower bound is just how far the
                # search has climbed (the guard's deaths page then).
                  and on (job, instance, target)
                (idle_drop_discovery_state%(watching)s == 1)
              )
            ||| % { guard: sel(['role="guard"']), all: sel(), watching: sel(['state="watching"']) }),
            'for': '5m',
            annotations: {
              summary: "The application's pool idle lifetime is not below the idle-drop threshold.",
              description: u.fold(|||
                The configured app_max_idle_lifetime for {{ $labels.target }} is at or above the longest
                idle a probe survived, or the guard probe idling exactly that long has died. Lower the pool's
                max idle lifetime to at most
                %(lifetime)s
                and update app_max_idle_lifetime in the exporter's config to match.
              ||| % { lifetime: recommended('idle_drop_recommended_max_idle_lifetime_seconds', 'the recommended value') }),
            },
          },
          {
            alert: 'IdleDropThresholdChanged',
            expr: withTargetInfo('sum by (job, instance, target, direction) (increase(idle_drop_threshold_changes_total%s[30m])) > 0' % sel()),
            annotations: {
              summary: 'The idle-drop threshold of a target moved.',
              description: u.fold(|||
                The idle-drop threshold of {{ $labels.target }} moved {{ $labels.direction }}: a watch
                sentinel contradicted the measured bracket, so the network path
                now drops idle connections {{ if eq $labels.direction "down" }}sooner{{ else }}later{{ end }}.
                The exporter is rediscovering; check that the pool's idle lifetime is still below
                %(lifetime)s
                once discovery finishes (did a load balancer, NAT gateway or proxy setting change?).
              ||| % { lifetime: recommended('idle_drop_recommended_max_idle_lifetime_seconds', 'the new recommendation') }),
            },
          },
          {
            alert: 'IdleDropGhostBackendsAccumulating',
            expr: withTargetInfo('idle_drop_ghost_backends%s > 3' % sel()),
            'for': '15m',
            annotations: {
              summary: 'Dead probe sessions linger on a PostgreSQL server.',
              description: u.fold(|||
                {{ $labels.target }} still lists {{ $value }} probe sessions whose client side is gone (silent drops), and
                the exporter could not terminate them (reap_ghosts off, or pg_terminate_backend refused).
                Your applications leave the same ghosts, which count against max_connections: set the
                server's tcp_keepalives_idle below the idle-drop threshold (e.g. 60s with interval 10s and
                count 3) so the server reaps them.
              |||),
            },
          },
          {
            alert: 'IdleDropTargetDown',
            expr: withTargetInfo('idle_drop_target_up%s == 0' % sel()),
            'for': '5m',
            annotations: {
              summary: 'The idle-drop exporter cannot reach a target.',
              description: u.fold(|||
                The control connection to {{ $labels.target }} has failed for 5 minutes; probing is paused.
                See idle_drop_connect_errors_total{target="{{ $labels.target }}"} for the kind
                (refused, timeout, dns, tls, auth, too_many_connections) and the exporter's log.
              |||),
            },
          },
          {
            alert: 'IdleDropTargetOutage',
            // Outages are not idle drops: they never count as unexpected deaths, so they get
            // their own alert, with advice that does not blame the pool's lifetime.
            expr: withTargetInfo('sum by (job, instance, target) (increase(idle_drop_outages_total%s[15m])) > 0' % sel()),
            annotations: {
              summary: 'A target was unreachable in the last 15 minutes.',
              description: u.fold(|||
                The exporter lost {{ $labels.target }}: the control connection failed and the server did not
                answer again at once (link down, a server restart or failover, connections terminated by
                an administrator). Connections that died then were not idle drops, and pool lifetime
                settings will not prevent them. See idle_drop_connect_errors_total{target="{{ $labels.target }}"}
                and the server's log.
              |||),
            },
          },
          {
            alert: 'IdleDropExporterAbsent',
            expr: 'up{%(s)s} == 0 or absent(up{%(s)s})' % { s: cfg.idleDropSelector },
            'for': '5m',
            annotations: {
              summary: 'The idle-drop exporter is not being scraped.',
              description: u.fold(|||
                Prometheus has no successful scrape of job %(job)s for 5 minutes
                ({{ if $labels.instance }}instance {{ $labels.instance }}{{ else }}no target at all{{ end }}):
                idle-drop pages cannot fire. Check the exporter's pod/process and the scrape config.
              ||| % { job: cfg.jobName }),
            },
          },
          {
            alert: 'IdleDropConfigReloadFailed',
            expr: 'idle_drop_config_last_reload_successful%s == 0' % sel(),
            'for': '5m',
            annotations: {
              summary: 'The idle-drop exporter is running an old configuration.',
              description: u.fold(|||
                The last reload of the configuration file failed on {{ $labels.instance }}; the previous
                configuration is still running. The exporter's log names the file, line and field.
              |||),
            },
          },
          {
            alert: 'IdleDropTargetFileInvalid',
            // A refused target file keeps its last good targets running, so nothing pages; but
            // its changes (new databases, moved ones) are not applied until it is fixed.
            expr: 'idle_drop_target_file_last_load_successful%s == 0' % sel(),
            'for': '10m',
            annotations: {
              summary: 'A target file of the idle-drop exporter is refused.',
              description: u.fold(|||
                idle_drop_exporter on {{ $labels.instance }} refuses the target file {{ $labels.file }}:
                it is unreadable, not valid YAML or JSON, has an invalid field, or names a target that
                another file or the configuration already has. The targets it gave before keep
                running, but its changes are not applied. The exporter's log line "target file
                refused" names the file, line and field; fix the file (or whatever generates it), or
                run idle_drop_exporter --config.check to see the error. It applies at the next
                refresh, without a restart.
              |||),
            },
          },
          {
            alert: 'IdleDropShardMissing',
            // With --shard=I/N every replica exports its shard; fewer distinct shards than N
            // means a replica is down or misconfigured and its targets are not watched.
            expr: 'count by (job) (count by (job, shard) (idle_drop_shard_info%(s)s)) < max by (job) (idle_drop_shards%(s)s)' % { s: sel() },
            'for': '10m',
            annotations: {
              summary: 'A shard of the idle-drop exporters is not reporting.',
              description: u.fold(|||
                Only {{ $value }} distinct shards of job {{ $labels.job }} report, fewer than the N in
                their --shard=I/N: the targets of the missing shard are not watched and cannot page.
                Check the StatefulSet's pods and that each has its own ordinal.
              |||),
            },
          },
        ]),
      },
    ],
  },
}
