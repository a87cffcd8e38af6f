//! `GET /v1/topics/{topic}/ws`: a live tail of every partition of a topic.
//!
//! Keeps no server state: a cursor per partition lives in the socket. It
//! pushes each message as soon as it is durable, woken by the partitions'
//! committed high watermarks (the watch that long-poll reads use), never by
//! polling. It reads only as fast as the outbox drains, so a slow client
//! makes its own tail lag instead of growing server memory.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{State, WebSocketUpgrade};
use axum::response::Response;
use serde::Deserialize;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use utoipa::IntoParams;
use weir_protocol::ws::TailFrame;
use weir_protocol::ErrorCode;

use super::session::{Close, Inbound, Outbox, Protocol, Stop};
use super::{error_parts, upgrade, WsClient, TAG_WEBSOCKET};
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::{ApiPath, ApiQuery};
use crate::api::openapi::Errors;
use crate::api::AppState;
use crate::broker::topic::Partition;
use crate::broker::topic_reader::TopicReader;
use crate::broker::BrokerError;

/// Most messages read from one partition before the others get a turn.
const BATCH: u32 = 256;
/// How often an idle tail looks for partitions added to the topic (adding
/// one wakes no watch; data in known partitions is never polled for).
const NEW_PARTITIONS_CHECK: Duration = Duration::from_secs(5);

/// Query of a tail.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TailQuery {
    /// Where every partition's tail starts: `latest` (the default: messages
    /// produced after the socket opened), `earliest` (everything stored),
    /// or a timestamp in milliseconds (the first message at or after it).
    #[param(example = "earliest")]
    from: Option<String>,
}

/// A parsed `from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    Latest,
    Earliest,
    Timestamp(u64),
}

fn parse_from(text: Option<&str>) -> ApiResult<Start> {
    match text {
        None | Some("latest") => Ok(Start::Latest),
        Some("earliest") => Ok(Start::Earliest),
        Some(t) => t.parse().map(Start::Timestamp).map_err(|_| {
            ApiError::invalid(
                "from",
                "`from` must be `latest`, `earliest` or a timestamp in milliseconds",
            )
        }),
    }
}

/// Tail a topic: every partition, live.
///
/// Upgrades to a WebSocket on which the server pushes
/// `{"type":"message", ...message...}` text frames (schema `TailFrame`): the
/// message shape of a read, with no `ack_id`, in offset order within each
/// partition, as soon as each message is durable. Nothing is stored for the
/// tail. The client sends nothing (any text frame is answered with an
/// `invalid_request` error frame). When the topic is deleted the server
/// sends a `topic_not_found` error frame and closes with 1000.
#[utoipa::path(
    get, path = "/v1/topics/{topic}/ws", tag = TAG_WEBSOCKET,
    params(("topic" = String, Path, description = "Topic name"), TailQuery),
    responses(
        (status = 101, description = "Switching Protocols: the socket carries `TailFrame` text frames"),
        Errors,
    )
)]
pub async fn tail(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(query): ApiQuery<TailQuery>,
    client: WsClient,
    socket: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let reader = state.broker.topic_reader(&name)?;
    let from = parse_from(query.from.as_deref())?;
    let socket = upgrade(&state, client, socket)?;
    // Positions are taken before the 101: whatever is produced once the
    // client sees the socket open is in the tail.
    let cursors = start(&reader, from).await?;
    let tail = Tail::new(reader, cursors);
    Ok(state.sockets.accept(socket, tail))
}

/// The first offset to send in each partition.
async fn start(reader: &TopicReader, from: Start) -> Result<Vec<u64>, BrokerError> {
    let mut cursors = Vec::new();
    for partition in reader.topic().partitions() {
        cursors.push(match from {
            Start::Latest => partition.committed(),
            Start::Earliest => partition.low(),
            Start::Timestamp(t) => reader.offset_at(&partition, t).await?,
        });
    }
    Ok(cursors)
}

/// The tail protocol: one cursor per partition.
pub struct Tail {
    reader: TopicReader,
    /// Next offset to send, by partition. Partitions added while the socket
    /// is open start at 0: all of their messages are new.
    cursors: Vec<u64>,
    new_partitions_check: Duration,
}

impl Protocol for Tail {
    const KIND: &'static str = "tail";

    async fn run(mut self, mut inbound: Inbound, outbox: Outbox) -> Result<(), Stop> {
        let wake = Arc::new(Notify::new());
        // Aborted on drop: they live exactly as long as the socket.
        let mut watchers = JoinSet::new();
        let mut partitions: Vec<Arc<Partition>> = Vec::new();
        loop {
            // Watch first, then read: a message committed in between wakes
            // the next wait, so none is missed.
            let known = partitions.len();
            for partition in self.reader.topic().partitions().into_iter().skip(known) {
                let mut committed = partition.watch();
                let wake = wake.clone();
                watchers.spawn(async move {
                    while committed.changed().await.is_ok() {
                        wake.notify_one();
                    }
                });
                partitions.push(partition);
            }
            self.cursors.resize(partitions.len(), 0);
            if self.push_available(&partitions, &outbox).await? {
                continue;
            }
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(self.new_partitions_check) => {}
                frame = inbound.recv() => match frame {
                    None => return Ok(()),
                    Some(_) => {
                        outbox
                            .send(&TailFrame::Error {
                                code: ErrorCode::InvalidRequest,
                                detail: "a tail socket takes no frames from the client".into(),
                            })
                            .await?;
                    }
                },
            }
        }
    }
}

impl Tail {
    fn new(reader: TopicReader, cursors: Vec<u64>) -> Self {
        Tail {
            reader,
            cursors,
            new_partitions_check: NEW_PARTITIONS_CHECK,
        }
    }

    /// Sends up to one batch per partition of what is durable beyond the
    /// cursors. Returns whether some partition has more.
    async fn push_available(
        &mut self,
        partitions: &[Arc<Partition>],
        outbox: &Outbox,
    ) -> Result<bool, Stop> {
        let topic = self.reader.topic();
        if topic.is_deleted() {
            return Err(fail(BrokerError::TopicNotFound(topic.name()), outbox).await);
        }
        let mut more = false;
        for (id, partition) in (0u32..).zip(partitions) {
            let Some(cursor) = self.cursors.get_mut(id as usize) else {
                break;
            };
            if *cursor >= partition.committed() {
                continue;
            }
            let page = match self.reader.read_from(id, *cursor, BATCH).await {
                Ok(page) => page,
                Err(e) => return Err(fail(e, outbox).await),
            };
            *cursor = page.next_offset;
            more |= page.next_offset < partition.committed();
            for message in page.messages {
                if outbox.is_closing() {
                    return Err(Stop::Closed);
                }
                outbox.send(&TailFrame::Message(message)).await?;
            }
        }
        Ok(more)
    }
}

/// Tells the client why the tail ends, then ends it.
async fn fail(error: BrokerError, outbox: &Outbox) -> Stop {
    let (code, detail) = error_parts(error);
    let reason = match code {
        ErrorCode::TopicNotFound => "topic deleted".to_owned(),
        _ => detail.clone(),
    };
    let close = Close::for_error(code, reason);
    match outbox.send(&TailFrame::Error { code, detail }).await {
        Ok(()) => Stop::Close(close),
        Err(stop) => stop,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use serde_json::{json, Value};
    use weir_protocol::{ProduceMessage, TopicSpec};

    use super::super::testing::{broker_with_topic, options, spawn, Client, TestBroker};
    use super::*;

    async fn open(t: &TestBroker, from: Start) -> Tail {
        let reader = t.broker.topic_reader("t").unwrap();
        let cursors = start(&reader, from).await.unwrap();
        Tail::new(reader, cursors)
    }

    /// Produces `values` to `partition` at time `now`.
    async fn produce(t: &TestBroker, partition: u32, values: std::ops::Range<u64>, now: u64) {
        let messages = values
            .map(|v| ProduceMessage {
                value: Some(serde_json::value::to_raw_value(&v).unwrap()),
                partition: Some(partition),
                ..ProduceMessage::default()
            })
            .collect();
        t.broker.produce("t", messages, now).await.unwrap();
    }

    /// The next `n` message frames as (partition, offset, value).
    async fn messages(client: &mut Client, n: usize) -> Vec<(u64, u64, Value)> {
        let mut out = Vec::new();
        for _ in 0..n {
            let frame = client.json().await;
            assert_eq!(frame["type"], "message", "{frame}");
            assert_eq!(frame["topic"], "t", "{frame}");
            assert!(frame.get("ack_id").is_none(), "{frame}");
            out.push((
                frame["partition"].as_u64().unwrap(),
                frame["offset"].as_u64().unwrap(),
                frame["value"].clone(),
            ));
        }
        out
    }

    fn of_partition(frames: &[(u64, u64, Value)], partition: u64) -> Vec<(u64, Value)> {
        frames
            .iter()
            .filter(|f| f.0 == partition)
            .map(|f| (f.1, f.2.clone()))
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn from_latest_pushes_only_new_messages_as_they_become_durable() {
        let t = broker_with_topic("t", 2).await;
        produce(&t, 0, 0..3, 1000).await;
        let (mut client, _shutdown, task) = spawn(open(&t, Start::Latest).await, options(), 64);
        produce(&t, 0, 3..6, 1000).await;
        produce(&t, 1, 100..103, 1000).await;
        let frames = messages(&mut client, 6).await;
        assert_eq!(
            of_partition(&frames, 0),
            vec![(3, json!(3)), (4, json!(4)), (5, json!(5))]
        );
        assert_eq!(
            of_partition(&frames, 1),
            vec![(0, json!(100)), (1, json!(101)), (2, json!(102))]
        );
        // And it keeps following.
        produce(&t, 1, 103..104, 1000).await;
        assert_eq!(messages(&mut client, 1).await, vec![(1, 3, json!(103))]);
        drop(client);
        task.await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn from_earliest_replays_history_in_order_then_follows() {
        let t = broker_with_topic("t", 2).await;
        // More than one batch in one partition.
        produce(&t, 0, 0..600, 1000).await;
        produce(&t, 1, 0..5, 1000).await;
        let (mut client, _shutdown, task) = spawn(open(&t, Start::Earliest).await, options(), 64);
        let frames = messages(&mut client, 605).await;
        let p0 = of_partition(&frames, 0);
        assert_eq!(p0.len(), 600);
        assert!(p0
            .iter()
            .zip(0u64..)
            .all(|((o, v), i)| *o == i && *v == json!(i)));
        assert_eq!(of_partition(&frames, 1).len(), 5);
        produce(&t, 1, 5..6, 1000).await;
        assert_eq!(messages(&mut client, 1).await, vec![(1, 5, json!(5))]);
        drop(client);
        task.await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn from_a_timestamp_starts_at_the_first_message_at_or_after_it() {
        let t = broker_with_topic("t", 1).await;
        produce(&t, 0, 0..3, 1000).await;
        produce(&t, 0, 3..5, 2000).await;
        let (mut client, _shutdown, task) =
            spawn(open(&t, Start::Timestamp(1500)).await, options(), 64);
        assert_eq!(
            messages(&mut client, 2).await,
            vec![(0, 3, json!(3)), (0, 4, json!(4))]
        );
        // Nothing older follows: the next frame is the next message.
        produce(&t, 0, 5..6, 3000).await;
        assert_eq!(messages(&mut client, 1).await, vec![(0, 5, json!(5))]);
        drop(client);
        task.await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn client_frames_get_an_error_frame_and_the_tail_goes_on() {
        let t = broker_with_topic("t", 1).await;
        let (mut client, _shutdown, task) = spawn(open(&t, Start::Latest).await, options(), 64);
        client.send_text(r#"{"type":"credit","messages":1}"#).await;
        let frame = client.json().await;
        assert_eq!(frame["type"], "error", "{frame}");
        assert_eq!(frame["code"], "invalid_request", "{frame}");
        produce(&t, 0, 7..8, 1000).await;
        assert_eq!(messages(&mut client, 1).await, vec![(0, 0, json!(7))]);
        drop(client);
        task.await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deleting_the_topic_ends_the_tail_with_an_error_frame() {
        let t = broker_with_topic("t", 1).await;
        let (mut client, _shutdown, task) = spawn(open(&t, Start::Latest).await, options(), 64);
        t.broker.delete_topic("t").await.unwrap();
        let frame = client.json().await;
        assert_eq!(frame["type"], "error", "{frame}");
        assert_eq!(frame["code"], "topic_not_found", "{frame}");
        let close = client.close_frame().await;
        assert_eq!(close.code, axum::extract::ws::close_code::NORMAL);
        assert_eq!(close.reason.as_str(), "topic deleted");
        task.await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn partitions_added_while_open_are_tailed_from_their_start() {
        let t = broker_with_topic("t", 1).await;
        let mut tail = open(&t, Start::Latest).await;
        tail.new_partitions_check = Duration::from_millis(20);
        let (mut client, _shutdown, task) = spawn(tail, options(), 64);
        let grow = TopicSpec {
            partitions: Some(3),
            ..TopicSpec::default()
        };
        t.broker.put_topic("t", &grow, 1).await.unwrap();
        produce(&t, 2, 40..42, 1000).await;
        assert_eq!(
            messages(&mut client, 2).await,
            vec![(2, 0, json!(40)), (2, 1, json!(41))]
        );
        drop(client);
        task.await.unwrap();
    }
}
