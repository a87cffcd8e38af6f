//! Load shedding and quotas: requests handled at once, long polls waiting,
//! request body bytes being received (one global budget, so many large
//! bodies at once cannot exhaust memory), WebSockets per principal, and
//! per-principal rates of requests, produced messages and produced bytes
//! (token buckets from `governor`). Over a shared limit a request gets 503
//! `overloaded` at once — nothing queues without bound; over a principal's
//! rate, 429 `rate_limited`; both with `Retry-After`.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use weir_protocol::ErrorCode;

use super::error::ApiError;
use super::AppState;
use crate::config;
use crate::metrics::METRICS;

/// The shared limits of one server.
pub struct Limits {
    pub config: config::Limits,
    max_request_bytes: usize,
    requests: Arc<Semaphore>,
    long_polls: Arc<Semaphore>,
    request_bytes: Arc<Semaphore>,
    websockets: Arc<Mutex<HashMap<String, usize>>>,
    rate_requests: Option<DefaultKeyedRateLimiter<String>>,
    rate_messages: Option<DefaultKeyedRateLimiter<String>>,
    rate_bytes: Option<DefaultKeyedRateLimiter<String>>,
}

fn limiter(per_second: Option<u32>) -> Option<DefaultKeyedRateLimiter<String>> {
    let rate = NonZeroU32::new(per_second?)?;
    Some(RateLimiter::keyed(Quota::per_second(rate)))
}

impl Limits {
    pub fn new(config: config::Limits, max_request_bytes: usize) -> Limits {
        Limits {
            requests: Arc::new(Semaphore::new(config.max_concurrent_requests)),
            long_polls: Arc::new(Semaphore::new(config.max_long_polls)),
            request_bytes: Arc::new(Semaphore::new(config.max_inflight_request_bytes)),
            websockets: Arc::new(Mutex::new(HashMap::new())),
            rate_requests: limiter(config.rate_requests),
            rate_messages: limiter(config.rate_messages),
            rate_bytes: limiter(config.rate_bytes),
            max_request_bytes,
            config,
        }
    }

    /// A slot for one long poll, held while it waits.
    pub fn long_poll(&self) -> Result<Gauged, ApiError> {
        match self.long_polls.clone().try_acquire_owned() {
            Ok(permit) => Ok(Gauged::new(permit, &METRICS.long_polls, 1)),
            Err(_) => {
                METRICS
                    .requests_shed
                    .with_label_values(&["long_polls"])
                    .inc();
                Err(ApiError::new(
                    ErrorCode::Overloaded,
                    format!(
                        "{} long polls are already waiting (`max_long_polls`); retry later or poll without `wait_ms`",
                        self.config.max_long_polls
                    ),
                ))
            }
        }
    }

    /// A slot for one WebSocket of `principal`, held while it is open.
    pub fn websocket(&self, principal: &str) -> Result<WebSocketSlot, ApiError> {
        let mut open = lock(&self.websockets);
        let count = open.entry(principal.to_owned()).or_insert(0);
        if *count >= self.config.max_ws_per_principal {
            return Err(ApiError::new(
                ErrorCode::LimitExceeded,
                format!(
                    "`{principal}` already has {} WebSockets open (`max_ws_per_principal`)",
                    self.config.max_ws_per_principal
                ),
            ));
        }
        *count += 1;
        Ok(WebSocketSlot {
            open: self.websockets.clone(),
            principal: principal.to_owned(),
        })
    }

    /// Charges one request to `principal`'s request rate.
    pub fn charge_request(&self, principal: &str) -> Result<(), ApiError> {
        charge(self.rate_requests.as_ref(), principal, 1, "requests")
    }

    /// Charges a produced batch to `principal`'s message and byte rates. A
    /// batch larger than one second of quota costs one full second.
    pub fn charge_produce(
        &self,
        principal: &str,
        messages: usize,
        bytes: usize,
    ) -> Result<(), ApiError> {
        charge(self.rate_messages.as_ref(), principal, messages, "messages")?;
        charge(self.rate_bytes.as_ref(), principal, bytes, "bytes")
    }
}

fn charge(
    limiter: Option<&DefaultKeyedRateLimiter<String>>,
    principal: &str,
    amount: usize,
    what: &'static str,
) -> Result<(), ApiError> {
    let Some(limiter) = limiter else {
        return Ok(());
    };
    let Some(n) = NonZeroU32::new(u32::try_from(amount).unwrap_or(u32::MAX)) else {
        return Ok(());
    };
    let key = principal.to_owned();
    let outcome = match limiter.check_key_n(&key, n) {
        Ok(outcome) => outcome,
        // More than the bucket holds: take the whole bucket instead.
        Err(governor::InsufficientCapacity(all)) => match NonZeroU32::new(all) {
            Some(all) => limiter.check_key_n(&key, all).unwrap_or(Ok(())),
            None => Ok(()),
        },
    };
    match outcome {
        Ok(()) => Ok(()),
        Err(not_until) => {
            METRICS
                .requests_rate_limited
                .with_label_values(&[what])
                .inc();
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            Err(ApiError::new(
                ErrorCode::RateLimited,
                format!(
                    "`{principal}` is over its rate of {what} per second; retry in {seconds} s"
                ),
            )
            .retry_after(seconds.max(1)))
        }
    }
}

/// A semaphore permit that keeps a gauge in step while it is held.
#[derive(Debug)]
pub struct Gauged {
    _permit: OwnedSemaphorePermit,
    gauge: prometheus::IntGauge,
    amount: i64,
}

impl Gauged {
    fn new(permit: OwnedSemaphorePermit, gauge: &prometheus::IntGauge, amount: i64) -> Gauged {
        gauge.add(amount);
        Gauged {
            _permit: permit,
            gauge: gauge.clone(),
            amount,
        }
    }
}

impl Drop for Gauged {
    fn drop(&mut self) {
        self.gauge.sub(self.amount);
    }
}

/// One open WebSocket of a principal; closing the socket frees it.
#[derive(Debug)]
pub struct WebSocketSlot {
    open: Arc<Mutex<HashMap<String, usize>>>,
    principal: String,
}

impl Drop for WebSocketSlot {
    fn drop(&mut self) {
        let mut open = lock(&self.open);
        if let Some(count) = open.get_mut(&self.principal) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.principal);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Routes never shed: probes and scrapes must answer under load.
fn exempt(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// The middleware: one slot of `max_concurrent_requests` and the request's
/// body bytes (its `Content-Length`, or `max_request_bytes` when unknown)
/// from the global budget, held until the response is ready.
pub async fn shed(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let limits = &state.limits;
    if exempt(req.uri().path()) {
        return next.run(req).await;
    }
    let Ok(slot) = limits.requests.clone().try_acquire_owned() else {
        METRICS.requests_shed.with_label_values(&["requests"]).inc();
        return ApiError::new(
            ErrorCode::Overloaded,
            format!(
                "the server is handling {} requests (`max_concurrent_requests`); retry shortly",
                limits.config.max_concurrent_requests
            ),
        )
        .into_response();
    };
    let _slot = Gauged::new(slot, &METRICS.requests_in_flight, 1);
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let bodyless = matches!(*req.method(), Method::GET | Method::HEAD | Method::DELETE);
    let bytes = match declared {
        Some(n) => n.min(limits.max_request_bytes),
        None if bodyless => 0,
        None => limits.max_request_bytes,
    };
    let _bytes = if bytes == 0 {
        None
    } else {
        let n = u32::try_from(bytes).unwrap_or(u32::MAX);
        match limits.request_bytes.clone().try_acquire_many_owned(n) {
            Ok(permit) => Some(Gauged::new(
                permit,
                &METRICS.request_bytes_in_flight,
                i64::from(n),
            )),
            Err(_) => {
                METRICS
                    .requests_shed
                    .with_label_values(&["request_bytes"])
                    .inc();
                return ApiError::new(
                    ErrorCode::Overloaded,
                    "too many request bytes are being received (`max_inflight_request_bytes`); retry shortly",
                )
                .into_response();
            }
        }
    };
    next.run(req).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn limits(rate: Option<u32>) -> Limits {
        let mut c = crate::config::Config::defaults().unwrap().limits;
        c.max_long_polls = 1;
        c.max_ws_per_principal = 1;
        c.rate_requests = rate;
        c.rate_messages = rate;
        Limits::new(c, 1 << 20)
    }

    #[test]
    fn long_polls_and_sockets_are_bounded_and_released() {
        let l = limits(None);
        let first = l.long_poll().unwrap();
        assert_eq!(
            l.long_poll().unwrap_err().problem.code,
            ErrorCode::Overloaded
        );
        drop(first);
        assert!(l.long_poll().is_ok());
        let socket = l.websocket("a").unwrap();
        assert_eq!(
            l.websocket("a").unwrap_err().problem.code,
            ErrorCode::LimitExceeded
        );
        assert!(l.websocket("b").is_ok());
        drop(socket);
        assert!(l.websocket("a").is_ok());
    }

    #[test]
    fn rates_are_per_principal_with_retry_after() {
        let l = limits(Some(2));
        assert!(l.charge_request("a").is_ok());
        assert!(l.charge_request("a").is_ok());
        let e = l.charge_request("a").unwrap_err();
        assert_eq!(e.problem.code, ErrorCode::RateLimited);
        assert_eq!(e.retry_after, Some(1));
        assert!(l.charge_request("b").is_ok());
        // A batch above the bucket takes the whole bucket, then waits.
        assert!(l.charge_produce("c", 100, 0).is_ok());
        assert!(l.charge_produce("c", 1, 0).is_err());
        assert!(limits(None).charge_produce("c", 1_000_000, 1 << 30).is_ok());
    }
}
