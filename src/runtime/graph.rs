//! The wiring between components: who publishes what, who reads what, the
//! start order that follows from it, and the warnings `check` prints.

use fednode_kit::subject::{self, Template};
use fednode_kit::ComponentKind;

/// One enabled component as the graph sees it.
pub struct Node<'a> {
    pub name: &'a str,
    pub kind: ComponentKind,
    /// Subject patterns it subscribes to.
    pub inputs: Vec<String>,
    /// Subject templates it publishes to.
    pub outputs: Vec<String>,
}

/// A template as a pattern: each placeholder becomes `*` (it fills one token
/// or, when the field holds dots, they become `_`).
pub fn template_pattern(t: &str) -> String {
    match Template::parse(t) {
        Ok(tpl) if !tpl.is_static() => {
            let mut out = String::new();
            let mut depth = 0;
            for c in t.chars() {
                match c {
                    '{' => {
                        depth += 1;
                        out.push('*');
                    }
                    '}' => depth -= 1,
                    _ if depth == 0 => out.push(c),
                    _ => {}
                }
            }
            // `a.{x}_suffix` → `a.*_suffix`: a token mixing text and a
            // placeholder can be anything, so it widens to `*`.
            out.split('.')
                .map(|tok| if tok.contains('*') { "*" } else { tok })
                .collect::<Vec<_>>()
                .join(".")
        }
        _ => t.to_string(),
    }
}

/// Whether `consumer` reads anything `producer` publishes.
pub fn feeds(producer: &Node<'_>, consumer: &Node<'_>) -> bool {
    producer.outputs.iter().any(|o| {
        let p = template_pattern(o);
        consumer.inputs.iter().any(|i| subject::overlaps(&p, i))
    })
}

/// Start order: consumers of a subject before its producers, so nothing
/// published at start-up is lost. Ties (and cycles) fall back to the kind
/// order storage → output → processor → input, then config order.
pub fn start_order(nodes: &[Node<'_>]) -> Vec<usize> {
    let n = nodes.len();
    let rank = |k: ComponentKind| match k {
        ComponentKind::Storage => 0,
        ComponentKind::Output => 1,
        ComponentKind::Processor => 2,
        ComponentKind::Input => 3,
    };
    // pending[i] = consumers of i not yet started.
    let mut pending: Vec<usize> = (0..n)
        .map(|i| {
            (0..n)
                .filter(|&j| j != i && feeds(&nodes[i], &nodes[j]))
                .count()
        })
        .collect();
    let mut done = vec![false; n];
    let mut order = Vec::with_capacity(n);
    while order.len() < n {
        let ready = (0..n)
            .filter(|&i| !done[i] && pending[i] == 0)
            .min_by_key(|&i| (rank(nodes[i].kind), i));
        // A cycle: take the lowest-ranked remaining node.
        let next = ready.unwrap_or_else(|| {
            (0..n)
                .filter(|&i| !done[i])
                .min_by_key(|&i| (rank(nodes[i].kind), i))
                .expect("a node remains")
        });
        done[next] = true;
        order.push(next);
        for (p, pend) in pending.iter_mut().enumerate() {
            if !done[p] && p != next && feeds(&nodes[p], &nodes[next]) && *pend > 0 {
                *pend -= 1;
            }
        }
    }
    order
}

/// Subjects nobody publishes to or nobody reads, as `warning:` lines.
pub fn warnings(nodes: &[Node<'_>]) -> Vec<String> {
    let mut out = Vec::new();
    for c in nodes {
        for i in &c.inputs {
            let fed = nodes.iter().any(|p| {
                p.outputs
                    .iter()
                    .any(|o| subject::overlaps(&template_pattern(o), i))
            });
            if !fed {
                out.push(format!(
                    "{} reads {:?}, which no component of this node publishes (fine if another node or a NATS client does)",
                    c.name, i
                ));
            }
        }
        for o in &c.outputs {
            let p = template_pattern(o);
            let read = nodes
                .iter()
                .any(|r| r.inputs.iter().any(|i| subject::overlaps(&p, i)));
            if !read {
                out.push(format!(
                    "{} publishes to {:?}, which no component of this node reads (fine if another node or a NATS client does)",
                    c.name, o
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node<'a>(name: &'a str, kind: ComponentKind, i: &[&str], o: &[&str]) -> Node<'a> {
        Node {
            name,
            kind,
            inputs: i.iter().map(|s| s.to_string()).collect(),
            outputs: o.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn consumers_start_before_producers() {
        let nodes = vec![
            node("sim", ComponentKind::Input, &[], &["user.{user_id}.raw"]),
            node(
                "feat",
                ComponentKind::Processor,
                &["user.*.raw"],
                &["features"],
            ),
            node("out", ComponentKind::Output, &["features"], &[]),
        ];
        let order: Vec<&str> = start_order(&nodes).iter().map(|&i| nodes[i].name).collect();
        assert_eq!(order, vec!["out", "feat", "sim"]);
        assert!(warnings(&nodes).is_empty());
    }

    #[test]
    fn dangling_subjects_warn() {
        let nodes = vec![node("f", ComponentKind::Processor, &["a"], &["b"])];
        let w = warnings(&nodes);
        assert_eq!(w.len(), 2);
        assert!(w[0].contains("reads \"a\""));
    }

    #[test]
    fn templates_become_patterns() {
        assert_eq!(template_pattern("user.{user_id}.raw"), "user.*.raw");
        assert_eq!(template_pattern("a.{x}_y"), "a.*");
        assert_eq!(template_pattern("plain"), "plain");
    }
}
