//! Walking a message along a JSONPath while counting the nodes visited, so
//! that one evaluation stops after [`Limits::max_visits`] of them.
//!
//! jsonpath-rust builds every intermediate nodelist (with a path string per
//! node) and has no budget: `$..a..a..a…` multiplies the descendants of
//! each step, and on a deeply nested message that takes seconds and
//! gigabytes. The walk here produces the same nodes (RFC 9535 nodelists,
//! duplicates included) one at a time, depth first, and charges each one:
//!
//! * every node a selector produces is one visit (a name or index that
//!   exists, each member or element of `*` and of a slice), and a union
//!   `[a,b,…]` costs a visit per selector for each node it is applied to;
//! * `..` visits every node below (and including) the node it starts
//!   from, then applies its selector to each;
//! * a filter selector `[?…]` visits each candidate, and for each candidate
//!   also what its condition costs: what the queries in it visit (`@…`
//!   from the candidate, `$…` from the root), the nodes of the smaller side
//!   when two nodes are compared (equality is deep), and a visit per KiB of
//!   a string that is compared or measured (`length()`).
//!
//! Paths without filter selectors are evaluated by this walk. For a path
//! with filter selectors the walk only counts, letting every candidate
//! pass (an upper bound of what jsonpath-rust then visits); within the
//! budget, jsonpath-rust evaluates it, so its answers stay the engine's.
//!
//! [`Limits::max_visits`]: super::Limits::max_visits

use jsonpath_rust::parser::model::{
    Comparable, Filter as Condition, FilterAtom, FnArg, Segment, Selector, SingularQuery,
    SingularQuerySegment, Test, TestFunction,
};
use serde_json::Value;

use super::limits::{Budget, Exceeded};

/// Receives each node a walk produces.
pub(super) type Sink<'s, 'a> = dyn FnMut(&'a Value) -> Result<(), Exceeded> + 's;

/// One step of a path made only of names, indexes and wildcards.
#[derive(Debug, Clone)]
pub(super) enum Step {
    Key(String),
    /// Negative counts from the end, as in RFC 9535.
    Index(i64),
    /// `*` / `[*]`: every element of an array or member of an object.
    Wildcard,
}

/// Calls `found` on each value the steps lead to, in the engine's order.
///
/// Mirrors jsonpath-rust exactly: a name only selects in objects, an index
/// only in arrays (negative from the end), a wildcard every element or
/// member. Recursion depth is the number of steps in the path, not the
/// depth of the message.
pub(super) fn walk_direct<'a>(
    steps: &[Step],
    v: &'a Value,
    budget: &Budget,
    found: &mut Sink<'_, 'a>,
) -> Result<(), Exceeded> {
    let Some((step, rest)) = steps.split_first() else {
        return found(v);
    };
    let mut next = |child: &'a Value| {
        budget.charge(1)?;
        walk_direct(rest, child, budget, found)
    };
    match step {
        Step::Key(key) => match v.as_object().and_then(|map| map.get(key)) {
            Some(child) => next(child),
            None => Ok(()),
        },
        Step::Index(i) => match v.as_array().and_then(|items| at_index(items, *i)) {
            Some(child) => next(child),
            None => Ok(()),
        },
        Step::Wildcard => match v {
            Value::Array(items) => items.iter().try_for_each(next),
            Value::Object(map) => map.values().try_for_each(next),
            _ => Ok(()),
        },
    }
}

/// [`walk_direct`] without a budget, until `found` accepts a value (what
/// the unit tests compare with the engine).
#[cfg(test)]
pub(super) fn any_direct<'a, F: FnMut(&'a Value) -> bool>(
    steps: &[Step],
    v: &'a Value,
    found: &mut F,
) -> bool {
    let budget = Budget::new(usize::MAX);
    let mut hit = false;
    let _ = walk_direct(steps, v, &budget, &mut |x| {
        hit = hit || found(x);
        Ok(())
    });
    hit
}

/// The element at `i` (negative: from the end), as jsonpath-rust picks it.
fn at_index(items: &[Value], i: i64) -> Option<&Value> {
    let index = if i >= 0 {
        usize::try_from(i).ok()?
    } else {
        items
            .len()
            .checked_sub(usize::try_from(i.unsigned_abs()).ok()?)?
    };
    items.get(index)
}

/// What a walk of a general path needs besides the node it is at.
pub(super) struct Walk<'a, 'b> {
    /// The message, for `$…` queries inside filter conditions.
    pub(super) root: &'a Value,
    pub(super) budget: &'b Budget,
}

impl<'a> Walk<'a, '_> {
    /// Calls `found` on each node `segments` produce from `node`.
    pub(super) fn run(
        &self,
        segments: &[Segment],
        node: &'a Value,
        found: &mut Sink<'_, 'a>,
    ) -> Result<(), Exceeded> {
        let Some((segment, rest)) = segments.split_first() else {
            return found(node);
        };
        self.segment(segment, node, &mut |child| self.run(rest, child, found))
    }

    /// Only counts the visits of `segments` from `node`.
    pub(super) fn count(&self, segments: &[Segment], node: &'a Value) -> Result<(), Exceeded> {
        self.run(segments, node, &mut |_| Ok(()))
    }

    /// Applies one segment to `node`.
    fn segment(
        &self,
        segment: &Segment,
        node: &'a Value,
        out: &mut Sink<'_, 'a>,
    ) -> Result<(), Exceeded> {
        match segment {
            Segment::Selector(s) => self.select(s, node, out),
            // jsonpath-rust applies each selector to (a copy of) the whole
            // nodelist in turn, so each selector tried is a visit too. The
            // same nodes in another order, which no criterion sees.
            Segment::Selectors(list) => {
                self.budget.charge(list.len())?;
                list.iter().try_for_each(|s| self.select(s, node, out))
            }
            Segment::Descendant(inner) => {
                self.descendants(node, &mut |d| self.segment(inner, d, out))
            }
        }
    }

    /// Visits every node at or below `node`, in document order (pre-order),
    /// and hands the arrays and objects to `each` (no selector finds
    /// anything in a scalar; jsonpath-rust leaves them out of `..` too,
    /// after looking at each).
    ///
    /// Iterative, so a deep message cannot exhaust the stack here.
    fn descendants(&self, node: &'a Value, each: &mut Sink<'_, 'a>) -> Result<(), Exceeded> {
        self.budget.charge(1)?;
        let Some(children) = Children::of(node) else {
            return Ok(());
        };
        each(node)?;
        let mut stack = vec![children];
        while let Some(top) = stack.last_mut() {
            match top.next() {
                Some(child) => {
                    self.budget.charge(1)?;
                    if let Some(grandchildren) = Children::of(child) {
                        each(child)?;
                        stack.push(grandchildren);
                    }
                }
                None => {
                    stack.pop();
                }
            }
        }
        Ok(())
    }

    fn emit(&self, child: &'a Value, out: &mut Sink<'_, 'a>) -> Result<(), Exceeded> {
        self.budget.charge(1)?;
        out(child)
    }

    /// The nodes one selector picks in `node`, as jsonpath-rust picks them;
    /// a filter selector lets every candidate through (see the module doc).
    fn select(
        &self,
        selector: &Selector,
        node: &'a Value,
        out: &mut Sink<'_, 'a>,
    ) -> Result<(), Exceeded> {
        match selector {
            Selector::Name(name) => match node.as_object().and_then(|m| m.get(name)) {
                Some(child) => self.emit(child, out),
                None => Ok(()),
            },
            Selector::Index(i) => match node.as_array().and_then(|items| at_index(items, *i)) {
                Some(child) => self.emit(child, out),
                None => Ok(()),
            },
            Selector::Wildcard => match Children::of(node) {
                Some(children) => children.into_iter().try_for_each(|c| self.emit(c, out)),
                None => Ok(()),
            },
            Selector::Slice(start, end, step) => match node.as_array() {
                Some(items) => slice(items, *start, *end, *step, &mut |c| self.emit(c, out)),
                None => Ok(()),
            },
            Selector::Filter(condition) => match Children::of(node) {
                Some(children) => children.into_iter().try_for_each(|candidate| {
                    self.condition(condition, candidate)?;
                    self.emit(candidate, out)
                }),
                None => Ok(()),
            },
        }
    }

    /// Charges what the condition of a filter selector costs jsonpath-rust
    /// for one candidate: what its queries visit, what its comparisons of
    /// two nodes read (deep equality), what `length()` reads of a string.
    fn condition(&self, condition: &Condition, at: &'a Value) -> Result<(), Exceeded> {
        match condition {
            Condition::Or(list) | Condition::And(list) => {
                list.iter().try_for_each(|c| self.condition(c, at))
            }
            Condition::Atom(FilterAtom::Filter { expr, .. }) => self.condition(expr, at),
            Condition::Atom(FilterAtom::Test { expr, .. }) => self.test(expr, at, &mut |_| Ok(())),
            Condition::Atom(FilterAtom::Comparison(comparison)) => {
                let (left, right) = comparison.vals();
                let left = self.operand(left, at)?;
                let right = self.operand(right, at)?;
                if let (Some(a), Some(b)) = (left, right) {
                    let cap = self.budget.left();
                    self.budget.charge(weight(a, cap).min(weight(b, cap)))?;
                }
                Ok(())
            }
        }
    }

    /// Walks a test's query, handing its nodes to `nodes`.
    fn test(&self, test: &Test, at: &'a Value, nodes: &mut Sink<'_, 'a>) -> Result<(), Exceeded> {
        match test {
            Test::RelQuery(segments) => self.run(segments, at, nodes),
            Test::AbsQuery(query) => self.run(&query.segments, self.root, nodes),
            Test::Function(function) => match self.function(function, at)? {
                Some(node) => nodes(node),
                None => Ok(()),
            },
        }
    }

    /// The node one side of a comparison stands for, if it is a node (not
    /// a literal or a number computed by a function).
    fn operand(&self, side: &Comparable, at: &'a Value) -> Result<Option<&'a Value>, Exceeded> {
        let (segments, mut node) = match side {
            Comparable::Literal(_) => return Ok(None),
            Comparable::Function(function) => return self.function(function, at),
            Comparable::SingularQuery(SingularQuery::Current(segments)) => (segments, at),
            Comparable::SingularQuery(SingularQuery::Root(segments)) => (segments, self.root),
        };
        for segment in segments {
            let next = match segment {
                SingularQuerySegment::Name(name) => node.as_object().and_then(|m| m.get(name)),
                SingularQuerySegment::Index(i) => {
                    node.as_array().and_then(|items| at_index(items, *i))
                }
            };
            match next {
                Some(child) => {
                    self.budget.charge(1)?;
                    node = child;
                }
                None => return Ok(None),
            }
        }
        Ok(Some(node))
    }

    /// Charges a function's arguments; `value()` stands for the node of
    /// its argument (the first, as an upper bound).
    fn function(
        &self,
        function: &TestFunction,
        at: &'a Value,
    ) -> Result<Option<&'a Value>, Exceeded> {
        let ignore = &mut |_: &'a Value| Ok(());
        match function {
            TestFunction::Custom(_, args) => {
                args.iter().try_for_each(|a| self.argument(a, at, ignore))?
            }
            // The number of characters of a string is counted char by char.
            TestFunction::Length(arg) => self.argument(arg, at, &mut |node| match node {
                Value::String(s) => self.budget.charge(s.len() / STRING_BYTES_PER_VISIT),
                _ => Ok(()),
            })?,
            TestFunction::Count(arg) => self.argument(arg, at, ignore)?,
            TestFunction::Value(arg) => {
                let mut first = None;
                self.argument(arg, at, &mut |node| {
                    first = first.or(Some(node));
                    Ok(())
                })?;
                return Ok(first);
            }
            TestFunction::Search(a, b) | TestFunction::Match(a, b) => {
                self.argument(a, at, ignore)?;
                self.argument(b, at, ignore)?
            }
        }
        Ok(None)
    }

    fn argument(
        &self,
        arg: &FnArg,
        at: &'a Value,
        nodes: &mut Sink<'_, 'a>,
    ) -> Result<(), Exceeded> {
        match arg {
            FnArg::Literal(_) => Ok(()),
            FnArg::Test(test) => self.test(test, at, nodes),
            FnArg::Filter(condition) => self.condition(condition, at),
        }
    }
}

/// A string costs one visit more per this many bytes where it is read
/// whole (`length()`, comparing two strings).
const STRING_BYTES_PER_VISIT: usize = 1024;

/// What comparing `v` with another value may read of it: one visit per
/// node, and per [`STRING_BYTES_PER_VISIT`] of a string; counted up to
/// just over `cap`, without recursion.
fn weight(v: &Value, cap: usize) -> usize {
    let one = |v: &Value| 1 + v.as_str().map_or(0, |s| s.len() / STRING_BYTES_PER_VISIT);
    let mut total = one(v);
    let mut stack: Vec<Children<'_>> = Children::of(v).into_iter().collect();
    while total <= cap {
        let Some(top) = stack.last_mut() else {
            break;
        };
        match top.next() {
            Some(child) => {
                total += one(child);
                stack.extend(Children::of(child));
            }
            None => {
                stack.pop();
            }
        }
    }
    total
}

/// The elements of a slice `[start:end:step]`, as jsonpath-rust picks them
/// (RFC 9535 2.3.4.2), without its overflow on huge steps.
fn slice<'a>(
    items: &'a [Value],
    start: Option<i64>,
    end: Option<i64>,
    step: Option<i64>,
    out: &mut Sink<'_, 'a>,
) -> Result<(), Exceeded> {
    let len = i64::try_from(items.len()).unwrap_or(i64::MAX);
    let norm = |i: i64| if i >= 0 { i } else { len.saturating_add(i) };
    let get = |i: i64| usize::try_from(i).ok().and_then(|i| items.get(i));
    match step.unwrap_or(1) {
        step if step > 0 => {
            let lower = norm(start.unwrap_or(0)).clamp(0, len);
            let upper = norm(end.unwrap_or(len)).clamp(0, len);
            let mut i = lower;
            while i < upper {
                if let Some(item) = get(i) {
                    out(item)?;
                }
                let Some(next) = i.checked_add(step) else {
                    break;
                };
                i = next;
            }
        }
        step if step < 0 => {
            let lower = norm(end.unwrap_or(-len - 1)).clamp(-1, len - 1);
            let upper = norm(start.unwrap_or(len - 1)).clamp(-1, len - 1);
            let mut i = upper;
            while lower < i {
                if let Some(item) = get(i) {
                    out(item)?;
                }
                let Some(next) = i.checked_add(step) else {
                    break;
                };
                i = next;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The members of an object or elements of an array, in document order.
enum Children<'a> {
    Array(std::slice::Iter<'a, Value>),
    Object(serde_json::map::Values<'a>),
}

impl<'a> Children<'a> {
    fn of(v: &'a Value) -> Option<Self> {
        match v {
            Value::Array(items) => Some(Children::Array(items.iter())),
            Value::Object(map) => Some(Children::Object(map.values())),
            _ => None,
        }
    }
}

impl<'a> Iterator for Children<'a> {
    type Item = &'a Value;

    fn next(&mut self) -> Option<&'a Value> {
        match self {
            Children::Array(items) => items.next(),
            Children::Object(values) => values.next(),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The walk must produce exactly jsonpath-rust's nodes (as a multiset:
    //! unions come out in another order) for every path without filters.

    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn engine(path: &str, v: &Value) -> Vec<usize> {
        let query = jsonpath_rust::parser::parse_json_path(path).unwrap();
        let mut found: Vec<usize> = jsonpath_rust::query::js_path_process(&query, v)
            .unwrap()
            .into_iter()
            .map(|r| r.val as *const Value as usize)
            .collect();
        found.sort_unstable();
        found
    }

    fn walked(path: &str, v: &Value) -> Vec<usize> {
        let query = jsonpath_rust::parser::parse_json_path(path).unwrap();
        assert!(
            !super::super::inspect::inspect(&query.segments).unwrap(),
            "{path}"
        );
        let budget = Budget::new(usize::MAX);
        let walk = Walk {
            root: v,
            budget: &budget,
        };
        let mut found = Vec::new();
        walk.run(&query.segments, v, &mut |n| {
            found.push(n as *const Value as usize);
            Ok(())
        })
        .unwrap();
        found.sort_unstable();
        found
    }

    #[test]
    fn walk_agrees_with_engine_on_fixed_cases() {
        let doc = json!({
            "a": {"b": 1, "c": [10, 20, {"d": null, "a": {"a": 2}}]},
            "b": [[1, 2], [3, [4, 5]], {"b": {"b": 6}}],
            "s": "str",
            "e": [], "o": {}
        });
        for p in [
            "$..a",
            "$..b",
            "$..*",
            "$..[*]",
            "$..a..a",
            "$..b..b",
            "$..[0]",
            "$..[-1]",
            "$.b[0:2]",
            "$.b[::-1]",
            "$.b[1:]",
            "$.b[:-1]",
            "$.b[::2]",
            "$.b[5:0:-2]",
            "$.b[-2:]",
            "$.b[0:10:0]",
            "$['a','b']",
            "$[0,1]",
            "$.b[0,-1,0]",
            "$..['a','b']",
            "$..[0:1]",
            "$.a.c[*]..a",
            "$.s..*",
            "$.e..*",
            "$.o[*]",
            "$..a.a",
            "$.b[9007199254740991:]",
            "$.b[1::9007199254740991]",
            "$.b[::-9007199254740991]",
            "$.b[-9007199254740991:]",
        ] {
            assert_eq!(walked(p, &doc), engine(p, &doc), "path {p}");
        }
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            (-5i64..5).prop_map(Value::from),
            "[a-c]{0,2}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 40, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map("[a-c]", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn arb_path() -> impl Strategy<Value = String> {
        let selector = prop_oneof![
            "[a-c]".prop_map(|k| format!("'{k}'")),
            (-3i64..3).prop_map(|i| i.to_string()),
            Just("*".to_string()),
            (
                proptest::option::of(-4i64..4),
                proptest::option::of(-4i64..4),
                proptest::option::of(-3i64..3)
            )
                .prop_map(|(a, b, c)| {
                    let n = |x: Option<i64>| x.map(|x| x.to_string()).unwrap_or_default();
                    match c {
                        Some(c) => format!("{}:{}:{c}", n(a), n(b)),
                        None => format!("{}:{}", n(a), n(b)),
                    }
                }),
        ];
        let segment =
            (any::<bool>(), prop::collection::vec(selector, 1..3)).prop_map(|(descend, sels)| {
                format!("{}[{}]", if descend { ".." } else { "" }, sels.join(","))
            });
        prop::collection::vec(segment, 0..4).prop_map(|s| format!("${}", s.concat()))
    }

    proptest! {
        #[test]
        fn walk_agrees_with_engine(doc in arb_json(), path in arb_path()) {
            prop_assert_eq!(walked(&path, &doc), engine(&path, &doc), "path {}", path);
        }
    }

    #[test]
    fn filter_selectors_are_counted_as_if_every_candidate_passed() {
        let doc = json!({"a": [{"b": 1}, {"b": 2}, {"b": 3}], "x": 2});
        let query = jsonpath_rust::parser::parse_json_path("$.a[?@.b == $.x].b").unwrap();
        assert!(super::super::inspect::inspect(&query.segments).unwrap());
        let budget = Budget::new(100);
        let walk = Walk {
            root: &doc,
            budget: &budget,
        };
        walk.count(&query.segments, &doc).unwrap();
        // `a` 1; three candidates, each with `@.b` and `$.x` and their
        // comparison (1 + 1 + 1 + 1); then `.b` of each: 1 + 3 * 4 + 3.
        assert!(budget.charge(100 - 16).is_ok());
        assert!(budget.charge(1).is_err());
    }
}
