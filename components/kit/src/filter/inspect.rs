//! What compiling checks in a parsed JSONPath beyond its syntax.

use jsonpath_rust::parser::model::{
    Comparable, Filter as Condition, FilterAtom, FnArg, Segment, Selector, Test, TestFunction,
};

/// Checks a parsed path for what the walk cannot bound, and tells whether
/// it has filter selectors.
///
/// jsonpath-rust compiles the regex of `match()` and `search()` anew for
/// every value it tests (up to milliseconds each, with no size limit), so
/// those functions are refused; the `matches` operator compiles its regex
/// once, with a size limit.
pub(super) fn inspect(segments: &[Segment]) -> Result<bool, String> {
    let mut has_filter = false;
    for segment in segments {
        has_filter |= inspect_segment(segment)?;
    }
    Ok(has_filter)
}

fn inspect_segment(segment: &Segment) -> Result<bool, String> {
    match segment {
        Segment::Descendant(inner) => inspect_segment(inner),
        Segment::Selector(s) => inspect_selector(s),
        Segment::Selectors(list) => list
            .iter()
            .try_fold(false, |any, s| Ok(inspect_selector(s)? || any)),
    }
}

fn inspect_selector(selector: &Selector) -> Result<bool, String> {
    match selector {
        Selector::Filter(condition) => inspect_condition(condition).map(|()| true),
        _ => Ok(false),
    }
}

fn inspect_condition(condition: &Condition) -> Result<(), String> {
    match condition {
        Condition::Or(list) | Condition::And(list) => list.iter().try_for_each(inspect_condition),
        Condition::Atom(FilterAtom::Filter { expr, .. }) => inspect_condition(expr),
        Condition::Atom(FilterAtom::Test { expr, .. }) => inspect_test(expr),
        Condition::Atom(FilterAtom::Comparison(comparison)) => {
            let (left, right) = comparison.vals();
            [left, right].into_iter().try_for_each(|c| match c {
                Comparable::Function(f) => inspect_function(f),
                Comparable::Literal(_) | Comparable::SingularQuery(_) => Ok(()),
            })
        }
    }
}

fn inspect_test(test: &Test) -> Result<(), String> {
    match test {
        Test::RelQuery(segments) => inspect(segments).map(drop),
        Test::AbsQuery(query) => inspect(&query.segments).map(drop),
        Test::Function(function) => inspect_function(function),
    }
}

fn inspect_function(function: &TestFunction) -> Result<(), String> {
    let refuse = |name: &str| {
        Err(format!(
            "the JSONPath function {name}() is not supported in a filter (it would compile \
             its regex for every value tested); select the string and use the \"matches\" \
             operator"
        ))
    };
    let args: Vec<&FnArg> = match function {
        TestFunction::Match(..) => return refuse("match"),
        TestFunction::Search(..) => return refuse("search"),
        TestFunction::Custom(_, args) => args.iter().collect(),
        TestFunction::Length(arg) => vec![&**arg],
        TestFunction::Value(arg) | TestFunction::Count(arg) => vec![arg],
    };
    args.into_iter().try_for_each(|arg| match arg {
        FnArg::Literal(_) => Ok(()),
        FnArg::Test(test) => inspect_test(test),
        FnArg::Filter(condition) => inspect_condition(condition),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_functions_are_refused() {
        for p in [
            "$[?match(@.a, 'x.*')]",
            "$..[?search(@.a, 'x')]",
            "$[?count(@[?match(@, 'x')]) > 0]",
        ] {
            let query = jsonpath_rust::parser::parse_json_path(p).unwrap();
            let err = inspect(&query.segments).unwrap_err();
            assert!(err.contains("\"matches\" operator"), "{p}: {err}");
        }
        let query = jsonpath_rust::parser::parse_json_path("$[?length(@.a) > 1]").unwrap();
        assert_eq!(inspect(&query.segments), Ok(true));
    }
}
