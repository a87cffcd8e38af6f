//! The session of a [`WsSubscription`](crate::WsSubscription): one socket
//! after another on the same stream. When a socket ends for a reason worth
//! reconnecting (a transient failure, a socket gone silent, the server's
//! idle close), the session forgets the messages that socket held, waits
//! a jittered backoff (at least the server's `Retry-After`), opens a new
//! one and grants it the unused credit; the stream just goes on. Any
//! other end — a deleted subscription, a refused reconnect, too many
//! attempts — reaches the stream as its last item.
//!
//! Owns the reconnect policy only; the sockets are `connection.rs`'s.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use weir_protocol::ReceivedMessage;

use super::connect::{self, Socket};
use super::connection::{Connection, CreditLink, DecodeBinary, Push, Tagged};
use super::frames;
use super::subscription::{borrowed, Current, Reconnect, Shared};
use crate::{Client, Error};

/// The reconnect loop's state.
pub(crate) struct Session {
    pub client: Client,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub reconnect: Option<Reconnect>,
    pub shared: Arc<Shared>,
    pub tx: mpsc::Sender<Tagged<ReceivedMessage>>,
    /// For sockets that ask for binary delivery frames.
    pub binary: Option<DecodeBinary<ReceivedMessage>>,
}

impl Session {
    /// Runs the session on its first, already open, socket.
    pub fn start(self, socket: Socket) -> JoinHandle<()> {
        let generation = self.shared.credit.generation();
        let connection = self.attach(socket, generation);
        tokio::spawn(self.run(connection))
    }

    /// Starts socket `generation` and makes it the current one.
    fn attach(&self, socket: Socket, generation: u64) -> Arc<Connection> {
        let push = Push::Credited {
            tx: self.tx.clone(),
            generation,
        };
        let credit = CreditLink {
            credit: self.shared.credit.clone(),
            generation,
        };
        let keepalive = self.client.keepalive();
        let connection = Connection::start(
            socket,
            frames::decode,
            self.binary.clone(),
            push,
            Some(credit),
            keepalive,
        );
        let connection = Arc::new(connection);
        self.shared.set_current(Current::Open(connection.clone()));
        connection
    }

    async fn run(self, mut connection: Arc<Connection>) {
        let mut closing = self.shared.close.subscribe();
        let end = loop {
            let ended = tokio::select! {
                ended = connection.ended() => Some(ended),
                closed = closing.wait_for(|close| *close) => {
                    drop(closed);
                    None
                }
            };
            let Some(ended) = ended else {
                connection.close().await;
                break closed_here();
            };
            self.shared.set_current(Current::Reconnecting);
            // From here on, what the dead socket pushed is stale, and the
            // leases it held are gone with it.
            let generation = self.shared.credit.retire();
            self.shared.in_hand.clear();
            let closed = *closing.borrow();
            if closed {
                break closed_here();
            }
            let policy = self.reconnect.filter(|_| worth_reconnecting(&ended.reason));
            let Some(policy) = policy else {
                if !ended.reported {
                    let _ = self.tx.send((generation, Err(ended.reason.clone()))).await;
                }
                break ended.reason;
            };
            match self.reopen(&policy, ended.reason, &mut closing).await {
                Ok(Some(socket)) => {
                    self.shared.credit.reconnected();
                    self.shared.reconnects.fetch_add(1, Ordering::Relaxed);
                    connection = self.attach(socket, generation);
                }
                Ok(None) => break closed_here(),
                Err(e) => {
                    let _ = self.tx.send((generation, Err(e.clone()))).await;
                    break e;
                }
            }
        };
        // Later settles fail with the reason the stream ended.
        self.shared.set_current(Current::Ended(end));
    }

    /// Opens a new socket after `last` ended the previous one: `Ok(None)`
    /// when the stream was closed meanwhile, `Err` when it is time to give
    /// up.
    async fn reopen(
        &self,
        policy: &Reconnect,
        mut last: Error,
        closing: &mut watch::Receiver<bool>,
    ) -> Result<Option<Socket>, Error> {
        let query = borrowed(&self.query);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            if policy.max_attempts.is_some_and(|most| attempt > most) {
                return Err(last);
            }
            let pause = policy.backoff.delay_after(attempt, &last);
            let opened = tokio::select! {
                closed = closing.wait_for(|close| *close) => {
                    drop(closed);
                    return Ok(None);
                }
                opened = async {
                    tokio::time::sleep(pause).await;
                    connect::open(&self.client, &self.path, &query).await
                } => opened,
            };
            match opened {
                Ok(socket) => return Ok(Some(socket)),
                Err(e) if worth_reconnecting(&e) => last = e,
                Err(e) => return Err(e),
            }
        }
    }
}

fn closed_here() -> Error {
    Error::SocketClosed {
        code: None,
        reason: "closed by the client".into(),
    }
}

/// Transient failures, and a plain close with 1000: a subscription socket
/// gets that only when the server found it idle (a deleted subscription
/// sends its error frame first, which is the reason then).
fn worth_reconnecting(reason: &Error) -> bool {
    reason.is_transient()
        || matches!(
            reason,
            Error::SocketClosed {
                code: Some(1000),
                ..
            }
        )
}

#[cfg(test)]
mod tests {
    use weir_protocol::{ErrorCode, Problem};

    use super::*;

    #[test]
    fn only_failures_that_may_pass_are_worth_a_reconnect() {
        let closed = |code| Error::SocketClosed {
            code,
            reason: "x".into(),
        };
        for code in [None, Some(1000), Some(1001), Some(1011), Some(1013)] {
            assert!(worth_reconnecting(&closed(code)), "{code:?}");
        }
        assert!(!worth_reconnecting(&closed(Some(1008))));
        let gone = Error::Api(Problem::new(ErrorCode::SubscriptionNotFound, "deleted"));
        assert!(!worth_reconnecting(&gone));
        let busy = Error::Api(Problem::new(ErrorCode::Overloaded, "later"));
        assert!(worth_reconnecting(&busy));
        assert!(!worth_reconnecting(&Error::Api(Problem::new(
            ErrorCode::Unauthorized,
            "token expired"
        ))));
    }
}
