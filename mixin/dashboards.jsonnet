// Renders dashboards/: one JSON file per dashboard, for `jsonnet -m OUT_DIR -J mixin
// mixin/dashboards.jsonnet`; another configuration: `--tla-code config='{ ... }'` (fields in
// config.libsonnet).
function(config={})
  ((import 'mixin.libsonnet') + { _config+:: config }).grafanaDashboards
