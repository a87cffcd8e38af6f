//! Requests waiting for their answer on one socket, by `request_id`.
//!
//! The caller registers before its frame is written (an answer can never
//! arrive for an id nobody waits for yet), the reader task resolves by the
//! id the server echoes, and when the socket ends every waiter gets the
//! reason. Owns no I/O.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

use super::frames::Reply;
use crate::Error;

type Waiter = oneshot::Sender<Result<Reply, Error>>;

/// The open requests of one socket.
#[derive(Debug)]
pub(crate) struct Requests {
    next_id: AtomicU64,
    /// `None` once the socket has ended.
    waiting: Mutex<Option<HashMap<String, Waiter>>>,
    /// Why the socket ended, for late callers.
    ended: Mutex<Option<Error>>,
}

/// A registered request: its fresh id and where its answer arrives.
pub(crate) struct Pending {
    pub id: String,
    pub answer: oneshot::Receiver<Result<Reply, Error>>,
}

impl Requests {
    pub fn new() -> Self {
        Requests {
            next_id: AtomicU64::new(1),
            waiting: Mutex::new(Some(HashMap::new())),
            ended: Mutex::new(None),
        }
    }

    /// A fresh request id, registered; fails once the socket has ended.
    pub fn register(&self) -> Result<Pending, Error> {
        let id = format!("r{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        match lock(&self.waiting).as_mut() {
            Some(waiting) => {
                waiting.insert(id.clone(), tx);
                Ok(Pending { id, answer: rx })
            }
            None => Err(self.end_reason()),
        }
    }

    /// Forgets a request whose frame could not be sent.
    pub fn cancel(&self, id: &str) {
        if let Some(waiting) = lock(&self.waiting).as_mut() {
            waiting.remove(id);
        }
    }

    /// Hands `answer` to the request `id`; false when nobody waits for it
    /// (unknown id, or the caller gave up).
    pub fn resolve(&self, id: &str, answer: Result<Reply, Error>) -> bool {
        let waiter = lock(&self.waiting).as_mut().and_then(|w| w.remove(id));
        waiter.is_some_and(|w| w.send(answer).is_ok())
    }

    /// The socket ended: every waiting request, and every later one, fails
    /// with `reason`.
    pub fn end(&self, reason: Error) {
        lock(&self.ended).get_or_insert(reason.clone());
        let waiting = lock(&self.waiting).take();
        for (_, waiter) in waiting.into_iter().flatten() {
            let _ = waiter.send(Err(reason.clone()));
        }
    }

    /// Why the socket ended (a generic reason if it has not).
    pub fn end_reason(&self) -> Error {
        lock(&self.ended)
            .clone()
            .unwrap_or_else(|| Error::SocketClosed {
                code: None,
                reason: "the socket is closed".into(),
            })
    }

    /// Requests waiting now.
    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        lock(&self.waiting).as_ref().map_or(0, HashMap::len)
    }
}

/// A poisoned lock only means a panic elsewhere; the map is still valid.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Waits for the answer of a registered request.
pub(crate) async fn answer(requests: &Requests, pending: Pending) -> Result<Reply, Error> {
    match pending.answer.await {
        Ok(answer) => answer,
        // The waiter was dropped without an answer: the socket ended.
        Err(_) => Err(requests.end_reason()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use weir_protocol::{AckResponse, ErrorCode, Problem};

    use super::super::frames::SettleKind;
    use super::*;

    #[tokio::test]
    async fn answers_go_to_their_request_and_the_end_fails_the_rest() {
        let requests = Requests::new();
        let a = requests.register().unwrap();
        let b = requests.register().unwrap();
        assert_ne!(a.id, b.id);
        let response = AckResponse {
            acked: 1,
            unknown: vec![],
        };
        assert!(requests.resolve(&b.id, Ok(Reply::Settled(SettleKind::Ack, response))));
        assert!(!requests.resolve(&b.id, Err(Error::ProducerClosed)), "once");
        assert!(!requests.resolve("r999", Err(Error::ProducerClosed)));
        assert!(matches!(
            answer(&requests, b).await,
            Ok(Reply::Settled(SettleKind::Ack, _))
        ));
        let gone = Error::Api(Problem::new(ErrorCode::SubscriptionNotFound, "deleted"));
        requests.end(gone);
        let failed = answer(&requests, a).await.unwrap_err();
        assert_eq!(failed.code(), Some(ErrorCode::SubscriptionNotFound));
        let late = requests.register().err().unwrap();
        assert_eq!(late.code(), Some(ErrorCode::SubscriptionNotFound));
        assert_eq!(requests.waiting(), 0);
    }

    #[test]
    fn a_cancelled_request_is_forgotten() {
        let requests = Requests::new();
        let a = requests.register().unwrap();
        requests.cancel(&a.id);
        assert_eq!(requests.waiting(), 0);
    }
}
