//! The series of `/metrics`, read at each scrape from what the host keeps anyway: the modules'
//! snapshots ([`Runtime::status`](wedge_runtime::Runtime::status)), the outbox's counters and
//! the upstream link's status. Where an edgeHub or edgeAgent series means the same, it has
//! that name and those labels, so existing dashboards work (`docs/metrics.md`).

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use wedge_core::doc::RuntimeStatus;
use wedge_hub::LinkStatus;

use super::Sources;

/// The `to`/`endpoint` label of the upstream, as edgeHub names it.
const UPSTREAM: &str = "upstream";
/// Every state a module can be in, for the 0/1 series of `wedge_module_state`.
const STATES: [RuntimeStatus; 4] = [
    RuntimeStatus::Running,
    RuntimeStatus::Backoff,
    RuntimeStatus::Failed,
    RuntimeStatus::Stopped,
];

/// Label pairs of one sample.
type Labels = Vec<(&'static str, String)>;

/// Reads [`Sources`] at each scrape.
#[derive(Debug)]
pub(super) struct Scrape(pub(super) Arc<Sources>);

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let sources = &self.0;
        let modules = sources.runtime.status();
        let outbox = sources.outbox.stats();
        // The local hub is in the process: always there, never offline.
        let link = match &sources.cloud {
            Some(cloud) => cloud.status(),
            None => LinkStatus {
                connected: true,
                acknowledged: outbox.acknowledged,
                ..LinkStatus::default()
            },
        };
        let e = &mut encoder;
        let per_module = |value: fn(&wedge_runtime::ModuleStatus) -> u64, label: &'static str| {
            modules
                .iter()
                .map(|m| (vec![(label, m.name.clone())], value(m)))
                .collect::<Vec<_>>()
        };

        // edgeHub: messages, queues, drops, offline spells, direct methods.
        counters(
            e,
            "edgehub_messages_received",
            "Messages the modules sent (accepted by telemetry.send), by module (id)",
            per_module(|m| m.messages_out, "id"),
        )?;
        let mut sent = per_module(|m| m.messages_in, "to");
        sent.push((vec![("to", UPSTREAM.into())], outbox.acknowledged));
        counters(
            e,
            "edgehub_messages_sent",
            "Messages delivered to a module's on-message, or acknowledged by the upstream (to=\"upstream\"), since the start",
            sent,
        )?;
        let mut queued = per_module(|m| m.queued, "endpoint");
        queued.push((vec![("endpoint", UPSTREAM.into())], outbox.depth));
        gauges(
            e,
            "edgehub_queue_length",
            "Messages waiting: in a module's inbox, or in the outbox (endpoint=\"upstream\")",
            queued,
        )?;
        let mut dropped: Vec<_> = modules
            .iter()
            .map(|m| (reason("inbox_full", &m.name), m.dropped))
            .collect();
        dropped.push((reason("ttl_expiry", UPSTREAM), outbox.expired));
        dropped.push((reason("queue_full", UPSTREAM), outbox.dropped));
        counters(
            e,
            "edgehub_messages_dropped",
            "Messages dropped, by reason: inbox_full (a module's when-full), ttl_expiry and queue_full (the outbox's ttl and drop-oldest; also records that could not be decoded)",
            dropped,
        )?;
        counters(
            e,
            "edgehub_offline_count",
            "Times the connection to the upstream was lost",
            vec![(vec![], link.offline.count)],
        )?;
        counters(
            e,
            "edgehub_direct_methods",
            "Direct methods invoked on a module (cloud or control socket)",
            per_module(|m| m.methods, "to"),
        )?;

        // edgeAgent: starts and memory of each module.
        counters(
            e,
            "edgeAgent_module_start",
            "Instances of the module started (the first, restarts and binary swaps)",
            per_module(|m| m.starts, "module_name"),
        )?;
        gauges(
            e,
            "edgeAgent_used_memory_bytes",
            "Linear memory of the module's current instance, in bytes",
            per_module(|m| m.memory_bytes, "module_name"),
        )?;

        // wedge's own: modules.
        counters(
            e,
            "wedge_module_errors",
            "Calls that returned an error or trapped, and sends that were refused",
            per_module(|m| m.errors, "module_name"),
        )?;
        counters(
            e,
            "wedge_module_restarts",
            "Restarts after a failure or on request",
            per_module(|m| m.restarts, "module_name"),
        )?;
        counters(
            e,
            "wedge_module_logs_suppressed",
            "Log records dropped because the module logged more than its rate",
            per_module(|m| m.logs_suppressed, "module_name"),
        )?;
        counters(
            e,
            "wedge_module_network_denied",
            "Uses of the network refused: HTTP requests outside allowed-hosts, sockets outside connect and listen",
            per_module(|m| m.network_denied, "module_name"),
        )?;
        operator_series(e, &modules)?;
        let states = modules
            .iter()
            .flat_map(|m| {
                STATES.iter().map(move |state| {
                    let labels = vec![
                        ("module_name", m.name.clone()),
                        ("state", super::json_name(state)),
                    ];
                    (labels, u64::from(m.state == *state))
                })
            })
            .collect();
        gauges(
            e,
            "wedge_module_state",
            "1 for the state the module is in (running, backoff, failed, stopped), 0 for the others",
            states,
        )?;
        let calls = e.encode_descriptor(
            "wedge_module_call_duration_seconds",
            "How long calls into the module took (init, on-message, on-tick, on-config, on-method)",
            None,
            MetricType::Histogram,
        );
        let mut calls = calls?;
        for (name, histogram) in sources.runtime.call_seconds() {
            let labels = vec![("module_name", name)];
            histogram.encode(calls.encode_family(&labels)?)?;
        }

        // wedge's own: outbox and upstream.
        counters(
            e,
            "wedge_outbox_appended",
            "Messages appended to the outbox since the start",
            vec![(vec![], outbox.appended)],
        )?;
        gauges(
            e,
            "wedge_outbox_bytes",
            "Bytes of the messages waiting in the outbox",
            vec![(vec![], outbox.bytes)],
        )?;
        float_gauge(
            e,
            "wedge_outbox_oldest_age_seconds",
            "Age of the oldest message waiting in the outbox (0 when empty)",
            outbox.oldest_age.map_or(0.0, |age| age.as_secs_f64()),
        )?;
        gauges(
            e,
            "wedge_upstream_connected",
            "1 while the upstream is connected (the local hub always is)",
            vec![(vec![], u64::from(link.connected))],
        )?;
        let offline = e.encode_descriptor(
            "wedge_upstream_offline_seconds",
            "Time the upstream was offline after losing its connection, the current spell included",
            None,
            MetricType::Counter,
        );
        ConstCounter::new(link.offline.total_ms as f64 / 1000.0).encode(offline?)?;
        let d = &link.dropped;
        let what = [
            ("unsendable", d.unsendable),
            ("reports", d.reports),
            ("methods_refused", d.methods_refused),
            ("method_answers_too_large", d.method_answers_too_large),
            ("method_answers_lost", d.method_answers_lost),
            ("c2d", d.c2d),
        ];
        counters(
            e,
            "wedge_upstream_dropped",
            "What the upstream link refused or dropped instead of queueing it without bound",
            what.into_iter()
                .map(|(what, n)| (vec![("what", what.to_string())], n))
                .collect(),
        )?;
        Ok(())
    }
}

/// What Azure IoT Operations operators record through their `metrics` import (at most 64
/// series a module, as `wedge status` shows them). The operator's metric name and labels are
/// the guest's: they become label values (`metric`, and `labels` as `k=v,k=v`), never series
/// or label names, so no guest text can break the exposition format.
fn operator_series(
    e: &mut DescriptorEncoder,
    modules: &[wedge_runtime::ModuleStatus],
) -> fmt::Result {
    let series = || {
        modules.iter().flat_map(|m| {
            m.operator_metrics.iter().map(move |s| {
                let labels: Vec<String> =
                    s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let labels: Labels = vec![
                    ("module_name", m.name.clone()),
                    ("metric", s.name.clone()),
                    ("labels", labels.join(",")),
                ];
                (labels, s)
            })
        })
    };
    let of_kind = |kind: &'static str, value: fn(&wedge_runtime::OperatorSeries) -> u64| {
        series()
            .filter(|(_, s)| s.kind == kind)
            .map(|(labels, s)| (labels, value(s)))
            .collect::<Vec<_>>()
    };
    counters(
        e,
        "wedge_operator_counter",
        "A counter an Azure IoT Operations operator added to (metrics.add-to-counter)",
        of_kind("counter", |s| s.count),
    )?;
    counters(
        e,
        "wedge_operator_histogram_count",
        "Points an operator recorded in a histogram (metrics.record-to-histogram)",
        of_kind("histogram", |s| s.count),
    )?;
    let mut sums = e.encode_descriptor(
        "wedge_operator_histogram_sum",
        "The sum of the points an operator recorded in a histogram",
        None,
        MetricType::Counter,
    )?;
    for (labels, s) in series().filter(|(_, s)| s.kind == "histogram") {
        ConstCounter::new(s.sum.unwrap_or(0.0)).encode(sums.encode_family(&labels)?)?;
    }
    Ok(())
}

fn reason(reason: &str, endpoint: &str) -> Labels {
    vec![
        ("reason", reason.to_string()),
        ("endpoint", endpoint.to_string()),
    ]
}

/// One counter family; a sample without labels must be the family's only one.
fn counters(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: Vec<(Labels, u64)>,
) -> fmt::Result {
    family(e, name, help, MetricType::Counter, samples, |v| {
        Box::new(ConstCounter::new(v))
    })
}

/// One gauge family, like [`counters`].
fn gauges(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: Vec<(Labels, u64)>,
) -> fmt::Result {
    family(e, name, help, MetricType::Gauge, samples, |v| {
        Box::new(ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX)))
    })
}

fn float_gauge(e: &mut DescriptorEncoder, name: &str, help: &str, value: f64) -> fmt::Result {
    let metric = ConstGauge::new(value);
    metric.encode(e.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn family(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric_type: MetricType,
    samples: Vec<(Labels, u64)>,
    metric: impl Fn(u64) -> Box<dyn EncodeMetric>,
) -> fmt::Result {
    let mut family = e.encode_descriptor(name, help, None, metric_type)?;
    // An empty label set would still be written as `{}`: the only sample goes without.
    if let [(labels, value)] = samples.as_slice()
        && labels.is_empty()
    {
        return metric(*value).encode(family);
    }
    for (labels, value) in samples {
        metric(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}
