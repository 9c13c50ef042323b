//! The shape of the source tree, checked so it cannot drift: within each
//! crate no two files depend on each other, directly or in a circle (shared
//! state sits in a file of its own, below the files that use it), and no
//! source file of the product is longer than 800 lines.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 800;

/// Every crate's `src` folder: the root package and each component.
fn crate_sources() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut dirs = vec![root.join("src")];
    let mut components: Vec<PathBuf> = fs::read_dir(root.join("components"))
        .expect("components/ exists")
        .map(|e| e.expect("readable").path().join("src"))
        .filter(|p| p.is_dir())
        .collect();
    components.sort();
    dirs.extend(components);
    dirs
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("readable folder") {
        let path = entry.expect("readable").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// A file's module path inside its crate: `session`, `config/interpolate`,
/// `bus` for `bus/mod.rs`; `None` for the crate roots.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).expect("inside src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    match parts.as_slice() {
        [one] if one == "lib" || one == "main" => None,
        _ => Some(parts.join("/")),
    }
}

/// The modules of this crate that a file's code names (`crate::a::b`,
/// `super::c`), resolved to the files that exist.
fn references(text: &str, this: &str, files: &BTreeSet<String>) -> BTreeSet<String> {
    let parent = this.rsplit_once('/').map_or("", |(p, _)| p);
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        for (marker, base) in [("crate::", ""), ("super::", parent)] {
            let mut rest = code;
            while let Some(at) = rest.find(marker) {
                let before = rest[..at].chars().last();
                rest = &rest[at + marker.len()..];
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    continue;
                }
                let path: Vec<&str> = rest
                    .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                    .next()
                    .unwrap_or("")
                    .split("::")
                    .filter(|s| !s.is_empty())
                    .collect();
                // The longest prefix of the path that names a file.
                let mut best = None;
                for n in 1..=path.len() {
                    let mut candidate = base.to_string();
                    for seg in &path[..n] {
                        if !candidate.is_empty() {
                            candidate.push('/');
                        }
                        candidate.push_str(seg);
                    }
                    if files.contains(&candidate) {
                        best = Some(candidate);
                    }
                }
                if let Some(m) = best.filter(|m| m != this) {
                    out.insert(m);
                }
            }
        }
    }
    out
}

/// A file's code without its unit tests (a `#[cfg(test)]` module at the
/// end): a test may use any helper of its crate.
fn without_tests(text: &str) -> &str {
    let mut offset = 0;
    let mut lines = text.split_inclusive('\n').peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]"
            && lines
                .peek()
                .is_some_and(|next| next.trim_start().starts_with("mod "))
        {
            return &text[..offset];
        }
        offset += line.len();
    }
    text
}

/// A circle in `graph`, if there is one, as the list of its files.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_string(), 1);
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next.as_str()).copied().unwrap_or(0) {
                1 => {
                    let from = stack.iter().position(|s| s == next).expect("on the stack");
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(next, graph, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(node.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if state.get(node.as_str()).copied().unwrap_or(0) == 0 {
            let mut stack = Vec::new();
            if let Some(c) = visit(node, graph, &mut state, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn no_two_files_of_a_crate_import_each_other() {
    let mut problems = Vec::new();
    for src in crate_sources() {
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let modules: BTreeMap<String, PathBuf> = files
            .iter()
            .filter_map(|f| module_of(&src, f).map(|m| (m, f.clone())))
            .collect();
        let names: BTreeSet<String> = modules.keys().cloned().collect();
        let graph: BTreeMap<String, BTreeSet<String>> = modules
            .iter()
            .map(|(m, f)| {
                let text = fs::read_to_string(f).expect("readable");
                (m.clone(), references(without_tests(&text), m, &names))
            })
            .collect();
        if let Some(cycle) = find_cycle(&graph) {
            problems.push(format!("{}: {}", src.display(), cycle.join(" -> ")));
        }
    }
    assert!(
        problems.is_empty(),
        "files in a circle:\n{}",
        problems.join("\n")
    );
}

#[test]
fn no_source_file_is_over_800_lines() {
    let mut long = Vec::new();
    for src in crate_sources() {
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        for f in files {
            let n = fs::read_to_string(&f).expect("readable").lines().count();
            if n > MAX_LINES {
                long.push(format!("{} ({n} lines)", f.display()));
            }
        }
    }
    assert!(
        long.is_empty(),
        "over {MAX_LINES} lines:\n{}",
        long.join("\n")
    );
}

#[test]
fn the_cycle_finder_sees_a_circle_through_three_files() {
    let files: BTreeSet<String> = ["a", "b", "c", "d/e"].map(String::from).into();
    assert_eq!(
        references(
            "use crate::b::Thing; fn f() { super::e::g() }",
            "d/x",
            &files
        ),
        ["b", "d/e"].map(String::from).into()
    );
    let mut graph = BTreeMap::new();
    graph.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    graph.insert("b".to_string(), BTreeSet::from(["c".to_string()]));
    graph.insert("c".to_string(), BTreeSet::new());
    assert_eq!(find_cycle(&graph), None);
    graph.insert("c".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(
        find_cycle(&graph),
        Some(["a", "b", "c", "a"].map(String::from).to_vec())
    );
}
