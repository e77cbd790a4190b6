//! Sessions: a user's visits. Events with a `$session_id` property belong to the session of
//! that id; the others are split by inactivity (a gap longer than the timeout starts a new
//! session). No session crosses local midnight in the pipeline's time zone, so a day's
//! events are all a day's sessions need, whatever happened before.

use std::collections::HashMap;

use jiff::tz::TimeZone;
use serde_json::Value;

use super::event::AnalyticsEvent;
use super::period;
use crate::duration::DurationSpec;

/// The property that names a session, as the SDKs send it.
pub const SESSION_ID: &str = "$session_id";
/// The inactivity that ends a session when the pipeline sets none.
pub const DEFAULT_TIMEOUT: DurationSpec = DurationSpec::minutes(30);
/// The longest timeout: a session never crosses midnight anyway.
pub const MAX_TIMEOUT_SECS: u64 = 86_400;

/// One session of one user: its events in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct Session<'e> {
    pub events: Vec<&'e AnalyticsEvent>,
}

impl Session<'_> {
    /// Its first event's time (epoch ms).
    pub fn start(&self) -> i64 {
        self.events.first().map_or(0, |e| e.timestamp)
    }

    /// From its first event to its last, in ms (0 for a single event).
    pub fn duration_ms(&self) -> i64 {
        self.events.last().map_or(0, |e| e.timestamp) - self.start()
    }
}

/// The session id an event names, as text (a number as its JSON text); None without one
/// (or with an empty string or another type, which names no session).
fn session_id(e: &AnalyticsEvent) -> Option<String> {
    match e.properties.get(SESSION_ID)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The sessions of one user's events (in time order, each id once, as `by_user` gives
/// them), by start, then by their first event's place in `events`.
pub fn sessions<'e>(events: &[&'e AnalyticsEvent], timeout: DurationSpec, tz: &TimeZone) -> Vec<Session<'e>> {
    let timeout = timeout.as_millis();
    let mut out: Vec<Session<'e>> = Vec::new();
    // Sessions named by id, per (day, id); the open inactivity session: (day, index, last time).
    let mut named: HashMap<(i64, String), usize> = HashMap::new();
    let mut open: Option<(i64, usize, i64)> = None;
    let mut day_of = DayOf::new(tz);
    for &e in events {
        let day = day_of.number(e.timestamp);
        match session_id(e) {
            Some(id) => {
                let at = *named.entry((day, id)).or_insert_with(|| {
                    out.push(Session { events: Vec::new() });
                    out.len() - 1
                });
                out[at].events.push(e);
            }
            None => match open {
                Some((d, at, last)) if d == day && e.timestamp - last <= timeout => {
                    out[at].events.push(e);
                    open = Some((d, at, e.timestamp));
                }
                _ => {
                    out.push(Session { events: vec![e] });
                    open = Some((day, out.len() - 1, e.timestamp));
                }
            },
        }
    }
    // Sessions were opened in the order of their first events, which is time order.
    out
}

/// Local day numbers, with the current day's bounds remembered: a user's events come in
/// time order, so most fall in the day of the one before.
struct DayOf<'a> {
    tz: &'a TimeZone,
    current: Option<(i64, i64, i64)>,
}

impl<'a> DayOf<'a> {
    fn new(tz: &'a TimeZone) -> Self {
        DayOf { tz, current: None }
    }

    fn number(&mut self, ts: i64) -> i64 {
        if let Some((start, end, n)) = self.current
            && (start..end).contains(&ts)
        {
            return n;
        }
        let start = period::start(ts, period::Interval::Day, self.tz);
        let end = period::next(start, period::Interval::Day, self.tz);
        let n = period::day_number(start, self.tz);
        self.current = Some((start, end, n));
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MIN: i64 = 60_000;

    fn ev(name: &str, ts: i64, session: Option<&str>) -> AnalyticsEvent {
        let mut properties = json!({});
        if let Some(s) = session {
            properties[SESSION_ID] = json!(s);
        }
        AnalyticsEvent {
            event_id: format!("{name}{ts}"),
            event: name.into(),
            distinct_id: "u".into(),
            timestamp: ts,
            properties,
        }
    }

    fn shape(events: &[AnalyticsEvent], tz: &TimeZone) -> Vec<Vec<String>> {
        let refs: Vec<&AnalyticsEvent> = events.iter().collect();
        sessions(&refs, DEFAULT_TIMEOUT, tz)
            .into_iter()
            .map(|s| s.events.iter().map(|e| e.event_id.clone()).collect())
            .collect()
    }

    #[test]
    fn inactivity_splits_sessions_and_an_id_groups_them() {
        let noon = 12 * 60 * MIN;
        let events = [
            ev("a", noon, None),
            ev("b", noon + 30 * MIN, None), // exactly the timeout: same session
            ev("c", noon + 61 * MIN, None), // 31 minutes later: a new one
            ev("x", noon + 62 * MIN, Some("s1")), // named: its own session
            ev("d", noon + 70 * MIN, None), // the gap counts from c, not from x
            ev("y", noon + 300 * MIN, Some("s1")), // the same id hours later: the same session
        ];
        let got = shape(&events, &TimeZone::UTC);
        let want = [["a43200000", "b45000000"], ["c46860000", "d47400000"], ["x46920000", "y61200000"]];
        assert_eq!(got, want);
        let refs: Vec<&AnalyticsEvent> = events.iter().collect();
        let s = sessions(&refs, DEFAULT_TIMEOUT, &TimeZone::UTC);
        assert_eq!((s[1].events.len(), s[2].duration_ms()), (2, 238 * MIN));
    }

    #[test]
    fn no_session_crosses_local_midnight() {
        let berlin = TimeZone::get("Europe/Berlin").expect("zone");
        // 22:50 and 23:10 UTC in winter are 23:50 and 00:10 in Berlin.
        let day = 86_400_000;
        let events = [
            ev("a", day - 70 * MIN, Some("s")),
            ev("b", day - 50 * MIN, Some("s")),
            ev("c", day - 65 * MIN, None),
            ev("d", day - 45 * MIN, None),
        ];
        let mut sorted = events.to_vec();
        sorted.sort_by_key(|e| e.timestamp);
        assert_eq!(shape(&sorted, &TimeZone::UTC).len(), 2, "one session per kind in UTC");
        assert_eq!(shape(&sorted, &berlin).len(), 4, "split at Berlin's midnight");
    }
}
