//! Applying a reloaded config (SIGHUP, `POST /reload`).
//!
//! A component is kept when its entry is unchanged, and replaced when it
//! changed: processors hand over (the new instance starts in the same
//! handover queue group, then the old one closes its subscriptions and
//! finishes what it had taken), everything else stops first (it owns a
//! port, a peer link or files that two instances cannot share), then its
//! successor starts. Added components start, removed ones drain and stop.
//! Sections only a restart can change (`node`, `bus`, `http`, `data_dir`)
//! make the whole reload invalid, so an operator never gets half of what
//! they asked for without being told. Certificate files are read again:
//! by restarted components as they start, by untouched ones and the admin
//! server through [`Component::reread_certificates`].
//!
//! [`Component::reread_certificates`]: fednode_kit::Component::reread_certificates

use fednode_kit::ComponentKind;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{Entry, Graph, Runtime, State};
use crate::config::{NodeConfig, FIXED_SECTIONS};

/// What an applied reload did.
#[derive(Debug, Clone, Default)]
pub struct ReloadReport {
    /// The new config generation.
    pub generation: u64,
    /// Components added by the new config and started.
    pub started: Vec<String>,
    /// Components whose entry changed, restarted with it.
    pub restarted: Vec<String>,
    /// Components the new config removed (or disabled), stopped.
    pub stopped: Vec<String>,
    pub unchanged: Vec<String>,
    /// Components that did not start, with the reason.
    pub failed: Vec<(String, String)>,
}

impl ReloadReport {
    /// The answer of `POST /reload`.
    pub fn to_json(&self) -> Value {
        json!({
            "config_generation": self.generation,
            "started": self.started,
            "restarted": self.restarted,
            "stopped": self.stopped,
            "unchanged": self.unchanged,
            "failed": self.failed.iter().map(|(n, e)| (n.clone(), Value::String(e.clone()))).collect::<serde_json::Map<_, _>>(),
        })
    }
}

/// Why a reload changed nothing.
#[derive(Debug, Clone)]
pub enum ReloadError {
    /// The file is invalid, or changes what only a restart applies: one
    /// line per problem.
    Invalid(Vec<String>),
    /// The node is shutting down.
    Stopping,
}

impl Runtime {
    /// Re-read the config file and apply it. An invalid file changes
    /// nothing.
    pub async fn reload(&self) -> Result<ReloadReport, ReloadError> {
        let Some(path) = &self.config_path else {
            return Err(ReloadError::Invalid(vec![
                "this node was started without a config file to re-read".into(),
            ]));
        };
        match crate::config::load(path) {
            Ok(cfg) => self.apply(cfg).await,
            Err(errors) => {
                self.reloads.with_label_values(&["invalid"]).inc();
                Err(ReloadError::Invalid(
                    errors.iter().map(|e| e.to_string()).collect(),
                ))
            }
        }
    }

    /// Apply a validated config to the running node.
    pub async fn apply(&self, cfg: NodeConfig) -> Result<ReloadReport, ReloadError> {
        let _change = self.changes.lock().await;
        if self.stopping.load(Ordering::SeqCst) {
            return Err(ReloadError::Stopping);
        }
        let fixed: Vec<String> = FIXED_SECTIONS
            .iter()
            .filter(|k| self.fixed.get(**k) != cfg.fixed.get(**k))
            .map(|k| {
                format!(
                    "{k}: changed, and only a restart applies it (the running node keeps its {k})"
                )
            })
            .collect();
        if !fixed.is_empty() {
            self.reloads.with_label_values(&["invalid"]).inc();
            return Err(ReloadError::Invalid(fixed));
        }

        let old = self.graph();
        let mut report = ReloadReport::default();
        let mut entries: Vec<Arc<Entry>> = Vec::new();
        // (old, new) for each changed component.
        let mut replaced: Vec<(Arc<Entry>, Arc<Entry>)> = Vec::new();
        for spec in cfg.components {
            let new = match old.find(&spec.name) {
                Some(e)
                    if e.source == spec.source && !matches!(*e.state.lock(), State::Failed(_)) =>
                {
                    report.unchanged.push(e.name.clone());
                    entries.push(e.clone());
                    continue;
                }
                Some(e) => {
                    let new = Arc::new(Entry::new(spec, &self.root));
                    replaced.push((e.clone(), new.clone()));
                    new
                }
                None => {
                    let new = Arc::new(Entry::new(spec, &self.root));
                    if new.component.is_some() {
                        report.started.push(new.name.clone());
                    }
                    new
                }
            };
            entries.push(new);
        }
        let removed: Vec<Arc<Entry>> = old
            .entries
            .iter()
            .filter(|e| !entries.iter().any(|n| n.name == e.name))
            .cloned()
            .collect();
        // A processor replaced by a processor hands over; the rest stop first.
        let hands_over = |old: &Entry, new: &Entry| {
            old.kind == ComponentKind::Processor
                && new.kind == ComponentKind::Processor
                && old.component.is_some()
                && new.component.is_some()
        };
        let stops_first = |e: &Entry| {
            removed.iter().any(|r| r.name == e.name)
                || replaced
                    .iter()
                    .any(|(o, n)| o.name == e.name && !hands_over(o, n))
        };

        // 1. Producers first, as at shutdown.
        let deadline = self.deadline();
        for e in old.in_start_order().rev().filter(|e| stops_first(e)) {
            self.stop_entry(e, deadline).await;
            if removed.iter().any(|r| r.name == e.name) {
                report.stopped.push(e.name.clone());
            }
        }

        // 2. Consumers first, as at start.
        let new_graph = Graph::new(entries);
        let mut kept_old: Vec<Arc<Entry>> = Vec::new();
        let mut handed_over: Vec<Arc<Entry>> = Vec::new();
        for e in new_graph.in_start_order() {
            let replacing = replaced.iter().find(|(_, n)| Arc::ptr_eq(n, e));
            let added = report.started.contains(&e.name);
            if replacing.is_none() && !added {
                continue;
            }
            match self.start_entry(e).await {
                Ok(()) => {
                    if let Some((o, n)) = replacing {
                        report.restarted.push(e.name.clone());
                        if hands_over(o, n) {
                            handed_over.push(o.clone());
                        }
                    }
                }
                Err(msg) => {
                    tracing::error!(component = %e.name, "{msg}");
                    match replacing {
                        Some((o, n)) if hands_over(o, n) => {
                            report.failed.push((
                                e.name.clone(),
                                format!("{msg}; the previous config keeps running"),
                            ));
                            kept_old.push(o.clone());
                            // Its tasks, if any, end with it.
                            e.cancel.cancel();
                            e.tracker.close();
                        }
                        _ => report.failed.push((e.name.clone(), msg)),
                    }
                }
            }
        }
        report
            .started
            .retain(|n| !report.failed.iter().any(|(f, _)| f == n));
        // A replaced component that is now disabled counts as stopped.
        for (o, n) in &replaced {
            if o.component.is_some() && n.component.is_none() {
                report.stopped.push(o.name.clone());
            }
        }

        // 3. The processors that handed over finish what they had taken.
        let deadline = self.deadline();
        for e in old
            .in_start_order()
            .rev()
            .filter(|e| handed_over.iter().any(|h| Arc::ptr_eq(h, e)))
        {
            self.stop_entry(e, deadline).await;
        }

        let graph = if kept_old.is_empty() {
            new_graph
        } else {
            Graph::new(
                new_graph
                    .entries
                    .iter()
                    .map(|e| {
                        kept_old
                            .iter()
                            .find(|o| o.name == e.name)
                            .unwrap_or(e)
                            .clone()
                    })
                    .collect(),
            )
        };
        // Certificates are read again: restarted components read theirs
        // at start, the untouched ones and the admin server now.
        for e in graph
            .entries
            .iter()
            .filter(|e| report.unchanged.contains(&e.name))
        {
            if let (Some(c), State::Running) = (&e.component, &*e.state.lock()) {
                if let Err(why) = c.reread_certificates() {
                    report.failed.push((
                        e.name.clone(),
                        format!("kept its previous certificate: {why}"),
                    ));
                }
            }
        }
        if let Some(Err(why)) = self.admin_tls.get().map(|a| a.reread()) {
            report.failed.push((
                "http".into(),
                format!("the admin server kept its previous certificate: {why}"),
            ));
        }
        *self.graph.write() = Arc::new(graph);
        *self.shutdown_timeout.lock() = cfg.shutdown_timeout;
        report.generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        self.generation_gauge.set(report.generation as i64);
        let result = if report.failed.is_empty() {
            "ok"
        } else {
            "failed"
        };
        self.reloads.with_label_values(&[result]).inc();
        tracing::info!(
            generation = report.generation,
            started = ?report.started,
            restarted = ?report.restarted,
            stopped = ?report.stopped,
            failed = report.failed.len(),
            "config reloaded"
        );
        Ok(report)
    }
}
