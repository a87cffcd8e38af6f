//! Test doubles for socket tests without sockets: the client end of a
//! WebSocket as channels, the driver's options, and a broker over a
//! temporary store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use futures_util::{Sink, Stream};
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use weir_protocol::TopicSpec;

use super::session::{Ending, Protocol};
use super::transport;
use crate::broker::Broker;
use crate::config::WebSocketOptions;
use crate::storage::{FsyncMode, Store, StoreOptions};

/// How long a test waits for any one frame before failing.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// The transport closed on the other end.
#[derive(Debug, thiserror::Error)]
#[error("test transport closed")]
pub struct Gone;

/// Driver options with short timers suitable for tests.
pub fn options() -> WebSocketOptions {
    WebSocketOptions {
        ping_interval: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(90),
        max_message_bytes: 1 << 20,
        outbound_buffer: 64,
        outbound_buffer_bytes: 1 << 20,
        slow_consumer_timeout: Duration::from_secs(5),
        publish_max_in_flight: 4,
    }
}

/// The client end of a socket.
pub struct Client {
    pub to_server: mpsc::Sender<Result<Message, axum::Error>>,
    pub from_server: mpsc::Receiver<Message>,
}

/// A socket as channels: the server's incoming stream and outgoing sink,
/// and the client end. At most `capacity` frames wait for the client: one
/// that never receives stops accepting frames after that many. Like a
/// WebSocket, the incoming stream ends after a close frame either way (the
/// client's, or the client's answer to the server's).
pub fn socket(
    capacity: usize,
) -> (
    impl Stream<Item = Result<Message, axum::Error>> + Send,
    impl Sink<Message, Error = Gone> + Send,
    Client,
) {
    let (to_server, from_client) = mpsc::channel(16);
    let (to_client, from_server) = mpsc::channel(capacity);
    let (closed_tx, closed_rx) = watch::channel(false);
    let incoming = futures_util::stream::unfold(
        (from_client, closed_rx, false),
        |(mut rx, mut closed, done)| async move {
            if done {
                return None;
            }
            let message = tokio::select! {
                message = rx.recv() => message?,
                _ = closed.wait_for(|c| *c) => return None,
            };
            let done = matches!(message, Ok(Message::Close(_)));
            Some((message, (rx, closed, done)))
        },
    );
    let outgoing = futures_util::sink::unfold(
        (to_client, closed_tx),
        |(tx, closed), message: Message| async move {
            let is_close = matches!(message, Message::Close(_));
            tx.send(message).await.map_err(|_| Gone)?;
            if is_close {
                closed.send_replace(true);
            }
            Ok::<_, Gone>((tx, closed))
        },
    );
    (
        incoming,
        outgoing,
        Client {
            to_server,
            from_server,
        },
    )
}

/// Runs `protocol` over a channel socket in a task; returns the client end,
/// the shutdown switch and the task (which yields how the socket ended).
pub fn spawn<P: Protocol>(
    protocol: P,
    options: WebSocketOptions,
    capacity: usize,
) -> (Client, watch::Sender<bool>, tokio::task::JoinHandle<Ending>) {
    let (incoming, outgoing, client) = socket(capacity);
    let (shutdown_tx, shutdown) = watch::channel(false);
    let task = tokio::spawn(async move {
        transport::serve(protocol, incoming, outgoing, &options, shutdown).await
    });
    (client, shutdown_tx, task)
}

impl Client {
    pub async fn send_text(&self, text: &str) {
        self.to_server
            .send(Ok(Message::Text(Utf8Bytes::from(text))))
            .await
            .expect("server reads");
    }

    pub async fn send(&self, message: Message) {
        self.to_server
            .send(Ok(message))
            .await
            .expect("server reads");
    }

    /// The next frame, whatever it is (`None`: the server dropped the socket).
    pub async fn next(&mut self) -> Option<Message> {
        tokio::time::timeout(FRAME_TIMEOUT, self.from_server.recv())
            .await
            .expect("a frame within the timeout")
    }

    /// The next text frame as JSON, skipping pings.
    pub async fn json(&mut self) -> Value {
        loop {
            match self.next().await {
                Some(Message::Text(text)) => return serde_json::from_str(text.as_str()).unwrap(),
                Some(Message::Ping(_)) => {}
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// The next binary frame, skipping pings.
    pub async fn binary(&mut self) -> Vec<u8> {
        loop {
            match self.next().await {
                Some(Message::Binary(bytes)) => return bytes.to_vec(),
                Some(Message::Ping(_)) => {}
                other => panic!("expected a binary frame, got {other:?}"),
            }
        }
    }

    /// Skips frames until the close frame, which it returns.
    pub async fn close_frame(&mut self) -> CloseFrame {
        loop {
            match self.next().await {
                Some(Message::Close(Some(frame))) => return frame,
                Some(Message::Close(None)) => panic!("close frame without a code"),
                None => panic!("socket dropped without a close frame"),
                Some(_) => {}
            }
        }
    }
}

/// A broker over a temporary store, with one topic.
pub struct TestBroker {
    pub broker: Arc<Broker>,
    _dir: tempfile::TempDir,
}

pub async fn broker_with_topic(topic: &str, partitions: u32) -> TestBroker {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        fsync: FsyncMode::Never,
        ..StoreOptions::default()
    };
    let store = Store::open(dir.path(), &options).unwrap();
    let broker = Broker::open(store, Default::default()).unwrap();
    let spec = TopicSpec {
        partitions: Some(partitions),
        ..TopicSpec::default()
    };
    broker.put_topic(topic, &spec, 1).await.unwrap();
    TestBroker { broker, _dir: dir }
}
