//! `idle_drop_target_info{target="…", team="…", …} 1`: one series per target, carrying the
//! target's `labels:` for joins in alerts and routing (`docs/metrics.md`).
//!
//! A collector of its own rather than a `GaugeVec`: a vector has one fixed set of label names,
//! and each target has its own. Setting a target's labels replaces its series, so a reload that
//! changes them leaves no series with the old ones. Bounded by the configuration's caps
//! (`config::validate::labels`): one series per target, at most `MAX_LABELS_PER_TARGET` labels.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Gauge, LabelPair, Metric, MetricFamily, MetricType};

use crate::config::Labels;

const NAME: &str = "idle_drop_target_info";
const HELP: &str =
    "1 for each target, with the labels its configuration gives it (labels:) besides target.";

/// Every target's labels, exported as [`NAME`]. Clones share the series (the registry holds
/// one, [`super::Metrics`] another), as the vectors' do.
#[derive(Clone)]
pub(super) struct TargetInfo {
    desc: Desc,
    targets: Arc<Mutex<BTreeMap<String, Labels>>>,
}

impl TargetInfo {
    pub(super) fn new() -> TargetInfo {
        TargetInfo {
            desc: Desc::new(
                NAME.to_string(),
                HELP.to_string(),
                vec!["target".to_string()],
                HashMap::new(),
            )
            .expect("the info metric's definition is valid"),
            targets: Arc::new(Mutex::new(BTreeMap::new())),
        }
    }

    /// `target`'s series, with `labels` (replacing any it had).
    pub(super) fn set(&self, target: &str, labels: &Labels) {
        self.targets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(target.to_string(), labels.clone());
    }

    /// Deletes `target`'s series.
    pub(super) fn remove(&self, target: &str) {
        self.targets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(target);
    }
}

fn pair(name: &str, value: &str) -> LabelPair {
    let mut pair = LabelPair::default();
    pair.set_name(name.to_string());
    pair.set_value(value.to_string());
    pair
}

impl Collector for TargetInfo {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let targets = self.targets.lock().unwrap_or_else(PoisonError::into_inner);
        let metrics = targets
            .iter()
            .map(|(target, labels)| {
                // Sorted by name, as the vectors' series are (`target` among the others).
                let mut pairs: Vec<LabelPair> = labels.iter().map(|(n, v)| pair(n, v)).collect();
                let at = pairs.partition_point(|p| p.name() < "target");
                pairs.insert(at, pair("target", target));
                let mut gauge = Gauge::default();
                gauge.set_value(1.0);
                let mut metric = Metric::from_gauge(gauge);
                metric.set_label(pairs);
                metric
            })
            .collect();
        let mut family = MetricFamily::default();
        family.set_name(NAME.to_string());
        family.set_help(HELP.to_string());
        family.set_field_type(MetricType::GAUGE);
        family.set_metric(metrics);
        vec![family]
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::config::Labels;
    use crate::metrics::Metrics;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    /// The info series, sorted (the registry orders them by label count first).
    fn info_lines(metrics: &Metrics) -> Vec<String> {
        let mut lines: Vec<String> = metrics
            .encode()
            .lines()
            .filter(|l| l.starts_with("idle_drop_target_info{"))
            .map(str::to_string)
            .collect();
        lines.sort();
        lines
    }

    #[test]
    fn one_series_per_target_replaced_by_new_labels_and_removed_with_the_target() {
        let metrics = Arc::new(Metrics::new());
        let a = metrics.series("a");
        let b = metrics.series("b");
        a.set_labels(&labels(&[("team", "payments"), ("service", "check\"out")]));
        b.set_labels(&Labels::new());
        assert_eq!(
            info_lines(&metrics),
            [
                r#"idle_drop_target_info{service="check\"out",target="a",team="payments"} 1"#,
                r#"idle_drop_target_info{target="b"} 1"#,
            ]
        );
        assert!(metrics
            .encode()
            .contains("# TYPE idle_drop_target_info gauge\n"));
        // A reload that changes the labels leaves no series with the old ones.
        a.set_labels(&labels(&[("team", "billing")]));
        assert_eq!(
            info_lines(&metrics),
            [
                r#"idle_drop_target_info{target="a",team="billing"} 1"#,
                r#"idle_drop_target_info{target="b"} 1"#,
            ]
        );
        metrics.remove_target("a");
        assert_eq!(
            info_lines(&metrics),
            [r#"idle_drop_target_info{target="b"} 1"#]
        );
        metrics.remove_target("b");
        assert!(!metrics.encode().contains("idle_drop_target_info"));
    }
}
