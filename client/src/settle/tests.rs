//! The settling task and the keeper against an in-memory subscription,
//! with a paused clock: which ids share a request, what `unknown` ids and
//! transient failures become, and when leases are renewed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use futures_util::future::join_all;
use tokio::sync::Notify;
use tokio::time::{sleep, Instant};
use weir_protocol::{ErrorCode, Problem};

use super::*;

#[derive(Default)]
struct State {
    /// Every request: kind and ids.
    requests: Vec<(Kind, Vec<String>)>,
    /// When each extend request was sent.
    extended_at: Vec<Duration>,
    /// Ids the server does not know.
    unknown: HashSet<String>,
    /// Failures for the next requests.
    failures: VecDeque<Error>,
}

#[derive(Clone, Default)]
struct Fake {
    state: Arc<Mutex<State>>,
    /// While set, requests wait for `release`: lets ids pile up.
    hold: Arc<Mutex<bool>>,
    release: Arc<Notify>,
    started: Option<Instant>,
}

impl Fake {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    async fn answer(&self, kind: Kind, ack_ids: Vec<String>) -> Result<AckResponse, Error> {
        if *self.hold.lock().unwrap() {
            self.release.notified().await;
        }
        let mut state = self.state();
        if let (Kind::Extend(_), Some(t0)) = (&kind, self.started) {
            state.extended_at.push(t0.elapsed());
        }
        state.requests.push((kind, ack_ids.clone()));
        if let Some(e) = state.failures.pop_front() {
            return Err(e);
        }
        let unknown: Vec<String> = ack_ids
            .iter()
            .filter(|id| state.unknown.contains(*id))
            .cloned()
            .collect();
        Ok(AckResponse {
            acked: (ack_ids.len() - unknown.len()) as u64,
            unknown,
        })
    }
}

impl SettleApi for Fake {
    async fn ack(&self, ack_ids: Vec<String>) -> Result<AckResponse, Error> {
        self.answer(Kind::Ack, ack_ids).await
    }

    async fn nack(&self, ack_ids: Vec<String>, nack: &Nack) -> Result<AckResponse, Error> {
        self.answer(Kind::Nack(nack.clone()), ack_ids).await
    }

    async fn extend(
        &self,
        ack_ids: Vec<String>,
        lease: Option<Duration>,
    ) -> Result<AckResponse, Error> {
        self.answer(Kind::Extend(lease), ack_ids).await
    }
}

#[tokio::test(start_paused = true)]
async fn ids_queued_behind_a_request_share_the_next_one() {
    let fake = Fake::default();
    *fake.hold.lock().unwrap() = true;
    let settler = Settler::spawn(fake.clone());
    // The first ack goes alone; the nine behind it wait and leave together.
    let first = tokio::spawn({
        let settler = settler.clone();
        async move { settler.submit(Kind::Ack, "a0".into()).await }
    });
    sleep(Duration::from_millis(1)).await;
    let rest = (1..10).map(|i| settler.submit(Kind::Ack, format!("a{i}")));
    let nack = settler.submit(Kind::Nack(Nack::dead_letter()), "n".into());
    let release = async {
        sleep(Duration::from_millis(5)).await;
        *fake.hold.lock().unwrap() = false;
        fake.release.notify_waiters();
    };
    let (rest, nacked, ()) = tokio::join!(join_all(rest), nack, release);
    assert!(first.await.unwrap().is_ok());
    assert!(rest.iter().all(Result::is_ok));
    assert!(nacked.is_ok());
    let requests = fake.state().requests.clone();
    let acks: Vec<usize> = requests
        .iter()
        .filter(|(k, _)| *k == Kind::Ack)
        .map(|(_, ids)| ids.len())
        .collect();
    assert_eq!(acks, vec![1, 9], "{requests:?}");
    assert!(requests.contains(&(Kind::Nack(Nack::dead_letter()), vec!["n".into()])));
}

#[tokio::test(start_paused = true)]
async fn unknown_ids_are_lost_leases_and_transient_failures_are_retried() {
    let fake = Fake::default();
    fake.state().unknown.insert("gone".into());
    let busy = Error::Api(Problem::new(ErrorCode::Unavailable, "stall"));
    fake.state().failures.push_back(busy);
    let settler = Settler::spawn(fake.clone());
    let (kept, gone) = tokio::join!(
        settler.submit(Kind::Ack, "kept".into()),
        settler.submit(Kind::Ack, "gone".into())
    );
    assert!(kept.is_ok());
    assert!(matches!(gone, Err(Error::LeaseLost { ack_id }) if ack_id == "gone"));
    let requests = fake.state().requests.len();
    assert!(requests >= 2, "the failed request was sent again");

    let denied = Error::Api(Problem::new(ErrorCode::Forbidden, "no"));
    fake.state().failures.push_back(denied);
    let refused = settler.submit(Kind::Ack, "x".into()).await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::Forbidden));
}

#[tokio::test(start_paused = true)]
async fn the_keeper_renews_held_leases_in_one_request_per_period() {
    let fake = Fake {
        started: Some(Instant::now()),
        ..Fake::default()
    };
    let settler = Settler::spawn(fake.clone());
    let in_hand = Arc::new(InHand::new());
    in_hand.hold("a".into(), 10);
    in_hand.hold("b".into(), 20);
    assert_eq!(in_hand.totals(), (2, 30));
    let renewal = Renewal {
        every: Duration::from_secs(10),
        lease: Some(Duration::from_secs(30)),
        max_extension: Duration::from_secs(25),
    };
    let keeper = spawn_keeper(in_hand.clone(), settler, renewal);
    sleep(Duration::from_secs(15)).await;
    {
        let state = fake.state();
        assert_eq!(state.requests.len(), 1, "{:?}", state.requests);
        let (kind, mut ids) = state.requests[0].clone();
        ids.sort();
        assert_eq!(
            (kind, ids),
            (Kind::Extend(renewal.lease), vec!["a".into(), "b".into()])
        );
    }
    // `b` is settled; `a`'s lease turns out lost at the second renewal.
    assert!(in_hand.release("b"));
    fake.state().unknown.insert("a".into());
    sleep(Duration::from_secs(10)).await;
    assert_eq!(in_hand.totals(), (0, 0), "a lost lease is no longer held");
    sleep(Duration::from_secs(30)).await;
    let at: Vec<u64> = fake
        .state()
        .extended_at
        .iter()
        .map(Duration::as_secs)
        .collect();
    assert_eq!(at, vec![10, 20]);
    drop(keeper);
}

#[tokio::test(start_paused = true)]
async fn renewal_stops_after_max_extension_and_skips_fresh_messages() {
    let fake = Fake {
        started: Some(Instant::now()),
        ..Fake::default()
    };
    let settler = Settler::spawn(fake.clone());
    let in_hand = Arc::new(InHand::new());
    let renewal = Renewal {
        every: Duration::from_secs(10),
        lease: None,
        max_extension: Duration::from_secs(25),
    };
    let _keeper = spawn_keeper(in_hand.clone(), settler, renewal);
    in_hand.hold("old".into(), 1);
    sleep(Duration::from_secs(8)).await;
    // Held 2 s before the first round: renewed from the second one on.
    in_hand.hold("new".into(), 1);
    sleep(Duration::from_secs(50)).await;
    let rounds: Vec<Vec<String>> = fake
        .state()
        .requests
        .iter()
        .map(|(_, ids)| {
            let mut ids = ids.clone();
            ids.sort();
            ids
        })
        .collect();
    assert_eq!(rounds, vec![vec!["old"], vec!["new", "old"], vec!["new"]]);
}

#[test]
fn releasing_many_frees_what_was_held_once() {
    let freed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = freed.clone();
    let in_hand = InHand::with_release_hook(move |messages, bytes| {
        seen.lock().unwrap().push((messages, bytes));
    });
    for (id, bytes) in [("a", 10), ("b", 20), ("c", 30)] {
        in_hand.hold(id.to_owned(), bytes);
    }
    // Unknown ids and repeats change nothing; the hook hears one sum.
    assert_eq!(in_hand.release_all(["a", "x", "c", "a"]), 2);
    assert_eq!(in_hand.totals(), (1, 20));
    assert_eq!(in_hand.release_all(["x"]), 0);
    assert!(in_hand.release("b"));
    assert!(!in_hand.release("b"));
    assert_eq!(in_hand.totals(), (0, 0));
    assert_eq!(*freed.lock().unwrap(), vec![(2, 40), (1, 20)]);
}
