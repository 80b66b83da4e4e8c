//! The config change stream a worker follows (SSE), and its long-poll twin.
use std::convert::Infallible;
use std::time::Duration;

use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, get, http::header, web};
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;
use uuid::Uuid;

use super::AppState;
use super::caller::Token;
use super::error::{ApiError, FieldError};
use super::pagination::present;
use super::responses::*;
use crate::stream::{self, SubscribeError, Subscription};
use crate::wire::{self, EventKind, StreamEvent};

fn subscribe_error(e: SubscribeError) -> ApiError {
    match e {
        SubscribeError::NotFound => ApiError::NotFound("sensor"),
        SubscribeError::Lagging(rev) => ApiError::Unavailable(format!(
            "this API replica has not yet seen revision {rev}; retry (another replica may answer)"
        )),
        SubscribeError::Store(e) => e.into(),
    }
}

struct Streaming {
    sub: Subscription,
    stopping: tokio::sync::watch::Receiver<bool>,
    bookmark: tokio::time::Interval,
    _open: OpenStreams,
}

/// Counts open streams in `/metrics` for as long as one lives.
struct OpenStreams;

impl OpenStreams {
    fn new() -> Self {
        metrics::gauge!("mailsensor_config_streams_open").increment(1.0);
        OpenStreams
    }
}

impl Drop for OpenStreams {
    fn drop(&mut self) {
        metrics::gauge!("mailsensor_config_streams_open").decrement(1.0);
    }
}

/// Follow a sensor's settings as Server-Sent Events (sensor token for that sensor only).
///
/// Without a usable `Last-Event-ID`: `reset`, `snapshot` (a `SensorConfig`), `synced` (with the
/// resume token `<epoch>:<rev>` as its id). Then `upsert` (`SensorConfig`) and `delete`
/// (`SensorDeleted`) as changes commit, and `bookmark` every 15 s when idle. Reconnect with the
/// last id seen as `Last-Event-ID` to get exactly the changes missed; a token from another database
/// epoch or older than the retained history gets `reset` + `snapshot` again; so does an open stream
/// whose replica finds that revisions it had not read yet were compacted (a `reset` may come at any
/// time: take the `snapshot` that follows). A token newer than
/// this replica has seen waits up to 3 s for it, then answers 503 with `Retry-After`. A client that
/// does not keep up is disconnected and resumes from its last id.
#[utoipa::path(
    operation_id = "stream_sensor_config",
    tag = "workers",
    params(
        ("sensor_id" = Uuid, Path),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume token `<epoch>:<rev>` from the last event received"),
    ),
    responses(
        (status = 200, description = "An endless event stream; each event's `data` is one of SensorConfig, SensorDeleted, Reset or `{}`",
            content_type = "text/event-stream", body = String),
        (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 503, description = "This replica lags behind the resume token; retry", content_type = "application/problem+json", body = super::error::Problem),
    ),
    security(("bearer" = []))
)]
#[get("/v1/sensors/{sensor_id}/config-stream")]
pub async fn config_stream(
    state: web::Data<AppState>,
    token: Token,
    req: HttpRequest,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let sensor = path.into_inner();
    let tenant = token.own_sensor(&state, sensor).await?;
    let last = req.headers().get("last-event-id").and_then(|v| v.to_str().ok());
    let sub =
        stream::open(&state.feed, tenant, sensor, last, state.max_message_bytes).await.map_err(subscribe_error)?;
    let every = state.bookmark_interval;
    let streaming = Streaming {
        sub,
        stopping: state.stopping.subscribe(),
        bookmark: tokio::time::interval_at(tokio::time::Instant::now() + every, every),
        _open: OpenStreams::new(),
    };
    let body = futures_util::stream::unfold(streaming, |mut s| async move {
        let event = tokio::select! {
            // Queued events first: a bookmark must never overtake an event it covers.
            biased;
            next = s.sub.next() => next.ok()?,
            _ = s.stopping.wait_for(|stopping| *stopping) => return None,
            _ = s.bookmark.tick() => StreamEvent { event: EventKind::Bookmark, id: Some(s.sub.position().to_string()), data: json!({}) },
        };
        Some((Ok::<_, Infallible>(Bytes::from(event.to_sse())), s))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PollParams {
    /// `next` from the previous answer (or an SSE event id); absent = start with a snapshot.
    pub after: Option<String>,
    /// Seconds to wait for a change when there is none yet, 0–60 (default 30).
    #[param(value_type = Option<u8>, minimum = 0, maximum = 60)]
    pub wait: Option<String>,
}

/// Long-poll alternative to the stream, for clients that cannot hold one open: the same events and
/// token semantics, returned as a JSON batch.
#[utoipa::path(
    operation_id = "poll_sensor_config",
    tag = "workers",
    params(("sensor_id" = Uuid, Path), PollParams),
    responses(
        (status = 200, body = wire::ConfigPoll), (status = 401, response = Unauthorized), (status = 403, response = Forbidden),
        (status = 404, response = NotFound), (status = 422, response = Unprocessable),
        (status = 503, description = "This replica lags behind the token; retry", content_type = "application/problem+json", body = super::error::Problem),
    ),
    security(("bearer" = []))
)]
#[get("/v1/sensors/{sensor_id}/config")]
pub async fn config_poll(
    state: web::Data<AppState>,
    token: Token,
    path: web::Path<Uuid>,
    query: web::Query<PollParams>,
) -> Result<web::Json<wire::ConfigPoll>, ApiError> {
    let sensor = path.into_inner();
    let tenant = token.own_sensor(&state, sensor).await?;
    let wait = match query.wait.as_deref().map(str::parse::<u64>) {
        None => Duration::from_secs(30),
        Some(Ok(n)) if n <= 60 => Duration::from_secs(n),
        Some(_) => return Err(ApiError::validation([FieldError::parameter("wait", "must be 0 to 60 seconds")])),
    };
    let mut sub = stream::open(&state.feed, tenant, sensor, present(&query.after), state.max_message_bytes)
        .await
        .map_err(subscribe_error)?;
    let mut events = Vec::new();
    while let Some(event) = sub.next_ready().await {
        events.push(event);
    }
    if events.is_empty()
        && let Ok(Ok(event)) = tokio::time::timeout(wait, sub.next()).await
    {
        events.push(event);
        while let Some(event) = sub.next_ready().await {
            events.push(event);
        }
    }
    Ok(web::Json(wire::ConfigPoll { events, next: sub.position().to_string() }))
}
