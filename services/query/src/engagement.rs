//! `POST /v1/lifecycle` and `POST /v1/stickiness`: how users keep doing an event, per
//! period. Answered from the activity view when it can (no property filter, no cohort),
//! otherwise from the raw events (cached). Periods are marked complete, partial or pending
//! at answer time, after any cache.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use pulse_core::analytics::{lifecycle, stickiness};

use crate::api::{Answer, Api, Source, check_cohort, off_the_runtime, respond};
use crate::model::{LifecycleRequest, StickinessRequest};
use crate::request::{JsonBody, check_times};
use crate::source::{self, EventNeed};

pub(crate) async fn lifecycle(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<LifecycleRequest>,
) -> Response {
    respond(&api, "lifecycle", &headers, async {
        let req = body?;
        check_times(&[("from", Some(req.query.from)), ("to", Some(req.query.to))])?;
        req.query.validate(&api.tz, &api.limits)?;
        check_cohort(req.cohort.as_ref())?;
        let from_view = match req.cohort {
            None => api.views.lifecycle(&req.query, &api.limits)?,
            Some(_) => None,
        };
        let mut answer = match from_view {
            Some(result) => Answer { answered_from: Source::Preaggregated, result },
            None => {
                let (a, r) = (Arc::clone(&api), req.clone());
                api.cached("lifecycle", &req, async move {
                    let users = a.cohort_users(r.cohort.as_ref()).await?;
                    let (from, to) = lifecycle::event_span(&r.query, &a.tz);
                    let need = EventNeed::named([r.query.event.event.clone()], from, to);
                    let events = source::read(&a.store, &[need], a.limits.max_events).await?;
                    off_the_runtime(move || {
                        Ok(lifecycle::run(&r.query, &events, users.as_ref(), &a.tz, &a.limits)?)
                    })
                    .await
                })
                .await?
            }
        };
        answer.result.mark_progress(req.query.period, jiff::Timestamp::now().as_millisecond(), &api.tz);
        Ok(answer)
    })
    .await
}

pub(crate) async fn stickiness(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<StickinessRequest>,
) -> Response {
    respond(&api, "stickiness", &headers, async {
        let req = body?;
        check_times(&[("from", Some(req.query.from)), ("to", Some(req.query.to))])?;
        req.query.validate(&api.tz, &api.limits)?;
        check_cohort(req.cohort.as_ref())?;
        let from_view = match req.cohort {
            None => api.views.stickiness(&req.query, &api.limits)?,
            Some(_) => None,
        };
        let mut answer = match from_view {
            Some(result) => Answer { answered_from: Source::Preaggregated, result },
            None => {
                let (a, r) = (Arc::clone(&api), req.clone());
                api.cached("stickiness", &req, async move {
                    let users = a.cohort_users(r.cohort.as_ref()).await?;
                    let (from, to) = stickiness::event_span(&r.query, &a.tz);
                    let need = EventNeed::named([r.query.event.event.clone()], from, to);
                    let events = source::read(&a.store, &[need], a.limits.max_events).await?;
                    off_the_runtime(move || {
                        Ok(stickiness::run(&r.query, &events, users.as_ref(), &a.tz, &a.limits)?)
                    })
                    .await
                })
                .await?
            }
        };
        answer.result.mark_progress(req.query.period, jiff::Timestamp::now().as_millisecond(), &api.tz);
        Ok(answer)
    })
    .await
}
