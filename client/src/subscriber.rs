//! [`Subscriber`]: one subscription of one topic as a handle, so that
//! `(topic, sub)` is named once — every subscription call, plus the ways to
//! consume it: [`receive`](Subscriber::receive) (self-settling messages),
//! [`stream`](Subscriber::stream) (HTTP pull as a `Stream`),
//! [`subscribe_ws`](Subscriber::subscribe_ws) (WebSocket) and
//! [`consume`](Subscriber::consume) (handler loop).
//!
//! The calls here are thin: the endpoints are `subscriptions.rs`, the
//! consumers live in their own modules.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use weir_protocol::{
    AckResponse, DeadLetter, DeadLetterList, DeadLetterQuery, ExtendRequest, PullRequest,
    PurgeRequest, PurgeResponse, ReceivedMessage, RedriveRequest, RedriveResponse, SeekRequest,
    SeekTarget, SubscriptionInfo, SubscriptionSpec,
};

use crate::client::millis;
use crate::received::SettleHandle;
use crate::settle::{SettleApi, Settler};
use crate::{Client, Error, Nack, Received};

/// One subscription of one topic: every subscription call without naming
/// `(topic, sub)` again, and the ways to consume it. Cheap to clone; clones
/// share the batching of [`receive`](Subscriber::receive)d messages' acks.
///
/// ```no_run
/// # async fn demo(client: weir_client::Client) -> Result<(), weir_client::Error> {
/// use std::time::Duration;
/// let billing = client.subscriber("orders", "billing");
/// for message in billing.receive(10, Duration::from_secs(5)).await? {
///     println!("{}", message.message.offset);
///     message.ack().await?;
/// }
/// println!("backlog {}", billing.info().await?.stats.backlog);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Subscriber {
    path: SubscriptionRef,
    /// Started on the first `receive`.
    settle: Arc<OnceLock<Arc<SettleHandle>>>,
}

/// The subscription's name and client: what the settling task needs (it
/// must not hold the `Subscriber`, whose handle keeps the task alive).
#[derive(Debug, Clone)]
pub(crate) struct SubscriptionRef {
    pub client: Client,
    pub topic: Arc<str>,
    pub name: Arc<str>,
}

impl Client {
    /// A handle on subscription `sub` of `topic` (nothing is sent yet).
    ///
    /// ```no_run
    /// # fn demo(client: weir_client::Client) {
    /// let billing = client.subscriber("orders", "billing");
    /// assert_eq!((billing.topic(), billing.name()), ("orders", "billing"));
    /// # }
    /// ```
    pub fn subscriber(&self, topic: &str, sub: &str) -> Subscriber {
        Subscriber {
            path: SubscriptionRef {
                client: self.clone(),
                topic: topic.into(),
                name: sub.into(),
            },
            settle: Arc::new(OnceLock::new()),
        }
    }
}

impl Subscriber {
    /// The client it uses.
    pub fn client(&self) -> &Client {
        &self.path.client
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.path.topic
    }

    /// The subscription's name.
    pub fn name(&self) -> &str {
        &self.path.name
    }

    /// Creates the subscription, or updates its mutable settings (see
    /// [`Client::create_subscription`]).
    pub async fn create(&self, spec: &SubscriptionSpec) -> Result<SubscriptionInfo, Error> {
        let (client, topic, name) = self.parts();
        client.create_subscription(topic, name, spec).await
    }

    /// Configuration and statistics (see [`Client::subscription`]).
    pub async fn info(&self) -> Result<SubscriptionInfo, Error> {
        let (client, topic, name) = self.parts();
        client.subscription(topic, name).await
    }

    /// Deletes the subscription and its state.
    pub async fn delete(&self) -> Result<(), Error> {
        let (client, topic, name) = self.parts();
        client.delete_subscription(topic, name).await
    }

    /// Leases messages (see [`Client::pull`]); settle them with
    /// [`ack`](Self::ack) and [`nack`](Self::nack), or use
    /// [`receive`](Self::receive) for messages that settle themselves.
    pub async fn pull(&self, request: &PullRequest) -> Result<Vec<ReceivedMessage>, Error> {
        let (client, topic, name) = self.parts();
        client.pull(topic, name, request).await
    }

    /// Leases up to `max_messages` (1..=1000), waiting up to `wait` for the
    /// first, as messages that settle themselves ([`Received`]). Their
    /// acks, nacks and renewals are batched with those of every other
    /// message received through this handle or its clones.
    pub async fn receive(&self, max_messages: u32, wait: Duration) -> Result<Vec<Received>, Error> {
        let request = PullRequest {
            max_messages: Some(max_messages),
            wait_ms: Some(millis(wait)),
            consumer: None,
        };
        let messages = self.pull(&request).await?;
        let settle = self
            .settle
            .get_or_init(|| {
                let settler = Settler::spawn(self.path.clone());
                Arc::new(SettleHandle::new(settler, None, None))
            })
            .clone();
        Ok(messages
            .into_iter()
            .map(|m| Received::new(m, settle.clone()))
            .collect())
    }

    /// Acks deliveries, all in one request (see [`Client::ack`]).
    pub async fn ack(&self, ack_ids: Vec<String>) -> Result<AckResponse, Error> {
        self.path.ack(ack_ids).await
    }

    /// Nacks deliveries as `nack` says, all in one request.
    pub async fn nack(&self, ack_ids: Vec<String>, nack: &Nack) -> Result<AckResponse, Error> {
        self.path.nack(ack_ids, nack).await
    }

    /// Renews leases for `lease` from now (`None`: the subscription's
    /// `ack_timeout_ms`), all in one request.
    pub async fn extend(
        &self,
        ack_ids: Vec<String>,
        lease: Option<Duration>,
    ) -> Result<AckResponse, Error> {
        self.path.extend(ack_ids, lease).await
    }

    /// Moves the subscription (see [`Client::seek`]).
    pub async fn seek(&self, to: SeekTarget) -> Result<SubscriptionInfo, Error> {
        let (client, topic, name) = self.parts();
        client.seek(topic, name, &SeekRequest { to }).await
    }

    /// Makes dead letters deliverable again (see [`Client::redrive`]).
    pub async fn redrive(&self, max_messages: Option<u64>) -> Result<RedriveResponse, Error> {
        let (client, topic, name) = self.parts();
        client.redrive(topic, name, max_messages).await
    }

    /// Pauses the subscription: no new deliveries until
    /// [`resume`](Self::resume) (see [`Client::pause`]).
    pub async fn pause(&self, reason: Option<&str>) -> Result<SubscriptionInfo, Error> {
        let (client, topic, name) = self.parts();
        client.pause(topic, name, reason).await
    }

    /// Resumes the subscription; with `redrive`, also redrives the dead
    /// letters that tripped its circuit breaker (see [`Client::resume`]).
    pub async fn resume(&self, redrive: bool) -> Result<SubscriptionInfo, Error> {
        let (client, topic, name) = self.parts();
        client.resume(topic, name, redrive).await
    }

    /// One page of dead letters (see [`Client::dead_letters`]).
    pub async fn dead_letters(&self, query: &DeadLetterQuery) -> Result<DeadLetterList, Error> {
        let (client, topic, name) = self.parts();
        client.dead_letters(topic, name, query).await
    }

    /// Every matching dead letter, up to `max`, following the pages (see
    /// [`Client::dead_letters_all`]).
    pub async fn dead_letters_all(
        &self,
        query: &DeadLetterQuery,
        max: Option<usize>,
    ) -> Result<Vec<DeadLetter>, Error> {
        let (client, topic, name) = self.parts();
        client.dead_letters_all(topic, name, query, max).await
    }

    /// Redrives (or, with `dry_run`, counts) the matching waiting dead
    /// letters (see [`Client::redrive_dead_letters`]).
    pub async fn redrive_dead_letters(
        &self,
        request: &RedriveRequest,
    ) -> Result<RedriveResponse, Error> {
        let (client, topic, name) = self.parts();
        client.redrive_dead_letters(topic, name, request).await
    }

    /// Purges (or, with `dry_run`, counts) the matching waiting dead
    /// letters (see [`Client::purge_dead_letters`]).
    pub async fn purge_dead_letters(&self, request: &PurgeRequest) -> Result<PurgeResponse, Error> {
        let (client, topic, name) = self.parts();
        client.purge_dead_letters(topic, name, request).await
    }

    /// The renewal period when none is configured: a third of the shorter
    /// of `lease` and the subscription's `ack_timeout_ms`.
    pub(crate) async fn default_renewal_period(
        &self,
        lease: Option<Duration>,
    ) -> Result<Duration, Error> {
        let info = self.info().await?;
        let ack_timeout = Duration::from_millis(info.config.ack_timeout_ms);
        Ok(lease.map_or(ack_timeout, |l| l.min(ack_timeout)) / 3)
    }

    pub(crate) fn reference(&self) -> &SubscriptionRef {
        &self.path
    }

    fn parts(&self) -> (&Client, &str, &str) {
        (&self.path.client, &self.path.topic, &self.path.name)
    }
}

impl SettleApi for SubscriptionRef {
    async fn ack(&self, ack_ids: Vec<String>) -> Result<AckResponse, Error> {
        self.client.ack(&self.topic, &self.name, ack_ids).await
    }

    async fn nack(&self, ack_ids: Vec<String>, nack: &Nack) -> Result<AckResponse, Error> {
        let request = nack.request(ack_ids);
        self.client.nack(&self.topic, &self.name, &request).await
    }

    async fn extend(
        &self,
        ack_ids: Vec<String>,
        lease: Option<Duration>,
    ) -> Result<AckResponse, Error> {
        let request = ExtendRequest {
            ack_ids,
            ack_timeout_ms: lease.map(millis),
        };
        self.client.extend(&self.topic, &self.name, &request).await
    }
}
