//! One open socket, driven by two tasks: a reader that dispatches every
//! server frame (pushed messages to a bounded channel — from JSON text
//! frames, or from binary frames on sockets that asked for them — and
//! answers to their waiting request by `request_id`) and a writer that
//! owns the write half (request frames from a queue — JSON text, or binary
//! publish frames — credit as it is owed, pings, the close frame).
//!
//! Keepalive: the writer pings every `ping_interval`, and the reader takes
//! a socket that delivered nothing at all — no frame, no pong, no ping of
//! the server's — for `idle_timeout` as dead, so a half-open connection
//! ends (transiently) instead of stalling its stream forever.
//!
//! Callers hold a [`Connection`]: they send requests through it, close it,
//! and learn how it [`Ended`]. The socket ends for everyone at once:
//! waiting requests fail with the reason, and a tail's stream gets it as
//! its last item (a subscription's session decides instead: it may
//! reconnect).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;
use tokio::time::{interval_at, timeout, Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::connect::Socket;
use super::credit::SharedCredit;
use super::frames::{self, Incoming, Reply};
use super::requests::{answer, Requests};
use super::Keepalive;
use crate::Error;

/// How long each step of closing may take: our close frame going out, and
/// the server's close frame coming back.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Client frames queued for the writer; beyond it, senders wait.
const OUTGOING_QUEUE: usize = 64;

/// Reads a text frame of this kind of socket.
pub(crate) type Decode<T> = fn(&str) -> Result<Incoming<T>, Error>;

/// Reads a binary frame of a socket that asked for them: the items it
/// pushes (a run of a subscription's deliveries).
pub(crate) type DecodeBinary<T> = Arc<dyn Fn(&[u8]) -> Result<Vec<T>, Error> + Send + Sync>;

/// A pushed item of a subscription socket, with its socket's generation.
pub(crate) type Tagged<T> = (u64, Result<T, Error>);

/// Where pushed messages (and errors about the socket) go.
pub(crate) enum Push<T> {
    /// Nowhere: a publish socket pushes nothing.
    Nothing,
    /// A subscription's channel, shared by the sockets of its session,
    /// each item tagged with this socket's `generation`. The socket is
    /// read on when the channel is full: the rest waits in a queue that
    /// only credit granted by the consumer can fill, so answers and pings
    /// are never held up behind messages. At the end nothing more is
    /// pushed (the session decides what the end means) and queued
    /// messages are dropped: their leases ended with the socket.
    Credited {
        tx: mpsc::Sender<Tagged<T>>,
        generation: u64,
    },
    /// A bounded channel; when it is full the socket is not read, so the
    /// server's backpressure applies (a tail, which has no credit). The
    /// reason the socket ended is the last item.
    Backpressure(mpsc::Sender<Result<T, Error>>),
}

/// The credit a subscription socket sends: the session's, for this
/// socket's generation.
pub(crate) struct CreditLink {
    pub credit: Arc<SharedCredit>,
    pub generation: u64,
}

/// How a socket ended.
#[derive(Debug, Clone)]
pub(crate) struct Ended {
    /// Why (what waiting requests failed with).
    pub reason: Error,
    /// The reason already reached the stream (an error frame about the
    /// socket preceded the close), or this side closed.
    pub reported: bool,
}

/// The caller's side of an open socket.
#[derive(Debug)]
pub(crate) struct Connection {
    frames: mpsc::Sender<WsMessage>,
    requests: Arc<Requests>,
    close: watch::Sender<bool>,
    ended: watch::Receiver<Option<Ended>>,
}

impl Connection {
    /// Starts the reader and writer tasks on `socket`.
    pub fn start<T: Send + 'static>(
        socket: Socket,
        decode: Decode<T>,
        binary: Option<DecodeBinary<T>>,
        push: Push<T>,
        credit: Option<CreditLink>,
        keepalive: Keepalive,
    ) -> Connection {
        let (sink, stream) = socket.split();
        let requests = Arc::new(Requests::new());
        let (close, close_rx) = watch::channel(false);
        let (ended_tx, ended) = watch::channel(None);
        let (frames, frames_rx) = mpsc::channel(OUTGOING_QUEUE);
        let reader = Reader {
            decode,
            binary,
            outlet: Outlet {
                push,
                queued: VecDeque::new(),
            },
            requests: requests.clone(),
            close: close_rx.clone(),
            ended: ended_tx,
            idle_timeout: keepalive.idle_timeout,
        };
        let reader = tokio::spawn(reader.run(stream));
        let writer = Writer {
            frames: frames_rx,
            credit,
            close: close_rx,
            ended: ended.clone(),
            reader: reader.abort_handle(),
            requests: requests.clone(),
            ping_interval: keepalive.ping_interval,
        };
        tokio::spawn(writer.run(sink));
        Connection {
            frames,
            requests,
            close,
            ended,
        }
    }

    /// Sends the frame `frame(request_id)` (text, or binary bytes) with a
    /// fresh request id and waits for the server's answer to it.
    pub async fn request<F: Into<WsMessage>>(
        &self,
        frame: impl FnOnce(String) -> Result<F, Error>,
    ) -> Result<Reply, Error> {
        let pending = self.requests.register()?;
        // Forgets the id however this call ends (answered: a no-op).
        let _registered = Registered {
            requests: &self.requests,
            id: pending.id.clone(),
        };
        let frame = frame(pending.id.clone())?.into();
        if self.frames.send(frame).await.is_err() {
            return Err(self.requests.end_reason());
        }
        answer(&self.requests, pending).await
    }

    /// Starts the close handshake (once; later calls do nothing).
    pub fn start_close(&self) {
        self.close.send_replace(true);
    }

    /// Closes and waits, bounded, until the server has closed its side.
    pub async fn close(&self) {
        self.start_close();
        let mut ended = self.ended.clone();
        let _ = timeout(CLOSE_TIMEOUT * 2, ended.wait_for(Option::is_some)).await;
    }

    /// Waits until the socket has ended, and says how.
    pub async fn ended(&self) -> Ended {
        let mut ended = self.ended.clone();
        let outcome = match ended.wait_for(Option::is_some).await {
            Ok(ended) => ended.clone(),
            // The reader is gone without saying: it was aborted.
            Err(_) => None,
        };
        outcome.unwrap_or_else(|| Ended {
            reason: self.requests.end_reason(),
            reported: false,
        })
    }
}

/// Forgets a request id when its call ends, answered or not.
struct Registered<'a> {
    requests: &'a Requests,
    id: String,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.requests.cancel(&self.id);
    }
}

/// Hands pushed items to the consumer.
struct Outlet<T> {
    push: Push<T>,
    /// Items read while a [`Push::Credited`] channel was full.
    queued: VecDeque<Result<T, Error>>,
}

impl<T> Outlet<T> {
    async fn deliver(&mut self, item: Result<T, Error>) {
        match &self.push {
            Push::Nothing => {}
            Push::Backpressure(tx) => {
                // A receiver that is gone wants nothing more.
                let _ = tx.send(item).await;
            }
            Push::Credited { tx, generation } if self.queued.is_empty() => {
                if let Err(mpsc::error::TrySendError::Full((_, item))) =
                    tx.try_send((*generation, item))
                {
                    self.queued.push_back(item);
                }
            }
            Push::Credited { .. } => self.queued.push_back(item),
        }
    }

    /// Moves one queued item into the channel once it has room.
    async fn drain_one(&mut self) {
        let Push::Credited { tx, generation } = &self.push else {
            return;
        };
        match tx.reserve().await {
            Ok(permit) => {
                if let Some(item) = self.queued.pop_front() {
                    permit.send((*generation, item));
                }
            }
            Err(_) => self.queued.clear(),
        }
    }

    /// At the end, waiting for room: for a tail, everything queued, then
    /// the final item; for a subscription, only queued errors (one may be
    /// why the socket ended), not the messages (see [`Push`]).
    async fn finish(self, last: Option<Result<T, Error>>) {
        match self.push {
            Push::Nothing => {}
            Push::Backpressure(tx) => {
                for item in self.queued.into_iter().chain(last) {
                    if tx.send(item).await.is_err() {
                        return;
                    }
                }
            }
            Push::Credited { tx, generation } => {
                for item in self.queued.into_iter().filter(Result::is_err) {
                    if tx.send((generation, item)).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// The reader task's state.
struct Reader<T> {
    decode: Decode<T>,
    /// Binary frames are ignored without.
    binary: Option<DecodeBinary<T>>,
    outlet: Outlet<T>,
    requests: Arc<Requests>,
    close: watch::Receiver<bool>,
    ended: watch::Sender<Option<Ended>>,
    idle_timeout: Duration,
}

impl<T> Reader<T> {
    async fn run(mut self, mut stream: SplitStream<Socket>) {
        // The server's close frame, once seen: (code, reason).
        let mut closed: Option<(Option<u16>, String)> = None;
        let mut broken: Option<Error> = None;
        // An error frame about the socket, while it is the latest frame:
        // a fatal one is followed by the close, and is the reason for it.
        let mut last_error: Option<Error> = None;
        let idle = tokio::time::sleep(self.idle_timeout);
        tokio::pin!(idle);
        loop {
            // Counted from the last frame handled, not read: time spent
            // waiting for a full channel is this side's, not the server's.
            idle.as_mut().reset(Instant::now() + self.idle_timeout);
            let next = loop {
                tokio::select! {
                    biased;
                    () = self.outlet.drain_one(), if !self.outlet.queued.is_empty() => {}
                    () = &mut idle => break Err(()),
                    next = stream.next() => break Ok(next),
                }
            };
            let Ok(next) = next else {
                broken = Some(idle_timeout(self.idle_timeout));
                break;
            };
            let text = match next {
                None => break,
                Some(Err(e)) => {
                    broken = Some(Error::WebSocket(Arc::new(e)));
                    break;
                }
                Some(Ok(WsMessage::Text(text))) => text,
                Some(Ok(WsMessage::Binary(bytes))) => {
                    if let Some(decode) = &self.binary {
                        match decode(&bytes) {
                            Ok(items) => {
                                last_error = None;
                                for item in items {
                                    self.outlet.deliver(Ok(item)).await;
                                }
                            }
                            Err(e) => self.outlet.deliver(Err(e)).await,
                        }
                    }
                    continue;
                }
                Some(Ok(WsMessage::Close(frame))) => {
                    // The library answers it; the stream ends after that.
                    closed = Some(match frame {
                        Some(f) => (Some(u16::from(f.code)), f.reason.to_string()),
                        None => (None, String::new()),
                    });
                    continue;
                }
                // Pings are answered by the library; pongs answer ours:
                // either way the connection is alive.
                Some(Ok(_)) => continue,
            };
            match (self.decode)(text.as_str()) {
                Ok(Incoming::Message(message)) => {
                    last_error = None;
                    self.outlet.deliver(Ok(message)).await;
                }
                Ok(Incoming::Answer {
                    request_id: Some(id),
                    answer,
                }) => {
                    last_error = None;
                    self.requests.resolve(&id, answer);
                }
                Ok(Incoming::Answer {
                    request_id: None,
                    answer: Err(e),
                }) => {
                    last_error = Some(e.clone());
                    self.outlet.deliver(Err(e)).await;
                }
                // Every request carries an id; an answer without is stray.
                Ok(Incoming::Answer {
                    request_id: None,
                    answer: Ok(_),
                }) => {}
                Err(e) => self.outlet.deliver(Err(e)).await,
            }
        }
        let by_us = *self.close.borrow();
        let (reason, last) = end_reason(by_us, closed, broken, last_error);
        self.requests.end(reason.clone());
        self.ended.send_replace(Some(Ended {
            reason,
            reported: last.is_none(),
        }));
        self.outlet.finish(last.map(Err)).await;
    }
}

/// The reason a socket that went silent is given up.
fn idle_timeout(after: Duration) -> Error {
    Error::SocketClosed {
        code: None,
        reason: format!("nothing received for {after:?} (idle timeout): the connection is gone"),
    }
}

/// Why the socket ended (for waiting requests), and the stream's last item
/// (none when this side closed, or when the reason was already pushed).
fn end_reason(
    by_us: bool,
    closed: Option<(Option<u16>, String)>,
    broken: Option<Error>,
    last_error: Option<Error>,
) -> (Error, Option<Error>) {
    let (code, said) = closed.clone().unwrap_or((None, String::new()));
    if by_us {
        let reason = Error::SocketClosed {
            code,
            reason: "closed by the client".into(),
        };
        return (reason, None);
    }
    if let Some(fatal) = last_error {
        return (fatal, None);
    }
    let reason = match (closed, broken) {
        (Some(_), _) => Error::SocketClosed {
            code,
            reason: if said.is_empty() {
                "closed by the server".into()
            } else {
                said
            },
        },
        (None, Some(broken)) => broken,
        (None, None) => Error::SocketClosed {
            code: None,
            reason: "connection lost".into(),
        },
    };
    (reason.clone(), Some(reason))
}

/// The writer task's state.
struct Writer {
    frames: mpsc::Receiver<WsMessage>,
    credit: Option<CreditLink>,
    close: watch::Receiver<bool>,
    ended: watch::Receiver<Option<Ended>>,
    reader: AbortHandle,
    requests: Arc<Requests>,
    ping_interval: Duration,
}

impl Writer {
    async fn run(mut self, mut sink: SplitSink<Socket, WsMessage>) {
        let every = self.ping_interval.max(Duration::from_millis(10));
        let mut ping = interval_at(Instant::now() + every, every);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let message = tokio::select! {
                biased;
                // The socket is gone: nothing to write or close.
                _ = self.ended.wait_for(Option::is_some) => return,
                // Asked to close (or every handle is gone).
                _ = self.close.wait_for(|close| *close) => break,
                messages = owed(self.credit.as_ref()) => match frames::credit(messages) {
                    Ok(text) => WsMessage::text(text),
                    Err(_) => continue,
                },
                _ = ping.tick() => WsMessage::Ping(Default::default()),
                frame = self.frames.recv() => match frame {
                    Some(frame) => frame,
                    None => break,
                },
            };
            // Flushed once the queue is momentarily empty: a burst of
            // pipelined requests shares one write.
            let mut written = sink.feed(message).await;
            if written.is_ok() && self.frames.is_empty() {
                written = sink.flush().await;
            }
            if written.is_err() {
                // The reader sees the broken connection and ends the rest.
                return;
            }
        }
        // Requests already queued go out first: the server answers what it
        // read before our close frame.
        while let Ok(frame) = self.frames.try_recv() {
            if sink.feed(frame).await.is_err() {
                return;
            }
        }
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        let _ = timeout(CLOSE_TIMEOUT, sink.send(WsMessage::Close(Some(frame)))).await;
        if timeout(CLOSE_TIMEOUT, self.ended.wait_for(Option::is_some))
            .await
            .is_err()
        {
            // The server never closed its side: stop waiting for it.
            self.reader.abort();
            self.requests.end(Error::SocketClosed {
                code: None,
                reason: "the server did not complete the close handshake".into(),
            });
        }
    }
}

/// Credit owed to the server, when this socket has credit.
async fn owed(credit: Option<&CreditLink>) -> u32 {
    match credit {
        Some(link) => link.credit.owed(link.generation).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use weir_protocol::{ErrorCode, Problem};

    use super::*;

    #[test]
    fn a_close_by_the_server_is_the_streams_last_item() {
        let (reason, last) = end_reason(
            false,
            Some((Some(1001), "server shutting down".into())),
            None,
            None,
        );
        assert!(matches!(
            reason,
            Error::SocketClosed {
                code: Some(1001),
                ..
            }
        ));
        assert!(last.unwrap().is_transient());
    }

    #[test]
    fn a_fatal_error_frame_is_the_reason_and_is_not_repeated() {
        let gone = Error::Api(Problem::new(ErrorCode::SubscriptionNotFound, "deleted"));
        let (reason, last) = end_reason(false, Some((Some(1000), "x".into())), None, Some(gone));
        assert_eq!(reason.code(), Some(ErrorCode::SubscriptionNotFound));
        assert!(last.is_none(), "already pushed");
    }

    #[test]
    fn closing_on_this_side_ends_the_stream_quietly() {
        let (reason, last) = end_reason(true, Some((Some(1000), String::new())), None, None);
        assert!(matches!(reason, Error::SocketClosed { .. }));
        assert!(last.is_none());
        let (lost, last) = end_reason(false, None, None, None);
        assert!(lost.is_transient());
        assert!(last.is_some());
    }
}
