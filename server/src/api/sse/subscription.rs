//! `GET /v1/topics/{topic}/subscriptions/{sub}/events`: a subscription's
//! deliveries as Server-Sent Events.
//!
//! Each event is a delivery leased exactly as by `POST .../pull` (streams,
//! sockets and HTTP pullers of a queue subscription compete for messages);
//! the client settles it with the HTTP `ack`, `nack` and `extend` calls.
//! At most `max_in_flight` deliveries of one stream are unsettled at a
//! time: the stream pulls only as many as it has room for, and finds room
//! again when its deliveries are acked, nacked or expire (it asks the
//! subscription which are still outstanding; acks wake no watch, so while
//! the stream is full it looks again after 10 ms, backing off to 250 ms).
//! When the stream ends — the client went away, the server shuts down —
//! its leases are released under the retry policy (counted as
//! `disconnect` redeliveries), as when a WebSocket closes.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::Event;
use axum::response::Response;
use futures_util::Stream;
use serde::Deserialize;
use tokio::task::JoinHandle;
use utoipa::IntoParams;
use weir_protocol::ReceivedMessage;

use super::{admit, error_event, message_event, respond, Opener, HEARTBEAT, TAG_EVENTS};
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::{ApiPath, ApiQuery};
use crate::api::openapi::Errors;
use crate::api::AppState;
use crate::broker::subscription::ack_id::AckId;
use crate::broker::subscription::{PullParams, Subscription, MAX_PULL_MESSAGES};
use crate::broker::{check_name, BrokerError};

/// Default and largest `max_in_flight`.
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 10;
pub const MAX_MAX_IN_FLIGHT: u32 = 1000;
/// How long one delivery long poll waits before it is restarted.
const DELIVERY_WAIT_MS: u64 = 5_000;
/// While the stream is full, how soon it looks for settled deliveries
/// again: the first time, and at most (doubling in between).
const ROOM_CHECK_FIRST: Duration = Duration::from_millis(10);
const ROOM_CHECK_MAX: Duration = Duration::from_millis(250);

/// Lease holder ids of event streams: the upper half of the `u64` range,
/// so they never meet the WebSocket holders' ids (counted from 1).
static NEXT_HOLDER: AtomicU64 = AtomicU64::new(1 << 63);

/// Query of a subscription event stream.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionEventsQuery {
    /// Most deliveries of this stream unsettled at once, 1–1000 (default
    /// 10): beyond it the stream sends nothing until one is acked, nacked
    /// or expires.
    #[param(minimum = 1, maximum = 1000, example = 10)]
    max_in_flight: Option<u32>,
    /// Consumer name (stream mode: partitions are owned per consumer).
    #[param(example = "worker-3")]
    consumer: Option<String>,
}

/// Consume a subscription as Server-Sent Events.
///
/// A `text/event-stream` of deliveries, each leased as by `POST .../pull`:
///
/// ```text
/// id: AAAAAQAAAAAAAAAAAAAAKgx8V3pQm1Yd
/// event: message
/// data: {"topic":"orders","partition":0,"offset":42,...,"ack_id":"AAAAAQAAAAAAAAAAAAAAKgx8V3pQm1Yd","attempt":1}
/// ```
///
/// `data` is a pulled message (schema `ReceivedMessage`), `id` its ack id.
/// Settle deliveries with `POST .../ack`, `.../nack` and `.../extend`. At
/// most `max_in_flight` deliveries of the stream are unsettled at once.
/// `Last-Event-ID` is ignored: the subscription keeps the position, and the
/// leases of a stream that ends are released for redelivery under the
/// retry policy. A paused subscription sends nothing. `: ping` comments are
/// sent after 15 s without events. If the subscription is deleted the
/// stream sends `event: error` with `data: {"code":"subscription_not_found",...}`
/// and ends; when the server shuts down, the same with `shutting_down`.
/// Streams count against `max_ws_per_principal`.
#[utoipa::path(
    get, path = "/v1/topics/{topic}/subscriptions/{sub}/events", tag = TAG_EVENTS,
    params(
        ("topic" = String, Path, description = "Topic name"),
        ("sub" = String, Path, description = "Subscription name"),
        SubscriptionEventsQuery,
    ),
    responses(
        (status = 200, description = "A `text/event-stream` of `message` events (data: `ReceivedMessage`, id: its ack id), `: ping` heartbeats and, at the end, possibly one `error` event", content_type = "text/event-stream", body = String),
        Errors,
    )
)]
pub async fn subscription_events(
    State(state): State<AppState>,
    ApiPath((topic, sub)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<SubscriptionEventsQuery>,
    opener: Opener,
) -> ApiResult<Response> {
    let subscription = state.broker.subscription(&topic, &sub)?;
    let max_in_flight = query.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT);
    if !(1..=MAX_MAX_IN_FLIGHT).contains(&max_in_flight) {
        return Err(ApiError::invalid(
            "max_in_flight",
            format!("`max_in_flight` must be between 1 and {MAX_MAX_IN_FLIGHT}"),
        ));
    }
    if let Some(consumer) = &query.consumer {
        check_name("consumer", consumer)?;
    }
    let slot = admit(&state, &opener)?;
    let deliveries = Deliveries::new(
        subscription,
        query.consumer,
        max_in_flight as usize,
        state.shutting_down.clone(),
    );
    Ok(respond(deliveries.events(), slot, HEARTBEAT))
}

type Pull = JoinHandle<Result<Vec<ReceivedMessage>, BrokerError>>;

/// One stream's leases: what it pulled and may still be unsettled.
pub(super) struct Deliveries {
    subscription: Arc<Subscription>,
    consumer: Option<String>,
    holder: u64,
    max_in_flight: usize,
    /// Deliveries pulled by this stream that may still be unsettled.
    unsettled: Vec<AckId>,
    /// Pulled and not yet sent, in order.
    ready: VecDeque<ReceivedMessage>,
    /// The pull running, if any (it leases to `holder`).
    pull: Option<Pull>,
    shutting_down: Arc<AtomicBool>,
    done: bool,
}

impl Deliveries {
    pub(super) fn new(
        subscription: Arc<Subscription>,
        consumer: Option<String>,
        max_in_flight: usize,
        shutting_down: Arc<AtomicBool>,
    ) -> Deliveries {
        Deliveries {
            subscription,
            consumer,
            holder: NEXT_HOLDER.fetch_add(1, Ordering::Relaxed),
            max_in_flight,
            unsettled: Vec::new(),
            ready: VecDeque::new(),
            pull: None,
            shutting_down,
            done: false,
        }
    }

    /// The events, produced only as the consumer of the stream asks.
    pub(super) fn events(self) -> impl Stream<Item = Event> + Send + 'static {
        futures_util::stream::unfold(self, |mut deliveries| async move {
            let event = deliveries.next_event().await?;
            Some((event, deliveries))
        })
    }

    /// The next event; `None` once the stream is over.
    async fn next_event(&mut self) -> Option<Event> {
        if self.done {
            return None;
        }
        let mut room_check = ROOM_CHECK_FIRST;
        loop {
            if let Some(message) = self.ready.pop_front() {
                return Some(message_event(&message.ack_id.clone(), &message));
            }
            if let Some(end) = self.ending() {
                self.done = true;
                return Some(error_event(end));
            }
            let room = self.room().await;
            if room == 0 {
                tokio::time::sleep(room_check).await;
                room_check = (room_check * 2).min(ROOM_CHECK_MAX);
                continue;
            }
            room_check = ROOM_CHECK_FIRST;
            let subscription = self.subscription.clone();
            let params = PullParams {
                max_messages: room.min(MAX_PULL_MESSAGES as usize),
                wait_ms: DELIVERY_WAIT_MS,
                consumer: self.consumer.clone(),
                holder: Some(self.holder),
            };
            // Spawned, and kept: a stream dropped mid-pull stops it before
            // releasing what it leased (see `Drop`).
            let pull = self
                .pull
                .insert(tokio::spawn(async move { subscription.pull(params).await }));
            let pulled = pull.await;
            self.pull = None;
            match pulled {
                Ok(Ok(messages)) => {
                    self.unsettled
                        .extend(messages.iter().filter_map(|m| AckId::decode(&m.ack_id)));
                    self.ready.extend(messages);
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Some(error_event(e));
                }
                Err(e) => {
                    self.done = true;
                    return Some(error_event(e.into()));
                }
            }
        }
    }

    /// How many more deliveries the stream may take: `max_in_flight` less
    /// those still unsettled (which it forgets once settled).
    async fn room(&mut self) -> usize {
        if !self.unsettled.is_empty() {
            let outstanding = self.subscription.outstanding(&self.unsettled).await;
            let mut still = outstanding.into_iter();
            self.unsettled.retain(|_| still.next().unwrap_or(false));
        }
        self.max_in_flight.saturating_sub(self.unsettled.len())
    }

    /// Why the stream must end now, if it must.
    fn ending(&self) -> Option<BrokerError> {
        let topic = self.subscription.topic();
        if topic.is_deleted() {
            Some(BrokerError::TopicNotFound(topic.name()))
        } else if self.subscription.is_deleted() {
            Some(BrokerError::SubscriptionNotFound {
                topic: topic.name(),
                sub: self.subscription.name(),
            })
        } else if self.shutting_down.load(Ordering::SeqCst) || topic.is_closing() {
            Some(BrokerError::ShuttingDown)
        } else {
            None
        }
    }
}

impl Drop for Deliveries {
    /// Gives the stream's leases back: stops a pull still running
    /// (whatever it leased already carries this stream's holder id), then
    /// releases everything the stream holds.
    fn drop(&mut self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let subscription = self.subscription.clone();
        let holder = self.holder;
        let consumer = self.consumer.take();
        let pull = self.pull.take();
        runtime.spawn(async move {
            if let Some(pull) = pull {
                pull.abort();
                let _ = pull.await;
            }
            if let Err(e) = subscription
                .release_holder(holder, consumer.as_deref())
                .await
            {
                tracing::warn!(error = %e, "releasing a closed event stream's leases failed");
            }
        });
    }
}
