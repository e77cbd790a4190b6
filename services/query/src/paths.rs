//! `POST /v1/paths`: what users did after (or before) an event, as a Sankey diagram and the
//! most frequent whole paths (`pulse_core::analytics::paths`). Computed from the raw events
//! of the anchors' range and the window (every event name unless the query names them),
//! cached; more events than the query limit is an error.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use pulse_core::analytics::paths;

use crate::api::{Api, check_cohort, off_the_runtime, respond};
use crate::model::PathRequest;
use crate::request::{JsonBody, check_times};
use crate::source::{self, EventNeed};

pub(crate) async fn paths(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<PathRequest>,
) -> Response {
    respond(&api, "paths", &headers, async {
        let req = body?;
        check_times(&[("from", Some(req.query.from)), ("to", Some(req.query.to))])?;
        req.query.validate(&api.limits)?;
        check_cohort(req.cohort.as_ref())?;
        let (a, r) = (Arc::clone(&api), req.clone());
        api.cached("paths", &req, async move {
            let users = a.cohort_users(r.cohort.as_ref()).await?;
            let (from, to) = paths::event_span(&r.query);
            let need = EventNeed { names: r.query.names(), from, to };
            let events = source::read(&a.store, &[need], a.limits.max_events).await?;
            off_the_runtime(move || Ok(paths::run(&r.query, &events, users.as_ref(), &a.limits)?)).await
        })
        .await
    })
    .await
}
