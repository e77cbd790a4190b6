//! The people behind the numbers: `GET /v1/persons/{distinct_id}` (a user's profile, as
//! `identify`, `$set` and `$set_once` wrote it, with their first and last event time) and
//! `GET /v1/persons/{distinct_id}/events` (their events, newest first, a page at a time).
//!
//! A user's events are in the event blocks of their partition. The activity view knows the
//! local days on which the user has events and the first and last time of each, so a page
//! reads only those days' blocks of one partition. A day whose events of the user that
//! partition does not cover from its first to its last time (the user's partition changed
//! when `buffer.partitions` grew) is read in every partition. Without the view (not loaded
//! yet, or past its memory bound) a page reads day after day back from its cursor, at most
//! [`SCAN_DAYS`] days, and says where to go on.

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use pulse_core::analytics::materialized::UserDay;
use pulse_core::analytics::period::{self, Interval};
use pulse_core::buffer::{BufferedEvent, partition_of};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::api::{Api, respond};
use crate::error::{QueryError, QueryErrorCode};
use crate::model::{Answer, Source};
use crate::request::QueryParams;

/// Events listed when the request sets no limit.
const DEFAULT_LIMIT: u32 = 50;
/// The most listed at once.
const MAX_LIMIT: u32 = 1000;
/// Days a page reads at most when the activity view cannot say which days the user has
/// events.
pub const SCAN_DAYS: usize = 31;

/// A user.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Person {
    pub distinct_id: String,
    /// The profile: what `identify` traits, `$set` and `$set_once` wrote, and `$unset`
    /// left ({} for a user with events only).
    pub properties: Map<String, Value>,
    /// The user's first and last event time, epoch ms. Null when the query replica's
    /// activity view cannot tell (not loaded yet, or past its memory bound: `/readyz`).
    pub first_seen: Option<i64>,
    pub last_seen: Option<i64>,
}

/// `GET /v1/persons/{distinct_id}/events`: which page.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PersonEventsParams {
    /// How many events to list, 1 to 1000 (default 50).
    #[serde(default)]
    #[schemars(range(min = 1, max = 1000))]
    pub limit: Option<u32>,
    /// List those before this cursor (the previous page's `next`); default: from the
    /// newest.
    #[serde(default)]
    pub before: Option<String>,
}

/// A page of a user's events, newest first (by time, then event id).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersonEventsPage {
    pub events: Vec<PersonEvent>,
    /// The cursor to ask `before` for the next page; absent when there is no older event.
    /// A page may hold fewer events than the limit and still have a `next`: without the
    /// activity view a page reads at most 31 days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// One event of the user.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersonEvent {
    pub event_id: String,
    pub event: String,
    /// Epoch ms.
    pub timestamp: i64,
    pub properties: Map<String, Value>,
}

/// Where a page starts: events strictly older than `(timestamp, event_id)` in the order
/// (time, then event id); without an id, every event before `timestamp`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cursor {
    timestamp: i64,
    event_id: Option<String>,
}

impl Cursor {
    /// `<epoch ms>` or `<epoch ms>.<event id>`.
    fn parse(text: &str) -> Result<Self, QueryError> {
        let (ts, id) = match text.split_once('.') {
            Some((ts, id)) => (ts, Some(id.to_string())),
            None => (text, None),
        };
        let timestamp = ts.parse::<i64>().map_err(|_| {
            QueryError::invalid(
                "before",
                "a page's `next`: epoch milliseconds, then optionally `.` and an event id",
            )
        })?;
        Ok(Cursor { timestamp, event_id: id })
    }

    fn after(event: &PersonEvent) -> String {
        format!("{}.{}", event.timestamp, event.event_id)
    }

    /// Whether `event` comes after the cursor, newest first.
    fn admits(&self, event: &PersonEvent) -> bool {
        match &self.event_id {
            Some(id) => (event.timestamp, event.event_id.as_str()) < (self.timestamp, id.as_str()),
            None => event.timestamp < self.timestamp,
        }
    }
}

pub(crate) async fn person(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    respond(&api, "person", &headers, async {
        let Path(distinct_id) = id.map_err(|e| QueryError::invalid("distinct_id", e.body_text()))?;
        // A store read: it takes a turn like the other raw reads.
        let _turn = api.raw_queries.admit().await?;
        let profile = api.store.profile(&distinct_id).await?;
        let days = api.views.user_days(&distinct_id);
        if profile.is_none() && matches!(days, Some(None)) {
            return Err(unknown(&distinct_id));
        }
        let days = days.flatten().unwrap_or_default();
        Ok(Answer {
            answered_from: Source::Raw,
            result: Person {
                first_seen: days.last().map(|d| d.first),
                last_seen: days.first().map(|d| d.last),
                properties: profile.unwrap_or_default(),
                distinct_id,
            },
        })
    })
    .await
}

pub(crate) async fn person_events(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    QueryParams(params): QueryParams<PersonEventsParams>,
) -> Response {
    respond(&api, "person-events", &headers, async {
        let Path(distinct_id) = id.map_err(|e| QueryError::invalid("distinct_id", e.body_text()))?;
        let params = params?;
        let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(QueryError::invalid("limit", format!("1 to {MAX_LIMIT}, not {limit}")));
        }
        let now = jiff::Timestamp::now().as_millisecond();
        let cursor = match params.before.as_deref() {
            Some(text) => Cursor::parse(text)?,
            None => Cursor { timestamp: i64::MAX, event_id: None },
        };
        let _turn = api.raw_queries.admit().await?;
        let result = match api.views.user_days(&distinct_id) {
            // No event: an empty page for a user with a profile.
            Some(None) => match api.store.profile(&distinct_id).await? {
                Some(_) => PersonEventsPage { events: Vec::new(), next: None },
                None => return Err(unknown(&distinct_id)),
            },
            Some(Some(days)) => {
                page_of_known_days(&api, &distinct_id, &days, &cursor, limit as usize).await?
            }
            None => page_by_scanning(&api, &distinct_id, &cursor, limit as usize, now).await?,
        };
        Ok(Answer { answered_from: Source::Raw, result })
    })
    .await
}

fn unknown(distinct_id: &str) -> QueryError {
    QueryError::new(QueryErrorCode::NotFound, format!("no user {distinct_id:?}: no event and no profile"))
}

/// A page read from the days the activity view lists for the user (newest first).
async fn page_of_known_days(
    api: &Api,
    distinct_id: &str,
    days: &[UserDay],
    cursor: &Cursor,
    limit: usize,
) -> Result<PersonEventsPage, QueryError> {
    let mut page = Vec::new();
    for day in days.iter().filter(|d| d.first <= cursor.timestamp) {
        let mut events = day_events(api, distinct_id, day.start, day.end, None).await?;
        let covered = events.last().is_some_and(|e| e.timestamp <= day.first)
            && events.first().is_some_and(|e| e.timestamp >= day.last);
        if !covered {
            // Some of the day's events are in another partition: the user's partition
            // changed when the partitions grew.
            events = day_events(api, distinct_id, day.start, day.end, Some(api.partitions)).await?;
        }
        page.extend(events.into_iter().filter(|e| cursor.admits(e)));
        if page.len() > limit {
            break;
        }
    }
    Ok(cut(page, limit, None))
}

/// A page read day after day back from the cursor, at most [`SCAN_DAYS`] days, down to the
/// oldest event stored.
async fn page_by_scanning(
    api: &Api,
    distinct_id: &str,
    cursor: &Cursor,
    limit: usize,
    now: i64,
) -> Result<PersonEventsPage, QueryError> {
    let oldest = api.store.oldest_event_time().await?;
    let horizon = oldest.unwrap_or(i64::MAX).max(now.saturating_sub(api.retention_ms));
    let mut end = cursor.timestamp.min(now.saturating_add(api.max_future_ms)).saturating_add(1);
    let mut page = Vec::new();
    for _ in 0..SCAN_DAYS {
        if end <= horizon {
            return Ok(cut(page, limit, None));
        }
        let start = period::start(end - 1, Interval::Day, &api.tz);
        let events = day_events(api, distinct_id, start, end, None).await?;
        page.extend(events.into_iter().filter(|e| cursor.admits(e)));
        end = start;
        if page.len() > limit {
            return Ok(cut(page, limit, None));
        }
    }
    Ok(cut(page, limit, (end > horizon).then(|| end.to_string())))
}

/// The first `limit` events of `page` (newest first), and the cursor after them; `rest`
/// is where to go on when the page holds no more than the limit.
fn cut(mut page: Vec<PersonEvent>, limit: usize, rest: Option<String>) -> PersonEventsPage {
    page.sort_by(|a, b| (b.timestamp, &b.event_id).cmp(&(a.timestamp, &a.event_id)));
    if page.len() > limit {
        page.truncate(limit);
        let next = page.last().map(Cursor::after);
        return PersonEventsPage { events: page, next };
    }
    PersonEventsPage { events: page, next: rest }
}

/// The user's events in `[start, end)`, newest first, one per event id: from their
/// partition's blocks, or from all `partitions`' when given.
async fn day_events(
    api: &Api,
    distinct_id: &str,
    start: i64,
    end: i64,
    all_of: Option<u32>,
) -> Result<Vec<PersonEvent>, QueryError> {
    let partitions: Vec<u32> = match all_of {
        Some(n) => (0..n).collect(),
        None => vec![partition_of(distinct_id, api.partitions)],
    };
    let mut seen = HashSet::new();
    let mut events = Vec::new();
    for p in partitions {
        for (_, e) in api.store.partition_events_between(p, start, end).await? {
            if e.distinct_id == distinct_id && seen.insert(e.event_id.clone()) {
                events.push(person_event(e));
            }
        }
    }
    events.sort_by(|a, b| (b.timestamp, &b.event_id).cmp(&(a.timestamp, &a.event_id)));
    Ok(events)
}

fn person_event(e: BufferedEvent) -> PersonEvent {
    PersonEvent { properties: e.properties, event_id: e.event_id, event: e.event, timestamp: e.timestamp }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(ts: i64, id: &str) -> PersonEvent {
        PersonEvent { event_id: id.into(), event: "e".into(), timestamp: ts, properties: Map::new() }
    }

    #[test]
    fn a_cursor_admits_what_comes_after_it_newest_first() {
        let at = Cursor::parse("1000.b").expect("cursor");
        assert_eq!(at, Cursor { timestamp: 1000, event_id: Some("b".into()) });
        assert!(at.admits(&event(1000, "a")) && at.admits(&event(999, "z")));
        assert!(
            !at.admits(&event(1000, "b")) && !at.admits(&event(1000, "c")) && !at.admits(&event(1001, "a"))
        );
        let day = Cursor::parse("1000").expect("cursor");
        assert!(day.admits(&event(999, "z")) && !day.admits(&event(1000, "a")));
        // An id holding dots: the time is before the first.
        assert_eq!(Cursor::parse("5.a.b").expect("cursor").event_id.as_deref(), Some("a.b"));
        assert!(Cursor::parse("soon").is_err() && Cursor::parse("").is_err());
    }

    #[test]
    fn a_page_cut_at_the_limit_goes_on_after_its_last_event() {
        let page = cut(vec![event(1, "a"), event(3, "c"), event(2, "b"), event(3, "d")], 2, None);
        let ids: Vec<&str> = page.events.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(ids, ["d", "c"]);
        assert_eq!(page.next.as_deref(), Some("3.c"));
        let last = cut(vec![event(1, "a")], 2, None);
        assert_eq!(last.next, None);
        let scanned = cut(vec![], 2, Some("86400000".into()));
        assert_eq!(scanned.next.as_deref(), Some("86400000"), "nothing found yet, older days remain");
    }
}
