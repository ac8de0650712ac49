//! The metrics an operator records through `wasm-graph:processor/metrics`: counters and
//! histogram summaries per name and labels, shown in `wedge status`. The names and labels are
//! the guest's, so the number of series and their sizes are bounded; what does not fit is
//! counted, not kept.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;

/// Most series (name plus labels) one module keeps.
pub(crate) const MAX_SERIES: usize = 64;
/// Most labels on one point.
const MAX_LABELS: usize = 8;
/// Longest name, label key or label value.
const MAX_TEXT: usize = 128;

/// One point an operator records.
pub(crate) struct OperatorMetric {
    name: String,
    labels: Vec<(String, String)>,
    value: Point,
}

enum Point {
    Counter(u64),
    Histogram(f64),
}

impl OperatorMetric {
    pub(crate) fn counter(name: String, labels: Vec<(String, String)>, value: u64) -> Self {
        OperatorMetric {
            name,
            labels,
            value: Point::Counter(value),
        }
    }

    pub(crate) fn histogram(name: String, labels: Vec<(String, String)>, value: f64) -> Self {
        OperatorMetric {
            name,
            labels,
            value: Point::Histogram(value),
        }
    }
}

/// One series as `wedge status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct OperatorSeries {
    /// The metric's name.
    pub name: String,
    /// Its labels, sorted by key.
    pub labels: BTreeMap<String, String>,
    /// `counter` or `histogram`.
    pub kind: &'static str,
    /// A counter's total, or a histogram's number of points.
    pub count: u64,
    /// A histogram's sum of points.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sum: Option<f64>,
}

#[derive(Default)]
pub(crate) struct OperatorMetrics {
    series: Mutex<Series>,
}

#[derive(Default)]
struct Series {
    kept: BTreeMap<(String, Vec<(String, String)>), Value>,
    /// Points refused because the module already has [`MAX_SERIES`] series.
    refused: u64,
}

#[derive(Clone, Copy)]
enum Value {
    Counter(u64),
    Histogram { count: u64, sum: f64 },
}

impl OperatorMetrics {
    /// Adds `metric` to its series.
    ///
    /// # Errors
    /// The text the operator gets (`metrics-error.incompatible-type`): the name is used with
    /// the other kind, a name or label is too long or there are too many labels, or the module
    /// has [`MAX_SERIES`] series already.
    pub(crate) fn record(&self, metric: OperatorMetric) -> Result<(), String> {
        let OperatorMetric {
            name,
            mut labels,
            value,
        } = metric;
        if name.is_empty() || name.len() > MAX_TEXT {
            return Err(format!("a metric name is 1-{MAX_TEXT} bytes"));
        }
        if labels.len() > MAX_LABELS
            || labels
                .iter()
                .any(|(k, v)| k.len() > MAX_TEXT || v.len() > MAX_TEXT)
        {
            return Err(format!(
                "at most {MAX_LABELS} labels of at most {MAX_TEXT} bytes each"
            ));
        }
        labels.sort();
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let full = series.kept.len() >= MAX_SERIES;
        let key = (name, labels);
        match (series.kept.get_mut(&key), value) {
            (Some(Value::Counter(total)), Point::Counter(n)) => *total = total.saturating_add(n),
            (Some(Value::Histogram { count, sum }), Point::Histogram(v)) => {
                *count += 1;
                *sum += v;
            }
            (Some(_), _) => {
                return Err(format!("`{}` is already a metric of the other kind", key.0));
            }
            (None, _) if full => {
                series.refused += 1;
                return Err(format!("the module has {MAX_SERIES} metric series already"));
            }
            (None, Point::Counter(n)) => {
                series.kept.insert(key, Value::Counter(n));
            }
            (None, Point::Histogram(v)) => {
                series
                    .kept
                    .insert(key, Value::Histogram { count: 1, sum: v });
            }
        }
        Ok(())
    }

    /// Every series, by name and labels.
    pub(crate) fn snapshot(&self) -> Vec<OperatorSeries> {
        let series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        series
            .kept
            .iter()
            .map(|((name, labels), value)| {
                let (kind, count, sum) = match *value {
                    Value::Counter(n) => ("counter", n, None),
                    Value::Histogram { count, sum } => ("histogram", count, Some(sum)),
                };
                OperatorSeries {
                    name: name.clone(),
                    labels: labels.iter().cloned().collect(),
                    kind,
                    count,
                    sum,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_up_per_labels_and_kinds_do_not_mix() {
        let metrics = OperatorMetrics::default();
        let labels = |v: &str| vec![("unit".to_string(), v.to_string())];
        for unit in ["F", "C", "F"] {
            metrics
                .record(OperatorMetric::counter("requests".into(), labels(unit), 2))
                .unwrap();
        }
        metrics
            .record(OperatorMetric::histogram("latency".into(), vec![], 1.5))
            .unwrap();
        metrics
            .record(OperatorMetric::histogram("latency".into(), vec![], 0.5))
            .unwrap();
        let err = metrics
            .record(OperatorMetric::histogram(
                "requests".into(),
                labels("F"),
                1.0,
            ))
            .unwrap_err();
        assert!(err.contains("other kind"), "{err}");
        let snapshot = metrics.snapshot();
        let count = |name: &str, unit: Option<&str>| {
            snapshot
                .iter()
                .find(|s| s.name == name && s.labels.get("unit").map(String::as_str) == unit)
                .map(|s| (s.count, s.sum))
        };
        assert_eq!(count("requests", Some("F")), Some((4, None)));
        assert_eq!(count("requests", Some("C")), Some((2, None)));
        assert_eq!(count("latency", None), Some((2, Some(2.0))));
    }

    #[test]
    fn series_are_bounded_and_what_does_not_fit_is_refused_and_counted() {
        let metrics = OperatorMetrics::default();
        for i in 0..MAX_SERIES {
            metrics
                .record(OperatorMetric::counter(format!("m{i}"), vec![], 1))
                .unwrap();
        }
        let err = metrics
            .record(OperatorMetric::counter("one-more".into(), vec![], 1))
            .unwrap_err();
        assert!(err.contains("64 metric series"), "{err}");
        // An existing series still counts.
        metrics
            .record(OperatorMetric::counter("m0".into(), vec![], 1))
            .unwrap();
        assert_eq!(metrics.snapshot().len(), MAX_SERIES);
        assert_eq!(metrics.series.lock().unwrap().refused, 1);
        let long = "x".repeat(MAX_TEXT + 1);
        assert!(
            metrics
                .record(OperatorMetric::counter(long, vec![], 1))
                .is_err()
        );
    }
}
