//! The people behind a number (`POST /v1/people`): the users a funnel step, a retention
//! cell, a lifecycle or stickiness bucket or a trend point counts, a page at a time with
//! their total, optionally saved as a cohort (`saveAs`) that any query's cohort filter can
//! name (`{"type": "inCohort", "name": ...}`); and a saved cohort read back
//! (`GET /v1/cohorts/saved/{name}`).

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use pulse_core::analytics::cohort::{SAVED_NAME_RULE, valid_saved_name};
use pulse_core::analytics::people::{self, PeopleOf};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::{Answer, Api, Source, check_cohort, off_the_runtime, respond};
use crate::error::{QueryError, QueryErrorCode};
use crate::model::CohortFilter;
use crate::request::{JsonBody, QueryParams, RequestBody, check_times};
use crate::source;

/// Users listed when the request sets no `limit`.
const DEFAULT_LIMIT: usize = 100;
/// The most users one page lists.
const MAX_LIMIT: usize = 10_000;

/// `POST /v1/people`: which number, which page, and whether to save its users.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PeopleRequest {
    /// The number: a report's query as its endpoint takes it, and the cell.
    pub of: PeopleOf,
    /// Only these users, as the report was asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cohort: Option<CohortFilter>,
    /// Users per page, 1 to 10000 (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub limit: Option<usize>,
    /// List the users after this one (the previous page's `next`); users are in id order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Also save every user (not only this page) as the cohort of this name, replacing one
    /// saved before under it: 1 to 100 letters, digits, `_`, `-` and `.`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub save_as: Option<String>,
}

impl RequestBody for PeopleRequest {}

/// A page of the users behind a number.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PeoplePage {
    /// How many users the number counts (all pages).
    pub total: u64,
    /// This page's users, in id order.
    pub users: Vec<String>,
    /// The `after` of the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// The cohort saved, when `saveAs` asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saved: Option<SavedCohortInfo>,
}

/// A saved cohort: its name, size, when and from what it was saved.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SavedCohortInfo {
    pub name: String,
    pub users: u64,
    pub saved_at: i64,
    /// The request it was saved from.
    pub source: serde_json::Value,
}

/// `GET /v1/cohorts/saved/{name}`: which page of its members.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SavedCohortParams {
    /// Members per page, 1 to 10000 (default 100).
    #[serde(default)]
    #[schemars(range(min = 1, max = 10000))]
    pub limit: Option<usize>,
    /// List the members after this one (the previous page's `next`).
    #[serde(default)]
    pub after: Option<String>,
}

/// A saved cohort and a page of its members.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SavedCohortPage {
    pub cohort: SavedCohortInfo,
    pub members: PeoplePage,
}

/// What is computed and cached: the number and the cohort filter (not the page).
#[derive(Serialize)]
struct Number<'a> {
    of: &'a PeopleOf,
    cohort: &'a Option<CohortFilter>,
}

pub(crate) async fn people(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<PeopleRequest>,
) -> Response {
    respond(&api, "people", &headers, async {
        let mut req = body?;
        match &mut req.of {
            PeopleOf::Trend { query, .. } if query.measure.of_sessions() => {
                query.session_timeout.get_or_insert(api.session_timeout);
            }
            PeopleOf::Funnel { query, .. } if query.definition.same_session => {
                query.session_timeout.get_or_insert(api.session_timeout);
            }
            _ => {}
        }
        check_times(&times_of(&req.of))?;
        req.of.validate(&api.tz, &api.limits).map_err(|e| QueryError::from(e).under("of"))?;
        check_cohort(req.cohort.as_ref())?;
        let limit = page_limit(req.limit)?;
        if let Some(name) = &req.save_as
            && !valid_saved_name(name)
        {
            return Err(QueryError::invalid("saveAs", SAVED_NAME_RULE));
        }
        let (a, r) = (Arc::clone(&api), req.clone());
        let key = Number { of: &req.of, cohort: &req.cohort };
        let Answer { answered_from, result: everyone } = api
            .cached("people", &key, async move {
                let users = a.cohort_users(r.cohort.as_ref()).await?;
                let events =
                    source::read(&a.store, &source::of_people(&r.of, &a.tz), a.limits.max_events).await?;
                off_the_runtime(move || Ok(people::users(&r.of, &events, users.as_ref(), &a.tz, &a.limits)?))
                    .await
            })
            .await?;
        let saved = match &req.save_as {
            Some(name) => {
                let source = serde_json::to_string(&key).map_err(QueryError::internal)?;
                let now = jiff::Timestamp::now().as_millisecond();
                let saved = api.store.save_cohort(name, &everyone, &source, now).await?;
                tracing::info!(cohort = %name, users = saved.users, "cohort saved");
                Some(info(saved))
            }
            None => None,
        };
        let mut page = page_of(&everyone, req.after.as_deref(), limit);
        page.saved = saved;
        Ok(Answer { answered_from, result: page })
    })
    .await
}

pub(crate) async fn saved_cohort(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
    QueryParams(params): QueryParams<SavedCohortParams>,
) -> Response {
    respond(&api, "saved-cohort", &headers, async {
        let Path(name) = name.map_err(|e| QueryError::invalid("name", e.body_text()))?;
        let params = params?;
        let limit = page_limit(params.limit)?;
        let Some((cohort, members)) = api.store.saved_cohort(&name).await? else {
            return Err(QueryError::new(QueryErrorCode::NotFound, format!("no cohort is saved as {name:?}")));
        };
        let members = page_of(&members, params.after.as_deref(), limit);
        Ok(Answer { answered_from: Source::Raw, result: SavedCohortPage { cohort: info(cohort), members } })
    })
    .await
}

/// The times a people request gives, with their fields.
fn times_of(of: &PeopleOf) -> Vec<(&'static str, Option<i64>)> {
    let (cell, at, (from, to)) = match of {
        PeopleOf::Funnel { query, .. } => ("of.query.from", None, (query.from, query.to)),
        PeopleOf::Retention { query, cohort_start, .. } => {
            ("of.cohortStart", Some(*cohort_start), (query.from, query.to))
        }
        PeopleOf::Lifecycle { query, period_start, .. } => {
            ("of.periodStart", Some(*period_start), (query.from, query.to))
        }
        PeopleOf::Stickiness { query, period_start, .. } => {
            ("of.periodStart", Some(*period_start), (query.from, query.to))
        }
        PeopleOf::Trend { query, period_start, .. } => {
            ("of.periodStart", Some(*period_start), (query.from, query.to))
        }
    };
    vec![("of.query.from", Some(from)), ("of.query.to", Some(to)), (cell, at)]
}

fn page_limit(limit: Option<usize>) -> Result<usize, QueryError> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(QueryError::invalid("limit", format!("1 to {MAX_LIMIT}, not {limit}")));
    }
    Ok(limit)
}

/// The page of `limit` users after `after` of `everyone` (sorted).
fn page_of(everyone: &[String], after: Option<&str>, limit: usize) -> PeoplePage {
    let start = after.map_or(0, |a| everyone.partition_point(|u| u.as_str() <= a));
    let users: Vec<String> = everyone[start..].iter().take(limit).cloned().collect();
    let next = (start + users.len() < everyone.len()).then(|| users.last().cloned()).flatten();
    PeoplePage { total: everyone.len() as u64, users, next, saved: None }
}

fn info(saved: pulse_store::cohorts::SavedCohort) -> SavedCohortInfo {
    SavedCohortInfo {
        name: saved.name,
        users: saved.users,
        saved_at: saved.saved_at,
        source: serde_json::from_str(&saved.source).unwrap_or(serde_json::Value::Null),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_each_other_to_the_end() {
        let everyone: Vec<String> = (0..7).map(|i| format!("u{i}")).collect();
        let first = page_of(&everyone, None, 3);
        assert_eq!((first.total, first.users.len(), first.next.as_deref()), (7, 3, Some("u2")));
        let second = page_of(&everyone, first.next.as_deref(), 3);
        assert_eq!(second.users, ["u3", "u4", "u5"]);
        let last = page_of(&everyone, second.next.as_deref(), 3);
        assert_eq!((last.users.len(), last.next), (1, None));
        assert!(page_of(&everyone, Some("zzz"), 3).users.is_empty());
        assert_eq!(page_of(&everyone, None, 7).next, None, "a page ending at the last has no next");
    }
}
