//! One Prometheus registry per node, shared by every component.
//!
//! Two instances of the same component register the same family names, so
//! families are created once (get-or-create by name) and each component gets
//! children carrying its `component` label. Metric names are part of the
//! external contract: keep them exactly as `docs/metrics.md` lists them.

use parking_lot::Mutex;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use prometheus::{Gauge, GaugeVec};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Clone)]
enum Family {
    Counter(IntCounterVec),
    IntGauge(IntGaugeVec),
    Gauge(GaugeVec),
    Histogram(HistogramVec),
}

/// The node's metric registry.
#[derive(Default)]
pub struct Metrics {
    registry: Registry,
    families: Mutex<HashMap<String, Family>>,
}

/// Buckets for latencies from 50 µs to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

fn labels_with_component<'a>(extra: &'a [&'a str]) -> Vec<&'a str> {
    let mut l = vec!["component"];
    l.extend_from_slice(extra);
    l
}

impl Metrics {
    /// A fresh, empty registry.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn family(&self, name: &str, make: impl FnOnce() -> Family) -> Family {
        let mut fams = self.families.lock();
        if let Some(f) = fams.get(name) {
            return f.clone();
        }
        let f = make();
        let collector: Box<dyn prometheus::core::Collector> = match &f {
            Family::Counter(c) => Box::new(c.clone()),
            Family::IntGauge(g) => Box::new(g.clone()),
            Family::Gauge(g) => Box::new(g.clone()),
            Family::Histogram(h) => Box::new(h.clone()),
        };
        self.registry
            .register(collector)
            .unwrap_or_else(|e| panic!("metric family {name} cannot be registered: {e}"));
        fams.insert(name.to_string(), f.clone());
        f
    }

    fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        match self.family(name, || {
            Family::Counter(
                IntCounterVec::new(Opts::new(name, help), &labels_with_component(labels))
                    .expect("valid metric"),
            )
        }) {
            Family::Counter(c) => c,
            _ => panic!("metric {name} registered with another type"),
        }
    }

    fn int_gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        match self.family(name, || {
            Family::IntGauge(
                IntGaugeVec::new(Opts::new(name, help), &labels_with_component(labels))
                    .expect("valid metric"),
            )
        }) {
            Family::IntGauge(g) => g,
            _ => panic!("metric {name} registered with another type"),
        }
    }

    fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
        match self.family(name, || {
            Family::Gauge(
                GaugeVec::new(Opts::new(name, help), &labels_with_component(labels))
                    .expect("valid metric"),
            )
        }) {
            Family::Gauge(g) => g,
            _ => panic!("metric {name} registered with another type"),
        }
    }

    fn histogram_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: &[f64],
    ) -> HistogramVec {
        match self.family(name, || {
            Family::Histogram(
                HistogramVec::new(
                    HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                    &labels_with_component(labels),
                )
                .expect("valid metric"),
            )
        }) {
            Family::Histogram(h) => h,
            _ => panic!("metric {name} registered with another type"),
        }
    }

    /// A node-wide counter family, without the `component` label (reloads
    /// of the node's config, for instance).
    pub fn node_counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        match self.family(name, || {
            Family::Counter(
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        }) {
            Family::Counter(c) => c,
            _ => panic!("metric {name} registered with another type"),
        }
    }

    /// A node-wide gauge family, without the `component` label (the config
    /// generation, build information).
    pub fn node_int_gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        match self.family(name, || {
            Family::IntGauge(IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"))
        }) {
            Family::IntGauge(g) => g,
            _ => panic!("metric {name} registered with another type"),
        }
    }

    /// Register a collector that builds its own families (the process's
    /// CPU time, memory and file descriptors, for instance).
    pub fn register(&self, collector: Box<dyn prometheus::core::Collector>) -> Result<(), String> {
        self.registry.register(collector).map_err(|e| e.to_string())
    }

    /// The metrics of one component instance.
    pub fn component(self: &Arc<Self>, component: &str) -> ComponentMetrics {
        ComponentMetrics {
            metrics: self.clone(),
            component: component.to_string(),
        }
    }

    /// Prometheus text exposition of everything.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding");
        String::from_utf8(buf).expect("utf-8 metrics")
    }

    /// The current value of a counter or gauge (tests and `status`).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        for fam in self.registry.gather() {
            if fam.name() != name {
                continue;
            }
            for m in fam.get_metric() {
                let ok = labels.iter().all(|(k, v)| {
                    m.get_label()
                        .iter()
                        .any(|l| l.name() == *k && l.value() == *v)
                });
                if ok {
                    if fam.get_field_type() == prometheus::proto::MetricType::COUNTER {
                        return Some(m.get_counter().get_value());
                    }
                    return Some(m.get_gauge().get_value());
                }
            }
        }
        None
    }
}

/// A component's handle on the registry: every metric it creates carries
/// `component="<instance name>"`.
#[derive(Clone)]
pub struct ComponentMetrics {
    metrics: Arc<Metrics>,
    component: String,
}

impl ComponentMetrics {
    /// The instance name used as the `component` label.
    pub fn component(&self) -> &str {
        &self.component
    }

    /// The node's registry.
    pub fn registry(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// A counter without extra labels.
    pub fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.metrics
            .counter_vec(name, help, &[])
            .with_label_values(&[&self.component])
    }

    /// A counter family with extra labels, e.g. `reason`.
    pub fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> LabelledCounter {
        LabelledCounter {
            vec: self.metrics.counter_vec(name, help, labels),
            component: self.component.clone(),
        }
    }

    /// An integer gauge.
    pub fn int_gauge(&self, name: &str, help: &str) -> IntGauge {
        self.metrics
            .int_gauge_vec(name, help, &[])
            .with_label_values(&[&self.component])
    }

    /// An integer gauge family with extra labels, e.g. `state`.
    pub fn int_gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> LabelledIntGauge {
        LabelledIntGauge {
            vec: self.metrics.int_gauge_vec(name, help, labels),
            component: self.component.clone(),
        }
    }

    /// A float gauge.
    pub fn gauge(&self, name: &str, help: &str) -> Gauge {
        self.metrics
            .gauge_vec(name, help, &[])
            .with_label_values(&[&self.component])
    }

    /// A histogram (seconds) with the default latency buckets.
    pub fn histogram(&self, name: &str, help: &str) -> Histogram {
        self.metrics
            .histogram_vec(name, help, &[], LATENCY_BUCKETS)
            .with_label_values(&[&self.component])
    }

    /// A histogram family with extra labels, e.g. `method`.
    pub fn histogram_vec(&self, name: &str, help: &str, labels: &[&str]) -> LabelledHistogram {
        LabelledHistogram {
            vec: self
                .metrics
                .histogram_vec(name, help, labels, LATENCY_BUCKETS),
            component: self.component.clone(),
        }
    }
}

/// A counter family with the component label fixed.
#[derive(Clone)]
pub struct LabelledCounter {
    vec: IntCounterVec,
    component: String,
}

impl LabelledCounter {
    /// The child for these extra label values.
    pub fn with(&self, values: &[&str]) -> IntCounter {
        let mut all = vec![self.component.as_str()];
        all.extend_from_slice(values);
        self.vec.with_label_values(&all)
    }
}

/// An integer gauge family with the component label fixed.
#[derive(Clone)]
pub struct LabelledIntGauge {
    vec: IntGaugeVec,
    component: String,
}

impl LabelledIntGauge {
    /// The child for these extra label values.
    pub fn with(&self, values: &[&str]) -> IntGauge {
        let mut all = vec![self.component.as_str()];
        all.extend_from_slice(values);
        self.vec.with_label_values(&all)
    }
}

/// A histogram family with the component label fixed.
#[derive(Clone)]
pub struct LabelledHistogram {
    vec: HistogramVec,
    component: String,
}

impl LabelledHistogram {
    /// The child for these extra label values.
    pub fn with(&self, values: &[&str]) -> Histogram {
        let mut all = vec![self.component.as_str()];
        all.extend_from_slice(values);
        self.vec.with_label_values(&all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_instances_share_a_family() {
        let m = Metrics::new();
        let a = m.component("a").counter("x_total", "help");
        let b = m.component("b").counter("x_total", "help");
        a.inc();
        b.inc_by(2);
        let text = m.render();
        assert!(text.contains("x_total{component=\"a\"} 1"), "{text}");
        assert!(text.contains("x_total{component=\"b\"} 2"), "{text}");
        assert_eq!(m.value("x_total", &[("component", "b")]), Some(2.0));
        let r = m.component("a").counter_vec("y_total", "h", &["reason"]);
        r.with(&["queue_full"]).inc();
        assert!(m
            .render()
            .contains("y_total{component=\"a\",reason=\"queue_full\"} 1"));
    }
}
