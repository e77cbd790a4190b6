//! Paths: what users did after (or before) an event. Each user's path is the sequence of
//! event names next to their first anchor event in the range, within a window; the report
//! is Sankey-ready (nodes per step, weighted edges, the top names per step plus "other")
//! with the most frequent whole paths.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::error::{AnalyticsError, Limits, check_events, check_range};
use super::event::{AnalyticsEvent, EventMatcher, by_user};
use crate::duration::DurationSpec;
use crate::validation::Errors;

/// The most steps a path may have besides its anchor.
pub const MAX_STEPS: u32 = 20;
/// The longest window: a year, as for funnels.
const MAX_WINDOW_SECS: u64 = 366 * 86_400;
/// Names kept per step, and whole paths listed, when the query sets no `top`.
const DEFAULT_TOP: usize = 5;

/// Whether a path runs forward from the anchor, or back from it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum PathDirection {
    /// The events after the anchor (default).
    #[default]
    After,
    /// The events before the anchor, the nearest last.
    Before,
}

/// A paths query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PathQuery {
    /// The anchor: a user's first matching event in the range starts (or ends) their path.
    pub start: EventMatcher,
    /// after (default) or before.
    #[serde(default)]
    pub direction: PathDirection,
    /// Events on a path besides the anchor: 1 to 20.
    pub steps: u32,
    /// How far from the anchor a path's events may lie ("30m", "1d"; at most 366d; the
    /// window is inclusive).
    pub window: DurationSpec,
    /// Anchors at or after this time (epoch ms) ...
    pub from: i64,
    /// ... and before this one (exclusive).
    pub to: i64,
    /// Consecutive events of one name count as one step.
    #[serde(default)]
    pub collapse_repeats: bool,
    /// Event names left out of paths (skipped, not ending them; over `include` and `endAt`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// When not empty, only these event names are on paths (besides the anchor).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// A path ends at its first event of this name (which is on it), walking away from the
    /// anchor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_at: Option<String>,
    /// Names kept per step (the rest are "other"), and whole paths listed: 1 to the
    /// breakdown limit (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top: Option<usize>,
}

/// Users' paths as a Sankey diagram, and the most frequent whole paths.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PathReport {
    /// Users with an anchor in the range (each has a path, maybe the anchor alone).
    pub users: u64,
    /// Per step (0 is the anchor; after it 1, 2, ...; before it -1, -2, ...), the top
    /// names and an "other" node; by step, then users (most first), then name.
    pub nodes: Vec<PathNode>,
    /// Users going from one node to the next step's (`source` and `target` index `nodes`).
    pub edges: Vec<PathEdge>,
    /// The most frequent whole paths (anchor included, in time order), most users first.
    pub paths: Vec<PathCount>,
    /// How many distinct whole paths there are.
    pub distinct_paths: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PathNode {
    pub step: i32,
    /// The event name; null for the step's "other" node.
    pub event: Option<String>,
    /// Whether this node gathers the step's names beyond the top.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub other: bool,
    /// Users whose path has this name (or an "other" one) at this step.
    pub users: u64,
    /// Of them, users whose path has no further step.
    pub ended: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PathEdge {
    pub source: usize,
    pub target: usize,
    pub users: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PathCount {
    pub events: Vec<String>,
    pub users: u64,
}

impl PathQuery {
    /// Checks the query against `limits`: what [`run`] refuses, without any events.
    pub fn validate(&self, limits: &Limits) -> Result<(), AnalyticsError> {
        let mut errors = Errors::default();
        self.start.validate_into("start", &mut errors);
        if !(1..=MAX_STEPS).contains(&self.steps) {
            errors.add("steps", format!("1 to {MAX_STEPS}, not {}", self.steps));
        }
        if self.window.as_secs() > MAX_WINDOW_SECS {
            errors.add("window", format!("at most 366d, not {}", self.window));
        }
        let top = self.top.unwrap_or(DEFAULT_TOP);
        if !(1..=limits.max_breakdown_values).contains(&top) {
            errors.add("top", format!("1 to {}, not {top}", limits.max_breakdown_values));
        }
        for (field, names) in [("exclude", &self.exclude), ("include", &self.include)] {
            for (i, name) in names.iter().enumerate() {
                if name.is_empty() {
                    errors.add(format!("{field}[{i}]"), "an event name has at least one character");
                }
            }
        }
        if self.end_at.as_ref().is_some_and(String::is_empty) {
            errors.add("endAt", "an event name has at least one character");
        }
        errors.into_result().map_err(AnalyticsError::Invalid)?;
        check_range(self.from, self.to)
    }

    /// The event names a path can hold besides the anchor's: None for any.
    pub fn names(&self) -> Option<BTreeSet<String>> {
        if self.include.is_empty() {
            return None;
        }
        let mut names: BTreeSet<String> = self.include.iter().cloned().collect();
        names.insert(self.start.event.clone());
        names.extend(self.end_at.iter().cloned());
        Some(names)
    }
}

/// What [`run`] reads: the anchors' range widened by the window on the path's side.
pub fn event_span(query: &PathQuery) -> (i64, i64) {
    let window = query.window.as_millis();
    match query.direction {
        PathDirection::After => (query.from, query.to.saturating_add(window).saturating_add(1)),
        PathDirection::Before => (query.from.saturating_sub(window), query.to),
    }
}

/// One user's path, anchor included, in time order (events sorted by time then id, each
/// id once, as [`by_user`] gives them): None without an anchor in the range.
pub fn user_path<'e>(query: &PathQuery, events: &[&'e AnalyticsEvent]) -> Option<Vec<&'e str>> {
    let at = events
        .iter()
        .position(|e| (query.from..query.to).contains(&e.timestamp) && query.start.matches(e))?;
    let anchor = events[at];
    let window = query.window.as_millis();
    let on_path = |e: &&&AnalyticsEvent| {
        (e.timestamp - anchor.timestamp).abs() <= window
            && !query.exclude.contains(&e.event)
            && (query.include.is_empty()
                || query.include.contains(&e.event)
                || query.end_at.as_ref() == Some(&e.event))
    };
    let side: Box<dyn Iterator<Item = &&AnalyticsEvent>> = match query.direction {
        PathDirection::After => Box::new(events[at + 1..].iter()),
        PathDirection::Before => Box::new(events[..at].iter().rev()),
    };
    let mut path: Vec<&str> = vec![anchor.event.as_str()];
    for e in side.filter(on_path) {
        if query.collapse_repeats && path.last() == Some(&e.event.as_str()) {
            continue;
        }
        path.push(e.event.as_str());
        if path.len() > query.steps as usize || query.end_at.as_ref() == Some(&e.event) {
            break;
        }
    }
    if query.direction == PathDirection::Before {
        path.reverse();
    }
    Some(path)
}

/// Computes the paths over `events` (any order; repeated ids count once), for the users in
/// `users` when given.
pub fn run(
    query: &PathQuery,
    events: &[AnalyticsEvent],
    users: Option<&HashSet<String>>,
    limits: &Limits,
) -> Result<PathReport, AnalyticsError> {
    query.validate(limits)?;
    check_events(events.len(), limits)?;
    let mut paths: HashMap<Vec<&str>, u64> = HashMap::new();
    for user in by_user(events) {
        if users.is_some_and(|u| !u.contains(user.distinct_id)) {
            continue;
        }
        if let Some(path) = user_path(query, &user.events) {
            *paths.entry(path).or_default() += 1;
        }
    }
    Ok(report(query, paths))
}

/// The report of every user's path (with its number of users).
fn report(query: &PathQuery, paths: HashMap<Vec<&str>, u64>) -> PathReport {
    let top = query.top.unwrap_or(DEFAULT_TOP);
    let users: u64 = paths.values().sum();
    // Paths as steps from the anchor: after it 0, 1, 2, ...; before it ..., -2, -1, 0.
    let steps_of = |path: &[&str]| -> Vec<i32> {
        let n = path.len() as i32;
        match query.direction {
            PathDirection::After => (0..n).collect(),
            PathDirection::Before => (1 - n..=0).collect(),
        }
    };
    // Users per (step, name), and the top names of each step.
    let mut at_step: BTreeMap<i32, HashMap<&str, u64>> = BTreeMap::new();
    for (path, &n) in &paths {
        for (step, name) in steps_of(path).into_iter().zip(path) {
            *at_step.entry(step).or_default().entry(name).or_default() += n;
        }
    }
    let mut nodes = Vec::new();
    let mut index: HashMap<(i32, Option<&str>), usize> = HashMap::new();
    for (&step, names) in &at_step {
        let mut ranked: Vec<(&str, u64)> = names.iter().map(|(k, v)| (*k, *v)).collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let rest: u64 = ranked.iter().skip(top).map(|r| r.1).sum();
        for (name, n) in ranked.into_iter().take(top) {
            index.insert((step, Some(name)), nodes.len());
            nodes.push(PathNode { step, event: Some(name.to_string()), other: false, users: n, ended: 0 });
        }
        if rest > 0 {
            index.insert((step, None), nodes.len());
            nodes.push(PathNode { step, event: None, other: true, users: rest, ended: 0 });
        }
    }
    let node_of = |step: i32, name: &str| {
        index.get(&(step, Some(name))).or_else(|| index.get(&(step, None))).copied().unwrap_or(0)
    };
    let mut edges: BTreeMap<(usize, usize), u64> = BTreeMap::new();
    for (path, &n) in &paths {
        let at: Vec<usize> = steps_of(path).into_iter().zip(path).map(|(s, name)| node_of(s, name)).collect();
        for pair in at.windows(2) {
            *edges.entry((pair[0], pair[1])).or_default() += n;
        }
        // The path's far end, away from the anchor, is where it ends.
        let end = match query.direction {
            PathDirection::After => at.last(),
            PathDirection::Before => at.first(),
        };
        if let Some(&end) = end {
            nodes[end].ended += n;
        }
    }
    let edges =
        edges.into_iter().map(|((source, target), users)| PathEdge { source, target, users }).collect();
    let distinct_paths = paths.len() as u64;
    let mut ranked: Vec<(Vec<&str>, u64)> = paths.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let paths = ranked
        .into_iter()
        .take(top)
        .map(|(events, users)| PathCount { events: events.into_iter().map(String::from).collect(), users })
        .collect();
    PathReport { users, nodes, edges, paths, distinct_paths }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MIN: i64 = 60_000;

    fn ev(user: &str, name: &str, ts: i64) -> AnalyticsEvent {
        AnalyticsEvent {
            event_id: format!("{user}-{name}-{ts}"),
            event: name.into(),
            distinct_id: user.into(),
            timestamp: ts,
            properties: json!({}),
        }
    }

    fn query(extra: serde_json::Value) -> PathQuery {
        let mut q =
            json!({ "start": { "event": "signup" }, "steps": 3, "window": "1h", "from": 0, "to": 60 * MIN });
        if let (Some(q), Some(extra)) = (q.as_object_mut(), extra.as_object()) {
            q.extend(extra.clone());
        }
        serde_json::from_value(q).expect("query")
    }

    fn path_of(q: &PathQuery, events: &[AnalyticsEvent]) -> Option<Vec<String>> {
        let users = by_user(events);
        user_path(q, &users[0].events).map(|p| p.into_iter().map(String::from).collect())
    }

    #[test]
    fn a_path_is_the_events_after_the_first_anchor_within_the_window() {
        let events = [
            ev("a", "open", 0),
            ev("a", "signup", MIN),
            ev("a", "view", 2 * MIN),
            ev("a", "signup", 3 * MIN),
            ev("a", "view", 4 * MIN),
            ev("a", "buy", 61 * MIN),
            ev("a", "late", 62 * MIN),
        ];
        assert_eq!(
            path_of(&query(json!({})), &events),
            Some(vec!["signup".into(), "view".into(), "signup".into(), "view".into()])
        );
        // The window is inclusive: buy at exactly one hour after the anchor is on the path.
        let q = query(json!({ "steps": 5 }));
        assert_eq!(path_of(&q, &events).map(|p| p.len()), Some(5), "signup view signup view buy");
        let before = query(json!({ "direction": "before", "from": 3 * MIN }));
        assert_eq!(
            path_of(&before, &events),
            Some(vec!["open".into(), "signup".into(), "view".into(), "signup".into()]),
            "the first anchor in range is the second signup; the path ends at it"
        );
        assert_eq!(path_of(&query(json!({ "from": 5 * MIN })), &events), None, "no anchor in range");
    }

    #[test]
    fn options_collapse_exclude_include_and_end_a_path() {
        let events = [
            ev("a", "signup", 0),
            ev("a", "view", MIN),
            ev("a", "view", 2 * MIN),
            ev("a", "ping", 3 * MIN),
            ev("a", "cart", 4 * MIN),
            ev("a", "view", 5 * MIN),
        ];
        let names = |extra| path_of(&query(extra), &events).expect("anchor").join(" ");
        assert_eq!(names(json!({ "steps": 9 })), "signup view view ping cart view");
        assert_eq!(names(json!({ "steps": 9, "collapseRepeats": true })), "signup view ping cart view");
        assert_eq!(
            names(json!({ "steps": 9, "collapseRepeats": true, "exclude": ["ping"] })),
            "signup view cart view"
        );
        assert_eq!(names(json!({ "steps": 9, "include": ["cart"] })), "signup cart");
        assert_eq!(names(json!({ "steps": 9, "endAt": "ping" })), "signup view view ping");
        assert_eq!(names(json!({ "steps": 2, "endAt": "ping" })), "signup view view");
    }

    #[test]
    fn the_report_keeps_the_top_names_per_step_and_gathers_the_rest() {
        let mut events = Vec::new();
        // 3 users: signup view buy; 2: signup view; 1: signup help.
        for (u, names) in
            [(0, "view buy"), (1, "view buy"), (2, "view buy"), (3, "view"), (4, "view"), (5, "help")]
        {
            let user = format!("u{u}");
            events.push(ev(&user, "signup", 0));
            for (i, name) in names.split(' ').enumerate() {
                events.push(ev(&user, name, (i as i64 + 1) * MIN));
            }
        }
        let report = run(&query(json!({ "top": 1 })), &events, None, &Limits::default()).expect("runs");
        assert_eq!(report.users, 6);
        assert_eq!(report.distinct_paths, 3);
        let nodes: Vec<(i32, Option<&str>, u64, u64)> =
            report.nodes.iter().map(|n| (n.step, n.event.as_deref(), n.users, n.ended)).collect();
        assert_eq!(
            nodes,
            [(0, Some("signup"), 6, 0), (1, Some("view"), 5, 2), (1, None, 1, 1), (2, Some("buy"), 3, 3)]
        );
        let edges: Vec<(usize, usize, u64)> =
            report.edges.iter().map(|e| (e.source, e.target, e.users)).collect();
        assert_eq!(edges, [(0, 1, 5), (0, 2, 1), (1, 3, 3)]);
        assert_eq!(
            report.paths,
            [PathCount { events: vec!["signup".into(), "view".into(), "buy".into()], users: 3 }]
        );
    }

    #[test]
    fn refuses_bad_queries() {
        let q =
            query(json!({ "steps": 0, "window": "400d", "top": 0, "exclude": ["x", ""], "include": ["x"] }));
        let err = run(&q, &[], None, &Limits::default()).expect_err("invalid");
        let AnalyticsError::Invalid(fields) = err else { panic!("expected invalid, got {err:?}") };
        let fields: Vec<&str> = fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["steps", "window", "top", "exclude[1]"]);
    }
}
