//! The socket driver: runs one [`Protocol`] over any WebSocket-shaped
//! stream and sink of axum [`Message`]s (a real socket, or channels in
//! tests).
//!
//! Owns everything that is the same for every kind of socket: reading client
//! frames (text goes to the protocol; binary, oversize and invalid frames
//! close the socket with the matching code), pings and the idle timeout, the
//! bounded outbound queue and slow-consumer disconnects, closing with 1001 at
//! shutdown, the close handshake, and the connection gauge. Knows nothing of
//! topics or frames' contents.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{close_code, Message};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::{timeout, Instant, MissedTickBehavior};

use super::session::{Close, Ending, InFrame, Inbound, OutFrame, Outbox, Protocol, Queued, Stop};
use crate::config::WebSocketOptions;
use crate::metrics::METRICS;

/// How long the close handshake may take once the socket is closing.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Client frames read ahead of the protocol: beyond this the server stops
/// reading the socket (backpressure on the client).
const INBOUND_QUEUE: usize = 8;

/// Runs `protocol` over one socket until it closes; returns how it ended.
pub async fn serve<P, R, W, E>(
    protocol: P,
    incoming: R,
    outgoing: W,
    options: &WebSocketOptions,
    shutdown: watch::Receiver<bool>,
) -> Ending
where
    P: Protocol,
    R: Stream<Item = Result<Message, E>> + Send,
    W: Sink<Message> + Send,
    E: std::error::Error + Send + Sync + 'static,
{
    let _gauge = OpenSocket::count(P::KIND);
    // Fused: the close handshake below reads on after the reader may have
    // seen the end of the stream.
    let mut incoming = std::pin::pin!(incoming.fuse());
    let outgoing = std::pin::pin!(outgoing);
    let (ending_tx, ending_rx) = watch::channel(None);
    let (queue_tx, queue_rx) = mpsc::channel(options.outbound_buffer);
    let budget = std::sync::Arc::new(Semaphore::new(options.outbound_buffer_bytes));
    let (frames_tx, frames_rx) = mpsc::channel(INBOUND_QUEUE);
    let inbound = Inbound { frames: frames_rx };
    let outbox = Outbox {
        queue: queue_tx,
        budget: budget.clone(),
        budget_bytes: options.outbound_buffer_bytes,
        ending: ending_rx.clone(),
    };
    let run_protocol = async {
        // `run` owns the outbox: once it returns, the writer drains the
        // queue and closes.
        match protocol.run(inbound, outbox).await {
            Ok(()) | Err(Stop::Closed) => {}
            Err(Stop::Close(close)) => {
                decide(&ending_tx, Ending::Close(close));
            }
        }
    };
    tokio::join!(
        read(
            incoming.as_mut(),
            frames_tx,
            P::ACCEPTS_BINARY,
            &ending_tx,
            shutdown,
            options
        ),
        write(outgoing, queue_rx, budget, &ending_tx, options),
        run_protocol,
    );
    // Let the client answer our close frame (or finish its own close) so the
    // connection ends with a handshake rather than a reset.
    let _ = timeout(CLOSE_TIMEOUT, async {
        while let Some(Ok(_)) = incoming.next().await {}
    })
    .await;
    let ending = ending_rx.borrow().clone().unwrap_or(Ending::PeerLeft);
    tracing::debug!(kind = P::KIND, ?ending, "websocket closed");
    ending
}

/// Records how the socket ends, unless that is already decided. Returns
/// whether this call decided it.
fn decide(ending: &watch::Sender<Option<Ending>>, verdict: Ending) -> bool {
    ending.send_if_modified(|current| {
        if current.is_some() {
            return false;
        }
        *current = Some(verdict);
        true
    })
}

/// Reads client frames until the socket is closing, handing text frames to
/// the protocol. Dropping `frames` on return ends the protocol's inbound.
async fn read<R, E>(
    mut incoming: R,
    frames: mpsc::Sender<InFrame>,
    accepts_binary: bool,
    ending: &watch::Sender<Option<Ending>>,
    mut shutdown: watch::Receiver<bool>,
    options: &WebSocketOptions,
) where
    R: Stream<Item = Result<Message, E>> + Unpin,
    E: std::error::Error + 'static,
{
    let mut decided = ending.subscribe();
    let going_away = || Ending::Close(Close::new(close_code::AWAY, "server shutting down"));
    let verdict = loop {
        // `wait_for` also returns when the sender is gone: the server is.
        let next = tokio::select! {
            biased;
            _ = decided.wait_for(Option::is_some) => break None,
            _ = shutdown.wait_for(|stop| *stop) => break Some(going_away()),
            next = timeout(options.idle_timeout, incoming.next()) => next,
        };
        let message = match next {
            Err(_) => break Some(Ending::Close(Close::normal("idle timeout"))),
            Ok(None) => break Some(Ending::PeerLeft),
            Ok(Some(Err(e))) => break Some(read_failure(&e, options)),
            Ok(Some(Ok(message))) => message,
        };
        match message {
            Message::Text(text) => tokio::select! {
                biased;
                _ = decided.wait_for(Option::is_some) => break None,
                _ = shutdown.wait_for(|stop| *stop) => break Some(going_away()),
                sent = frames.send(InFrame::Text(text)) => if sent.is_err() { break None },
            },
            Message::Binary(bytes) if accepts_binary => tokio::select! {
                biased;
                _ = decided.wait_for(Option::is_some) => break None,
                _ = shutdown.wait_for(|stop| *stop) => break Some(going_away()),
                sent = frames.send(InFrame::Binary(bytes)) => if sent.is_err() { break None },
            },
            Message::Binary(_) => {
                break Some(Ending::Close(Close::new(
                    close_code::UNSUPPORTED,
                    "binary frames are not supported: send JSON text frames",
                )))
            }
            // The WebSocket library answers pings itself; a pong only
            // proves the client is alive, which resetting the idle
            // timeout above already recorded.
            Message::Ping(_) | Message::Pong(_) => {}
            Message::Close(_) => break Some(Ending::PeerLeft),
        }
    };
    if let Some(verdict) = verdict {
        decide(ending, verdict);
    }
}

/// Maps a read error to how the socket ends: limits and malformed frames
/// get a close code, a vanished client gets nothing.
fn read_failure(error: &(dyn std::error::Error + 'static), options: &WebSocketOptions) -> Ending {
    use tungstenite::error::{Error as WsError, ProtocolError};
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(ws) = e.downcast_ref::<WsError>() {
            return match ws {
                WsError::Capacity(_) => Ending::Close(Close::new(
                    close_code::SIZE,
                    format!(
                        "message exceeds `ws_max_message_bytes` ({} bytes)",
                        options.max_message_bytes
                    ),
                )),
                WsError::Utf8(_) => Ending::Close(Close::new(
                    close_code::INVALID,
                    "text frame is not valid UTF-8",
                )),
                WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => Ending::PeerLeft,
                WsError::Protocol(_) => Ending::Close(Close::new(
                    close_code::PROTOCOL,
                    "websocket protocol violation",
                )),
                _ => Ending::PeerLeft,
            };
        }
        cause = e.source();
    }
    Ending::PeerLeft
}

/// Why the writer stopped.
enum WriteEnd {
    /// The protocol is done and every queued frame was written.
    Drained,
    /// The client accepted no frame for `slow_consumer_timeout`.
    Slow,
    /// The connection failed.
    Broken,
}

/// Writes queued frames and pings, then the close frame.
async fn write<W>(
    mut outgoing: W,
    mut queue: mpsc::Receiver<Queued>,
    budget: std::sync::Arc<Semaphore>,
    ending: &watch::Sender<Option<Ending>>,
    options: &WebSocketOptions,
) where
    W: Sink<Message> + Unpin,
{
    let slow = options.slow_consumer_timeout;
    let mut ping = tokio::time::interval_at(
        Instant::now() + options.ping_interval,
        options.ping_interval,
    );
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let end = loop {
        let written = tokio::select! {
            biased;
            _ = ping.tick() => within(slow, outgoing.send(Message::Ping(Bytes::new()))).await,
            queued = queue.recv() => match queued {
                None => break WriteEnd::Drained,
                Some(Queued { frame, budget: permit }) => {
                    let message = match frame {
                        OutFrame::Text(text) => Message::Text(text),
                        OutFrame::Binary(bytes) => Message::Binary(bytes),
                    };
                    let fed = within(slow, outgoing.feed(message)).await;
                    // The frame is in the sink's own bounded buffer now (or
                    // lost): it no longer counts against the byte budget.
                    drop(permit);
                    // Flush once the queue is momentarily empty: a burst of
                    // frames shares one write.
                    match fed {
                        Ok(()) if queue.is_empty() => within(slow, outgoing.flush()).await,
                        other => other,
                    }
                }
            },
        };
        if let Err(end) = written {
            break end;
        }
    };
    // Nothing queued will be written now: fail the protocol's next send.
    budget.close();
    queue.close();
    match end {
        WriteEnd::Drained => {
            decide(ending, Ending::Close(Close::normal("")));
        }
        WriteEnd::Slow => {
            let reason = format!(
                "slow consumer: no frame accepted for {} ms",
                slow.as_millis()
            );
            if decide(
                ending,
                Ending::Close(Close::new(close_code::POLICY, reason)),
            ) {
                METRICS.websocket_slow_disconnects.inc();
                tracing::warn!("websocket client too slow: disconnected");
            }
        }
        WriteEnd::Broken => {
            decide(ending, Ending::PeerLeft);
        }
    }
    drop(queue);
    let close = ending.borrow().clone();
    if let Some(Ending::Close(close)) = close {
        // Best effort: a client that stopped reading never sees it.
        let _ = timeout(
            CLOSE_TIMEOUT,
            outgoing.send(Message::Close(Some(close.frame()))),
        )
        .await;
    }
}

/// Runs one sink operation, bounded by the slow-consumer timeout.
async fn within<E>(
    limit: Duration,
    op: impl std::future::Future<Output = Result<(), E>>,
) -> Result<(), WriteEnd> {
    match timeout(limit, op).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(WriteEnd::Broken),
        Err(_) => Err(WriteEnd::Slow),
    }
}

/// `weir_websocket_connections{kind}` while a socket is open.
struct OpenSocket(&'static str);

impl OpenSocket {
    fn count(kind: &'static str) -> Self {
        METRICS
            .websocket_connections
            .with_label_values(&[kind])
            .inc();
        OpenSocket(kind)
    }
}

impl Drop for OpenSocket {
    fn drop(&mut self) {
        METRICS
            .websocket_connections
            .with_label_values(&[self.0])
            .dec();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use axum::extract::ws::CloseFrame;
    use tungstenite::error::{CapacityError, Error as WsError};

    use super::super::session::Inbound;
    use super::super::testing::{options, spawn};
    use super::*;

    /// Answers every text frame with that text as a JSON string.
    struct Echo;

    impl Protocol for Echo {
        const KIND: &'static str = "test";

        async fn run(self, mut inbound: Inbound, outbox: Outbox) -> Result<(), Stop> {
            while let Some(text) = inbound.recv().await {
                outbox.send(&text.as_str()).await?;
            }
            Ok(())
        }
    }

    /// Sends frames as fast as the outbox takes them, counting them.
    struct Flood(Arc<AtomicUsize>);

    impl Protocol for Flood {
        const KIND: &'static str = "test";

        async fn run(self, _inbound: Inbound, outbox: Outbox) -> Result<(), Stop> {
            loop {
                outbox.send(&"x".repeat(100)).await?;
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    fn close_of(ending: &Ending) -> (u16, String) {
        match ending {
            Ending::Close(close) => (close.code, close.reason.to_string()),
            Ending::PeerLeft => panic!("expected a close, the peer left"),
        }
    }

    fn assert_close(frame: &CloseFrame, code: u16, reason_part: &str) {
        assert_eq!(frame.code, code, "close code; reason {:?}", frame.reason);
        assert!(
            frame.reason.as_str().contains(reason_part),
            "close reason {:?} lacks {reason_part:?}",
            frame.reason
        );
    }

    #[tokio::test]
    async fn text_goes_to_the_protocol_and_binary_closes_with_1003() {
        let (mut client, _shutdown, task) = spawn(Echo, options(), 16);
        client.send_text("hello").await;
        assert_eq!(client.json().await, "hello");
        client
            .send(Message::Binary(Bytes::from_static(b"\x00")))
            .await;
        let frame = client.close_frame().await;
        assert_close(&frame, close_code::UNSUPPORTED, "binary");
        assert_eq!(close_of(&task.await.unwrap()).0, close_code::UNSUPPORTED);
    }

    #[tokio::test]
    async fn oversize_message_closes_with_1009() {
        let (mut client, _shutdown, task) = spawn(Echo, options(), 16);
        let too_long = WsError::Capacity(CapacityError::MessageTooLong {
            size: 2 << 20,
            max_size: 1 << 20,
        });
        client
            .to_server
            .send(Err(axum::Error::new(too_long)))
            .await
            .unwrap();
        let frame = client.close_frame().await;
        assert_close(&frame, close_code::SIZE, "ws_max_message_bytes");
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_client_that_closes_ends_the_protocol_without_a_close_from_us() {
        let (mut client, _shutdown, task) = spawn(Echo, options(), 16);
        client.send(Message::Close(None)).await;
        assert_eq!(task.await.unwrap(), Ending::PeerLeft);
        // The server sends nothing more, no close of its own: answering the
        // client's close is the WebSocket library's job.
        assert!(client.next().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_reading_is_disconnected_and_memory_stays_bounded() {
        let slow_before = METRICS.websocket_slow_disconnects.get();
        let sent = Arc::new(AtomicUsize::new(0));
        let mut opts = options();
        opts.outbound_buffer = 8;
        opts.slow_consumer_timeout = Duration::from_secs(1);
        // The client takes 4 frames into its receive buffer, then never reads.
        let (client, _shutdown, task) = spawn(Flood(sent.clone()), opts, 4);
        let ending = timeout(Duration::from_secs(60), task)
            .await
            .expect("slow client disconnected in bounded time")
            .unwrap();
        let (code, reason) = close_of(&ending);
        assert_eq!(code, close_code::POLICY);
        assert!(reason.contains("slow consumer"), "{reason}");
        // The client's 4, one inside the sink, one in the writer's hands, 8
        // queued: nothing more was produced while the client did not read.
        let produced = sent.load(Ordering::SeqCst);
        assert!(produced <= 4 + 1 + 1 + 8, "{produced} frames produced");
        assert!(METRICS.websocket_slow_disconnects.get() > slow_before);
        drop(client);
    }

    #[tokio::test(start_paused = true)]
    async fn the_byte_budget_bounds_the_queue_too() {
        let sent = Arc::new(AtomicUsize::new(0));
        let mut opts = options();
        opts.outbound_buffer = 1000;
        // Each frame is 102 bytes of JSON: 10 fit in the budget.
        opts.outbound_buffer_bytes = 1024;
        opts.slow_consumer_timeout = Duration::from_secs(1);
        let (client, _shutdown, task) = spawn(Flood(sent.clone()), opts, 4);
        timeout(Duration::from_secs(60), task)
            .await
            .unwrap()
            .unwrap();
        let produced = sent.load(Ordering::SeqCst);
        assert!(produced <= 4 + 1 + 1 + 10, "{produced} frames produced");
        drop(client);
    }

    #[tokio::test(start_paused = true)]
    async fn quiet_sockets_are_pinged_and_closed_only_when_nothing_arrives() {
        let mut opts = options();
        opts.ping_interval = Duration::from_secs(1);
        opts.idle_timeout = Duration::from_secs(3);
        let (mut client, _shutdown, task) = spawn(Echo, opts, 16);
        // Answering pings keeps the socket open well past the idle timeout.
        for _ in 0..10 {
            match client.next().await {
                Some(Message::Ping(payload)) => client.send(Message::Pong(payload)).await,
                other => panic!("expected a ping, got {other:?}"),
            }
        }
        // Then silence: pings keep coming, and the socket closes.
        let frame = client.close_frame().await;
        assert_close(&frame, close_code::NORMAL, "idle timeout");
        task.await.unwrap();
    }

    #[tokio::test]
    async fn shutdown_closes_with_1001_and_sockets_closed_completes() {
        let sockets = super::super::Sockets::new(options());
        let (incoming, outgoing, mut client) = super::super::testing::socket(16);
        let shutdown = sockets.shutdown.subscribe();
        let opts = options();
        let task =
            tokio::spawn(async move { serve(Echo, incoming, outgoing, &opts, shutdown).await });
        client.send_text("before").await;
        assert_eq!(client.json().await, "before");
        sockets.shutdown();
        let frame = client.close_frame().await;
        assert_close(&frame, close_code::AWAY, "shutting down");
        timeout(Duration::from_secs(10), sockets.closed())
            .await
            .expect("every socket closed");
        assert_eq!(close_of(&task.await.unwrap()).0, close_code::AWAY);
    }

    #[tokio::test]
    async fn connections_are_counted_while_open() {
        let gauge = || {
            METRICS
                .websocket_connections
                .with_label_values(&["gauge-test"])
                .get()
        };
        struct Counted;
        impl Protocol for Counted {
            const KIND: &'static str = "gauge-test";
            async fn run(self, inbound: Inbound, outbox: Outbox) -> Result<(), Stop> {
                Echo.run(inbound, outbox).await
            }
        }
        let (mut client, _shutdown, task) = spawn(Counted, options(), 16);
        client.send_text("x").await;
        assert_eq!(client.json().await, "x"); // the socket is being served
        assert_eq!(gauge(), 1);
        drop(client);
        task.await.unwrap();
        assert_eq!(gauge(), 0);
    }
}
