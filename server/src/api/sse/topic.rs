//! `GET /v1/topics/{topic}/events`: the live tail of every partition of a
//! topic as Server-Sent Events.
//!
//! Like the WebSocket tail it keeps no server state: one cursor per
//! partition lives in the stream, messages are read once durable, woken by
//! the topic's change watch (never by polling), and each partition is read
//! in turn, a batch at a time. The stream is pulled by the connection: the
//! store is read only when the client has taken the previous events, so a
//! slow client makes its own stream lag instead of growing server memory.
//! Each event's `id` is the resume token of every partition's position
//! after it (`position.rs`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::Event;
use axum::response::Response;
use futures_util::Stream;
use serde::Deserialize;
use tokio::sync::watch;
use utoipa::IntoParams;
use weir_protocol::Message;

use super::position::{self, Source};
use super::{admit, error_event, message_event, respond, Opener, HEARTBEAT, TAG_EVENTS};
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::{ApiPath, ApiQuery};
use crate::api::openapi::Errors;
use crate::api::AppState;
use crate::broker::topic_reader::TopicReader;
use crate::broker::BrokerError;

/// Most messages read from one partition before the next one gets a turn.
const BATCH: u32 = 256;
/// How often an idle stream looks for partitions added to the topic (adding
/// one wakes no watch; data in known partitions is never polled for).
const NEW_PARTITIONS_CHECK: Duration = Duration::from_secs(5);

/// Query of a topic event stream.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TopicEventsQuery {
    /// Where every partition starts: `latest` (the default: messages
    /// produced after the response starts), `earliest` (everything
    /// stored), `timestamp:<ms>` (each partition's first message at or
    /// after it) or `offsets:<partition>=<offset>,...` (partitions not named
    /// start at their earliest). A `Last-Event-ID` header overrides it.
    #[param(example = "earliest")]
    from: Option<String>,
}

/// Stream a topic's messages as Server-Sent Events.
///
/// A `text/event-stream` of every partition's messages, in offset order
/// within each partition, each sent as soon as it is durable:
///
/// ```text
/// id: 0=43,1=7
/// event: message
/// data: {"topic":"orders","partition":0,"offset":42,"timestamp":1764300000000,"key":"customer-7","value":{"order":1},"headers":{}}
/// ```
///
/// `data` is the message as a read returns it (schema `Message`). `id` is a
/// resume token: treat it as opaque. It is currently every partition's next
/// offset, `<partition>=<offset>` joined by `,` — the list `from=offsets:`
/// takes. A request with `Last-Event-ID: <id>` (what `EventSource` sends
/// when it reconnects) resumes right after that event in every partition:
/// no gap, no duplicate; partitions the token does not name (added since)
/// start at their first message. Partitions added while the stream is open
/// are streamed from their first message, noticed within 5 s.
///
/// `: ping` comments are sent after 15 s without events. If the topic is
/// deleted the stream sends `event: error` with
/// `data: {"code":"topic_not_found","detail":...}` and ends; when the server
/// shuts down, the same with `shutting_down`. Streams count against
/// `max_ws_per_principal`.
#[utoipa::path(
    get, path = "/v1/topics/{topic}/events", tag = TAG_EVENTS,
    params(
        ("topic" = String, Path, description = "Topic name"),
        TopicEventsQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after the event with this `id` (sent by `EventSource` on reconnect); overrides `from`"),
    ),
    responses(
        (status = 200, description = "A `text/event-stream` of `message` events (data: `Message`), `: ping` heartbeats and, at the end, possibly one `error` event", content_type = "text/event-stream", body = String),
        Errors,
    )
)]
pub async fn topic_events(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(query): ApiQuery<TopicEventsQuery>,
    headers: HeaderMap,
    opener: Opener,
) -> ApiResult<Response> {
    let reader = state.broker.topic_reader(&name)?;
    let (start, source) = match last_event_id(&headers)? {
        Some(token) => (position::parse_token(&token)?, Source::LastEventId),
        None => (position::parse_from(query.from.as_deref())?, Source::From),
    };
    let slot = admit(&state, &opener)?;
    // Positions are taken before the response: whatever is produced once
    // the client sees the stream open is in it.
    let cursors = position::resolve(&reader, &start, source).await?;
    let tail = Tail::new(reader, cursors, state.shutting_down.clone());
    Ok(respond(tail.events(), slot, HEARTBEAT))
}

/// The `Last-Event-ID` header, unless absent or empty.
fn last_event_id(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::invalid("Last-Event-ID", "`Last-Event-ID` must be ASCII text"))?;
    let text = text.trim();
    Ok((!text.is_empty()).then(|| text.to_owned()))
}

/// One stream's cursors and what it read but has not sent yet.
pub(super) struct Tail {
    reader: TopicReader,
    /// Next offset to send, by partition: the resume token. Partitions
    /// added while the stream is open start at 0.
    cursors: Vec<u64>,
    /// Messages read and not yet sent, in order.
    batch: VecDeque<Message>,
    /// The partition read next, for fairness.
    turn: usize,
    changes: watch::Receiver<u64>,
    shutting_down: Arc<AtomicBool>,
    new_partitions_check: Duration,
    done: bool,
}

impl Tail {
    pub(super) fn new(
        reader: TopicReader,
        cursors: Vec<u64>,
        shutting_down: Arc<AtomicBool>,
    ) -> Tail {
        let changes = reader.topic().changes();
        Tail {
            reader,
            cursors,
            batch: VecDeque::new(),
            turn: 0,
            changes,
            shutting_down,
            new_partitions_check: NEW_PARTITIONS_CHECK,
            done: false,
        }
    }

    /// The events, produced only as the consumer of the stream asks.
    pub(super) fn events(self) -> impl Stream<Item = Event> + Send + 'static {
        futures_util::stream::unfold(self, |mut tail| async move {
            let event = tail.next_event().await?;
            Some((event, tail))
        })
    }

    /// The next event; `None` once the stream is over.
    async fn next_event(&mut self) -> Option<Event> {
        if self.done {
            return None;
        }
        loop {
            if let Some(message) = self.batch.pop_front() {
                if let Some(cursor) = self.cursors.get_mut(message.partition as usize) {
                    *cursor = message.offset + 1;
                }
                return Some(message_event(&position::token(&self.cursors), &message));
            }
            if let Some(end) = self.ending() {
                self.done = true;
                return Some(error_event(end));
            }
            // Seen before reading: a commit after this wakes the wait below.
            self.changes.borrow_and_update();
            let partitions = self.reader.topic().partitions();
            if self.cursors.len() < partitions.len() {
                self.cursors.resize(partitions.len(), 0);
            }
            let n = partitions.len();
            let readable = (0..n)
                .map(|i| (self.turn + i) % n)
                .map(|p| (p, partitions[p].committed()))
                .find(|&(p, committed)| self.cursors[p] < committed);
            let Some((p, committed)) = readable else {
                tokio::select! {
                    changed = self.changes.changed() => if changed.is_err() {
                        // The topic is gone from memory: nothing more can come.
                        self.done = true;
                        let name = self.reader.topic().name();
                        return Some(error_event(BrokerError::TopicNotFound(name)));
                    },
                    () = tokio::time::sleep(self.new_partitions_check) => {}
                }
                continue;
            };
            self.turn = (p + 1) % n;
            let page = self
                .reader
                .read_from(p as u32, self.cursors[p], BATCH)
                .await;
            match page {
                // Nothing left below `committed` (retention removed it).
                Ok(page) if page.messages.is_empty() => {
                    self.cursors[p] = page.next_offset.max(committed);
                }
                Ok(page) => self.batch.extend(page.messages),
                Err(e) => {
                    self.done = true;
                    return Some(error_event(e));
                }
            }
        }
    }

    /// Why the stream must end now, if it must.
    fn ending(&self) -> Option<BrokerError> {
        let topic = self.reader.topic();
        if topic.is_deleted() {
            Some(BrokerError::TopicNotFound(topic.name()))
        } else if self.shutting_down.load(Ordering::SeqCst) || topic.is_closing() {
            Some(BrokerError::ShuttingDown)
        } else {
            None
        }
    }
}
