//! The consumer loop against an in-memory subscription, with a paused Tokio
//! clock: renewal times and shutdown timing are exact, no real sleeps.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use tokio::time::{sleep, Instant};
use weir_protocol::{AckResponse, ErrorCode, Message, Problem};

use super::*;
use crate::nack::{truncate, MAX_REASON_BYTES};
use crate::settle::SettleApi;
use crate::{Nack, Outcome};

#[derive(Default)]
struct State {
    queue: VecDeque<ReceivedMessage>,
    pull_errors: VecDeque<Error>,
    pulls: Vec<u32>,
    acks: Vec<String>,
    nacks: Vec<(String, String)>,
    nack_options: Vec<Nack>,
    extends: Vec<(String, Duration)>,
    extend_requests: usize,
    /// Ack ids the server no longer knows (lease ran out).
    expired: HashSet<String>,
}

#[derive(Clone)]
struct FakeSubscription {
    state: Arc<Mutex<State>>,
    started: Instant,
}

impl FakeSubscription {
    fn with_messages(count: u64) -> Self {
        let state = State {
            queue: (0..count).map(received).collect(),
            ..State::default()
        };
        FakeSubscription {
            state: Arc::new(Mutex::new(state)),
            started: Instant::now(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    fn answer(&self, ack_ids: &[String]) -> AckResponse {
        let state = self.state();
        let unknown: Vec<String> = ack_ids
            .iter()
            .filter(|id| state.expired.contains(*id))
            .cloned()
            .collect();
        AckResponse {
            acked: (ack_ids.len() - unknown.len()) as u64,
            unknown,
        }
    }
}

impl SettleApi for FakeSubscription {
    async fn ack(&self, ack_ids: Vec<String>) -> Result<AckResponse, Error> {
        self.state().acks.extend(ack_ids.iter().cloned());
        Ok(self.answer(&ack_ids))
    }

    async fn nack(&self, ack_ids: Vec<String>, nack: &Nack) -> Result<AckResponse, Error> {
        let reason = nack.reason().unwrap_or_default().to_owned();
        let mut state = self.state();
        for id in &ack_ids {
            state.nacks.push((id.clone(), reason.clone()));
            state.nack_options.push(nack.clone());
        }
        drop(state);
        Ok(self.answer(&ack_ids))
    }

    async fn extend(
        &self,
        ack_ids: Vec<String>,
        _lease: Option<Duration>,
    ) -> Result<AckResponse, Error> {
        let at = self.started.elapsed();
        let mut state = self.state();
        state.extend_requests += 1;
        for id in &ack_ids {
            state.extends.push((id.clone(), at));
        }
        drop(state);
        Ok(self.answer(&ack_ids))
    }
}

impl SubscriptionApi for FakeSubscription {
    async fn pull(&self, request: &PullRequest) -> Result<Vec<ReceivedMessage>, Error> {
        let messages = {
            let mut state = self.state();
            let max = request.max_messages.unwrap_or(10);
            state.pulls.push(max);
            if let Some(e) = state.pull_errors.pop_front() {
                return Err(e);
            }
            let n = state.queue.len().min(max as usize);
            state.queue.drain(..n).collect::<Vec<_>>()
        };
        if messages.is_empty() {
            sleep(Duration::from_millis(request.wait_ms.unwrap_or(0))).await;
        }
        Ok(messages)
    }
}

fn received(offset: u64) -> ReceivedMessage {
    ReceivedMessage {
        message: Message {
            topic: "orders".into(),
            partition: 0,
            offset,
            timestamp: 0,
            key: None,
            value: None,
            value_b64: Some("AA==".into()),
            headers: BTreeMap::new(),
        },
        ack_id: format!("a{offset}"),
        attempt: 1,
    }
}

fn policy(extend_every_s: u64, max_extension_s: u64) -> Renewal {
    Renewal {
        every: Duration::from_secs(extend_every_s),
        lease: None,
        max_extension: Duration::from_secs(max_extension_s),
    }
}

fn config(concurrency: usize) -> ConsumerConfig {
    ConsumerConfig {
        concurrency,
        wait: Duration::from_secs(1),
        ..ConsumerConfig::default()
    }
}

/// Completes after `secs` of (paused, auto-advancing) time.
async fn after(secs: u64) {
    sleep(Duration::from_secs(secs)).await;
}

fn sleeping_handler(
    secs: u64,
) -> impl Fn(ReceivedMessage) -> futures_util::future::BoxFuture<'static, Result<(), String>>
       + Send
       + Sync
       + 'static {
    move |_message| {
        Box::pin(async move {
            sleep(Duration::from_secs(secs)).await;
            Ok(())
        })
    }
}

#[tokio::test(start_paused = true)]
async fn acks_successes_and_nacks_failures_with_the_error_text() {
    let api = FakeSubscription::with_messages(3);
    let handler = |m: ReceivedMessage| async move {
        match m.message.offset {
            1 => Err(format!("offset {} is bad", m.message.offset)),
            _ => Ok(()),
        }
    };
    let stats = run(
        api.clone(),
        &config(4),
        policy(10, 3600),
        handler,
        after(60),
    )
    .await
    .unwrap();
    let state = api.state();
    let mut acks = state.acks.clone();
    acks.sort();
    assert_eq!(acks, vec!["a0", "a2"]);
    assert_eq!(state.nacks, vec![("a1".into(), "offset 1 is bad".into())]);
    assert_eq!(
        (stats.received, stats.handled, stats.acked, stats.nacked),
        (3, 3, 2, 1)
    );
    assert!(state.extends.is_empty(), "quick handlers need no renewal");
}

#[tokio::test(start_paused = true)]
async fn leases_are_renewed_while_the_handler_runs() {
    let api = FakeSubscription::with_messages(1);
    let stats = run(
        api.clone(),
        &config(1),
        policy(10, 3600),
        sleeping_handler(35),
        after(1),
    )
    .await
    .unwrap();
    let at: Vec<u64> = api.state().extends.iter().map(|e| e.1.as_secs()).collect();
    assert_eq!(at, vec![10, 20, 30]);
    assert_eq!(api.state().acks, vec!["a0"]);
    assert_eq!(stats.acked, 1);
}

#[tokio::test(start_paused = true)]
async fn renewal_stops_after_max_extension() {
    let api = FakeSubscription::with_messages(1);
    run(
        api.clone(),
        &config(1),
        policy(10, 25),
        sleeping_handler(45),
        after(1),
    )
    .await
    .unwrap();
    let at: Vec<u64> = api.state().extends.iter().map(|e| e.1.as_secs()).collect();
    assert_eq!(at, vec![10, 20]);
}

#[tokio::test(start_paused = true)]
async fn a_lost_lease_stops_renewal_and_is_counted() {
    let api = FakeSubscription::with_messages(1);
    api.state().expired.insert("a0".into());
    let stats = run(
        api.clone(),
        &config(1),
        policy(10, 3600),
        sleeping_handler(45),
        after(1),
    )
    .await
    .unwrap();
    assert_eq!(api.state().extends.len(), 1);
    assert_eq!((stats.acked, stats.lease_lost), (0, 1));
}

#[tokio::test(start_paused = true)]
async fn a_panicking_handler_is_nacked_with_its_message() {
    let api = FakeSubscription::with_messages(1);
    let handler = |_m: ReceivedMessage| async move {
        if true {
            panic!("boom");
        }
        Ok::<(), String>(())
    };
    let stats = run(api.clone(), &config(1), policy(10, 3600), handler, after(5))
        .await
        .unwrap();
    assert_eq!(
        api.state().nacks,
        vec![("a0".into(), "handler panicked: boom".into())]
    );
    assert_eq!(stats.nacked, 1);
}

#[tokio::test(start_paused = true)]
async fn long_reasons_are_cut_on_a_character_boundary() {
    let api = FakeSubscription::with_messages(1);
    let handler = |_m: ReceivedMessage| async move { Err::<(), _>("é".repeat(MAX_REASON_BYTES)) };
    run(api.clone(), &config(1), policy(10, 3600), handler, after(5))
        .await
        .unwrap();
    let reason = api.state().nacks[0].1.clone();
    assert_eq!(reason.len(), MAX_REASON_BYTES);
    assert_eq!(truncate("abc".into(), 2), "ab");
    assert_eq!(truncate("é".into(), 1), "");
}

#[tokio::test(start_paused = true)]
async fn concurrency_is_bounded_and_pulls_ask_only_for_free_slots() {
    let api = FakeSubscription::with_messages(5);
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let handler = {
        let (running, most) = (running.clone(), most.clone());
        move |_m: ReceivedMessage| {
            let (running, most) = (running.clone(), most.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                sleep(Duration::from_secs(1)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                Ok::<(), String>(())
            }
        }
    };
    let stats = run(
        api.clone(),
        &config(2),
        policy(10, 3600),
        handler,
        after(30),
    )
    .await
    .unwrap();
    assert_eq!(stats.acked, 5);
    assert_eq!(most.load(Ordering::SeqCst), 2);
    let pulls = api.state().pulls.clone();
    assert_eq!(pulls[0], 2);
    assert!(pulls.iter().all(|&n| n <= 2), "pulls asked for {pulls:?}");
}

#[tokio::test(start_paused = true)]
async fn transient_pull_failures_are_retried_with_backoff() {
    let api = FakeSubscription::with_messages(1);
    for _ in 0..2 {
        let e = Error::Api(Problem::new(ErrorCode::Unavailable, "stall"));
        api.state().pull_errors.push_back(e);
    }
    let stats = run(
        api.clone(),
        &config(1),
        policy(10, 3600),
        sleeping_handler(0),
        after(1),
    )
    .await
    .unwrap();
    assert_eq!((stats.pull_errors, stats.acked), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn a_permanent_pull_failure_ends_the_run_with_its_code() {
    let api = FakeSubscription::with_messages(0);
    let e = Error::Api(Problem::new(ErrorCode::SubscriptionNotFound, "gone"));
    api.state().pull_errors.push_back(e);
    let ended = run(
        api,
        &config(1),
        policy(10, 3600),
        sleeping_handler(0),
        after(60),
    )
    .await;
    assert_eq!(
        ended.unwrap_err().code(),
        Some(ErrorCode::SubscriptionNotFound)
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_lets_running_handlers_finish_and_settle() {
    let api = FakeSubscription::with_messages(1);
    let t0 = Instant::now();
    let stats = run(
        api.clone(),
        &config(1),
        policy(10, 3600),
        sleeping_handler(30),
        after(5),
    )
    .await
    .unwrap();
    assert_eq!(t0.elapsed(), Duration::from_secs(30));
    assert_eq!(stats.acked, 1);
    assert_eq!(api.state().queue.len(), 0);
}

#[tokio::test(start_paused = true)]
async fn handlers_choose_the_nack_and_concurrent_renewals_share_requests() {
    let api = FakeSubscription::with_messages(4);
    let handler = |m: ReceivedMessage| async move {
        sleep(Duration::from_secs(25)).await;
        match m.message.offset {
            0 => Ok::<_, String>(Outcome::Ack),
            1 => Ok(Outcome::Nack(Nack::dead_letter().with_reason("poison"))),
            2 => Ok(Nack::retry_after(Duration::from_secs(60)).into()),
            _ => Err("plain failure".to_owned()),
        }
    };
    let stats = run(api.clone(), &config(4), policy(10, 3600), handler, after(1))
        .await
        .unwrap();
    assert_eq!((stats.acked, stats.nacked), (1, 3));
    let state = api.state();
    assert_eq!(state.acks, vec!["a0"]);
    let mut options = state.nack_options.clone();
    options.sort_by_key(|n| format!("{n:?}"));
    let mut expected = vec![
        Nack::dead_letter().with_reason("poison"),
        Nack::retry_after(Duration::from_secs(60)),
        Nack::retry().with_reason("plain failure"),
    ];
    expected.sort_by_key(|n| format!("{n:?}"));
    assert_eq!(options, expected);
    // Four running handlers, renewed at 10 s and 20 s: one request each time.
    assert_eq!(state.extends.len(), 8);
    assert_eq!(state.extend_requests, 2);
}
