//! The broker: topics, produce, replay and (in `subscription/`) the
//! delivery state machines. Pure domain: no axum, no RocksDB (the store's
//! domain API only), time passed in where decisions depend on it.

mod adopt;
pub mod clock;
pub mod error;
pub mod ops;
pub mod partitioner;
pub mod produce;
pub mod read;
pub mod replicate;
pub mod retention;
pub mod subscription;
pub mod topic;
pub mod topic_reader;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use weir_protocol::{
    names::is_valid_name, PartitionInfo, ProduceMessage, ProduceResult, ReadResponse, Start,
    StartName, SubscriptionSpec, TopicInfo, TopicSpec,
};

pub use error::{BrokerError, Result};
use read::ReadFrom;
use topic::{apply_spec, Topic};

use crate::metrics::{name_label, METRICS};
use crate::storage::{
    PartitionMeta, Store, SubscriptionRecord, TopicRecord, WriteSet, COUNTER_SUBSCRIPTION,
    COUNTER_TOPIC,
};
use subscription::push::PushOptions;
use subscription::state::State;
use subscription::Subscription;

/// Whether a PUT created or updated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert {
    Created,
    Updated,
    Unchanged,
}

/// Limits on what clients may create (from the server's configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerLimits {
    /// Topics created by `put_topic`. Dead-letter topics created on demand
    /// are never refused: refusing one would stall its subscription.
    pub max_topics: usize,
    pub max_subscriptions_per_topic: usize,
    /// Messages one subscription tracks in memory (see `State`).
    pub max_unsettled_per_subscription: usize,
    pub max_headers_per_message: usize,
}

impl Default for BrokerLimits {
    fn default() -> Self {
        BrokerLimits {
            max_topics: 10_000,
            max_subscriptions_per_topic: 1000,
            max_unsettled_per_subscription: subscription::state::MAX_TRACKED,
            max_headers_per_message: 64,
        }
    }
}

/// The broker: the registry of topics over one store.
pub struct Broker {
    store: Arc<Store>,
    limits: BrokerLimits,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    /// Serializes topic and subscription configuration changes.
    admin: tokio::sync::Mutex<AdminState>,
    /// Server-wide settings of push (webhook) deliveries.
    push: Arc<PushOptions>,
    /// Time, for every decision that depends on it.
    clock: clock::Clock,
    /// Takes the produce of replicated topics (a cluster node).
    replicator: replicate::ReplicatorSlot,
}

struct AdminState {
    next_topic_id: u32,
    next_subscription_id: u32,
}

impl Broker {
    /// Rebuilds the broker from what the store recovered, and starts each
    /// subscription's timer task (call from within the Tokio runtime).
    pub fn open(store: Arc<Store>, limits: BrokerLimits) -> Result<Arc<Broker>> {
        Broker::open_with(store, limits, PushOptions::default())
    }

    /// `open`, with the push settings; also starts the push workers.
    pub fn open_with(
        store: Arc<Store>,
        limits: BrokerLimits,
        push: PushOptions,
    ) -> Result<Arc<Broker>> {
        Broker::open_clocked(store, limits, push, clock::Clock::system())
    }

    /// `open_with`, on a given clock (tests drive time through it).
    pub fn open_clocked(
        store: Arc<Store>,
        limits: BrokerLimits,
        push: PushOptions,
        clock: clock::Clock,
    ) -> Result<Arc<Broker>> {
        let recovered = store.recover()?;
        let now = clock.now();
        let mut topics = HashMap::new();
        let mut by_id = HashMap::new();
        for (record, metas) in recovered.topics {
            let mut metas = metas;
            // A partition record is written with the topic; fill any gap
            // defensively so `partitions` always matches the config.
            for p in 0..record.config.partitions {
                if !metas.iter().any(|m| m.partition == p) {
                    metas.push(PartitionMeta {
                        partition: p,
                        ..PartitionMeta::default()
                    });
                }
            }
            let name = record.name.clone();
            let id = record.id;
            let topic = Arc::new(Topic::new(record, &metas));
            by_id.insert(id, topic.clone());
            crate::metrics::topic_created(&name);
            topics.insert(name, topic);
        }
        let replicator = replicate::ReplicatorSlot::default();
        let mut subs = Vec::new();
        for record in recovered.subscriptions {
            let Some(topic) = by_id.get(&record.topic_id) else {
                tracing::warn!(subscription = %record.name, "subscription of a missing topic ignored");
                continue;
            };
            let loaded = store.load_sub_state(record.id)?;
            let dead = store.count_sub_dead_letters(record.id)?;
            let hint = store.next_parked_due(record.id)?;
            let mut state = State::load(
                record.id,
                record.config.clone(),
                topic.partitions().len() as u32,
                loaded,
                dead,
                now,
            );
            state.set_parked_due_hint(hint);
            state.set_max_tracked(limits.max_unsettled_per_subscription as u64);
            let name = record.name.clone();
            let sub = Subscription::new(
                record,
                topic.clone(),
                store.clone(),
                state,
                clock.clone(),
                replicator.clone(),
            );
            crate::metrics::subscription_created(&topic.name(), &name);
            topic.subscriptions_mut().insert(name, sub.clone());
            subs.push(sub);
        }
        let broker = Arc::new(Broker {
            store,
            limits,
            topics: RwLock::new(topics),
            admin: tokio::sync::Mutex::new(AdminState {
                next_topic_id: recovered.next_topic_id,
                next_subscription_id: recovered.next_subscription_id,
            }),
            push: Arc::new(push),
            clock,
            replicator,
        });
        for sub in subs {
            if let Some(pause) = sub.record().paused {
                sub.schedule_cooldown(&broker, &pause);
            }
            sub.attach_push(broker.push.clone());
            tokio::spawn(sub.run_timers(Arc::downgrade(&broker)));
        }
        Ok(broker)
    }

    /// Hands the produce of replicated topics to `replicator` (set once, by
    /// a cluster node as it starts).
    pub fn set_replicator(&self, replicator: Arc<dyn replicate::Replicator>) {
        if self.replicator.set(replicator).is_err() {
            tracing::warn!("a replicator was already set; keeping the first");
        }
    }

    /// Whether messages of `topic` are appended only through the cluster.
    pub fn is_replicated(&self, topic: &str) -> bool {
        self.replicator.get().is_some_and(|r| r.replicates(topic))
    }

    /// The store, for the broker's own modules only: the layers above
    /// reach it through broker calls (`ops.rs`, `topic_reader.rs`).
    fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The broker's clock.
    pub fn clock(&self) -> &clock::Clock {
        &self.clock
    }

    /// Refuses what only adds data while the disk is below its free-space
    /// limit (produce, creating topics and subscriptions).
    fn check_disk(&self) -> Result<()> {
        let space = self.store.disk_space();
        if space.is_low() {
            return Err(BrokerError::InsufficientStorage {
                free: space.free_bytes.unwrap_or(0),
                limit: space.limit_bytes,
            });
        }
        Ok(())
    }

    /// Broker time now (see [`clock::Clock::now`]).
    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    fn topics_read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Topic>>> {
        match self.topics.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn topics_write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Topic>>> {
        match self.topics.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Every topic, for background tasks and metrics.
    pub fn all_topics(&self) -> Vec<Arc<Topic>> {
        self.topics_read().values().cloned().collect()
    }

    /// Looks a topic up by name (validating the name first).
    pub fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        check_name("topic", name)?;
        self.topics_read()
            .get(name)
            .cloned()
            .ok_or_else(|| BrokerError::TopicNotFound(name.to_owned()))
    }

    /// Creates a topic or updates its mutable settings.
    pub async fn put_topic(&self, name: &str, spec: &TopicSpec, now: u64) -> Result<Upsert> {
        let max = self.limits.max_topics;
        let full = {
            let topics = self.topics_read();
            !topics.contains_key(name) && topics.len() >= max
        };
        if full {
            return Err(BrokerError::LimitExceeded(format!(
                "the server already has {max} topics (`max_topics`)"
            )));
        }
        if !self.topics_read().contains_key(name) {
            self.check_disk()?;
        }
        self.create_or_update_topic(name, spec, now).await
    }

    async fn create_or_update_topic(
        &self,
        name: &str,
        spec: &TopicSpec,
        now: u64,
    ) -> Result<Upsert> {
        check_name("topic", name)?;
        let mut admin = self.admin.lock().await;
        let existing = self.topics_read().get(name).cloned();
        match existing {
            Some(topic) => {
                let mut record = topic.record();
                let config = apply_spec(spec, Some(&record.config))?;
                if config == record.config {
                    return Ok(Upsert::Unchanged);
                }
                let old_partitions = record.config.partitions;
                record.config = config;
                let mut set = WriteSet::new();
                set.put_topic(&record);
                for p in old_partitions..record.config.partitions {
                    set.put_partition(
                        record.id,
                        p,
                        &PartitionMeta {
                            partition: p,
                            ..PartitionMeta::default()
                        },
                    );
                }
                self.store.commit(set).await?;
                // The produce lock may be held by a placement reading
                // idempotency ids: wait for it off the async workers.
                let growing = topic.clone();
                let count = record.config.partitions;
                tokio::task::spawn_blocking(move || growing.grow(count)).await?;
                topic.set_record(record);
                Ok(Upsert::Updated)
            }
            None => {
                let config = apply_spec(spec, None)?;
                let id = admin.next_topic_id;
                if id == u32::MAX {
                    return Err(BrokerError::Conflict("topic ids exhausted".into()));
                }
                let record = TopicRecord {
                    id,
                    name: name.to_owned(),
                    config,
                    created_at: now,
                };
                let metas: Vec<PartitionMeta> = (0..record.config.partitions)
                    .map(|p| PartitionMeta {
                        partition: p,
                        ..PartitionMeta::default()
                    })
                    .collect();
                let mut set = WriteSet::new();
                set.put_topic(&record);
                set.put_counter(COUNTER_TOPIC, id + 1);
                for m in &metas {
                    set.put_partition(id, m.partition, m);
                }
                self.store.commit(set).await?;
                admin.next_topic_id = id + 1;
                self.topics_write()
                    .insert(name.to_owned(), Arc::new(Topic::new(record, &metas)));
                crate::metrics::topic_created(name);
                Ok(Upsert::Created)
            }
        }
    }

    /// Deletes a topic with its data and its subscriptions.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        let topic = self.topic(name)?;
        let _admin = self.admin.lock().await;
        let mut set = WriteSet::new();
        set.delete_topic(&topic.record());
        for sub in topic.subscription_list() {
            set.delete_sub_state(sub.id());
            sub.forget_metrics();
        }
        self.store.commit(set).await?;
        self.topics_write().remove(name);
        topic.mark_deleted();
        crate::metrics::topic_deleted(name);
        // Free its disk space now, not whenever compaction gets there.
        self.store.reclaim_topic(topic.id());
        Ok(())
    }

    /// Looks a topic up, creating it with `spec` when missing (dead-letter
    /// topics are created on demand).
    pub async fn topic_or_create(
        &self,
        name: &str,
        spec: &TopicSpec,
        now: u64,
    ) -> Result<Arc<Topic>> {
        if let Ok(topic) = self.topic(name) {
            return Ok(topic);
        }
        self.create_or_update_topic(name, spec, now).await?;
        self.topic(name)
    }

    /// Looks a subscription up by topic and name.
    pub fn subscription(&self, topic: &str, name: &str) -> Result<Arc<Subscription>> {
        let t = self.topic(topic)?;
        check_name("subscription", name)?;
        t.subscription(name)
            .ok_or_else(|| BrokerError::SubscriptionNotFound {
                topic: topic.to_owned(),
                sub: name.to_owned(),
            })
    }

    /// Creates a subscription or updates its mutable settings.
    pub async fn put_subscription(
        self: &Arc<Self>,
        topic_name: &str,
        name: &str,
        spec: &SubscriptionSpec,
        now: u64,
    ) -> Result<Upsert> {
        let topic = self.topic(topic_name)?;
        check_name("subscription", name)?;
        if self.is_replicated(topic_name) {
            return Err(BrokerError::Conflict(format!(
                "topic `{topic_name}` is replicated: its subscriptions are created through the cluster"
            )));
        }
        let mut admin = self.admin.lock().await;
        if let Some(sub) = topic.subscription(name) {
            let mut record = sub.record();
            let config =
                subscription::config::apply_spec(topic_name, name, spec, Some(&record.config))?;
            if config == record.config {
                return Ok(Upsert::Unchanged);
            }
            record.config = config;
            let mut set = WriteSet::new();
            set.put_subscription(&record);
            self.store.commit(set).await?;
            sub.set_record(record).await;
            return Ok(Upsert::Updated);
        }
        self.check_disk()?;
        let max = self.limits.max_subscriptions_per_topic;
        if topic.subscription_list().len() >= max {
            return Err(BrokerError::LimitExceeded(format!(
                "topic `{topic_name}` already has {max} subscriptions (`max_subscriptions_per_topic`)"
            )));
        }
        let config = subscription::config::apply_spec(topic_name, name, spec, None)?;
        let id = admin.next_subscription_id;
        if id == u32::MAX {
            return Err(BrokerError::Conflict("subscription ids exhausted".into()));
        }
        let cursors = self
            .start_cursors(
                &topic,
                spec.start.unwrap_or(Start::Named(StartName::Latest)),
            )
            .await?;
        let record = SubscriptionRecord {
            id,
            topic_id: topic.id(),
            name: name.to_owned(),
            config: config.clone(),
            created_at: now,
            paused: None,
        };
        let mut set = WriteSet::new();
        set.put_subscription(&record);
        set.put_counter(COUNTER_SUBSCRIPTION, id + 1);
        // A fresh id has no state; clear defensively anyway.
        set.delete_sub_state(id);
        for (p, c) in cursors.iter().enumerate() {
            set.put_sub_cursor(id, p as u32, *c);
        }
        self.store.commit(set).await?;
        admin.next_subscription_id = id + 1;
        if topic.is_deleted() {
            return Err(BrokerError::TopicNotFound(topic_name.to_owned()));
        }
        self.register_subscription(&topic, record, &cursors);
        Ok(Upsert::Created)
    }

    /// Makes a subscription whose record is committed live: its state
    /// (starting at `cursors`), its place in the topic, its metrics, push
    /// worker and timer task.
    fn register_subscription(
        self: &Arc<Self>,
        topic: &Arc<Topic>,
        record: SubscriptionRecord,
        cursors: &[u64],
    ) {
        let name = record.name.clone();
        let mut state = State::new(record.id, record.config.clone(), cursors);
        state.set_max_tracked(self.limits.max_unsettled_per_subscription as u64);
        let sub = Subscription::new(
            record,
            topic.clone(),
            self.store.clone(),
            state,
            self.clock.clone(),
            self.replicator.clone(),
        );
        topic.subscriptions_mut().insert(name.clone(), sub.clone());
        crate::metrics::subscription_created(&topic.name(), &name);
        sub.attach_push(self.push.clone());
        tokio::spawn(sub.run_timers(Arc::downgrade(self)));
    }

    async fn start_cursors(&self, topic: &Topic, start: Start) -> Result<Vec<u64>> {
        let mut cursors = Vec::new();
        for p in topic.partitions() {
            let c = match start {
                Start::Named(StartName::Earliest) => p.low(),
                Start::Named(StartName::Latest) => p.committed(),
                Start::Timestamp(at) => {
                    read::resolve_start(
                        &self.store,
                        topic.id(),
                        &p,
                        ReadFrom::Timestamp(at.timestamp),
                    )
                    .await?
                }
            };
            cursors.push(c);
        }
        Ok(cursors)
    }

    /// Deletes a subscription and all its state.
    pub async fn delete_subscription(&self, topic: &str, name: &str) -> Result<()> {
        let sub = self.subscription(topic, name)?;
        let _admin = self.admin.lock().await;
        let mut set = WriteSet::new();
        set.delete_subscription(&sub.record());
        self.store.commit(set).await?;
        sub.topic().subscriptions_mut().remove(name);
        sub.mark_deleted();
        sub.forget_metrics();
        Ok(())
    }

    /// Describes a topic.
    pub fn describe_topic(&self, name: &str) -> Result<TopicInfo> {
        Ok(describe(&*self.topic(name)?))
    }

    /// Every topic name, sorted.
    pub fn topic_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.topics_read().keys().cloned().collect();
        names.sort();
        names
    }

    /// The topics with a subscription that dead-letters into `topic`.
    pub fn dead_letter_sources(&self, topic: &str) -> Vec<String> {
        self.topics_read()
            .iter()
            .filter(|(_, t)| {
                t.subscription_list()
                    .iter()
                    .any(|s| s.dead_letters_into(topic))
            })
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Appends a batch of messages; answers once they are durable.
    pub async fn produce(
        &self,
        name: &str,
        messages: Vec<ProduceMessage>,
        now: u64,
    ) -> Result<Vec<ProduceResult>> {
        let topic = self.topic(name)?;
        self.check_disk()?;
        self.check_header_counts(
            messages
                .iter()
                .map(|m| m.headers.as_ref().map_or(0, |h| h.len())),
        )?;
        let prepared = produce::prepare(messages, &topic.record().config, now)?;
        self.produce_prepared(name, topic, prepared, now).await
    }

    /// Appends a batch given in the binary encoding; answers once durable.
    pub async fn produce_binary(
        &self,
        name: &str,
        records: Vec<weir_protocol::binary::ProduceRecord>,
        now: u64,
    ) -> Result<Vec<ProduceResult>> {
        let topic = self.topic(name)?;
        self.check_disk()?;
        self.check_header_counts(records.iter().map(|r| r.headers.len()))?;
        let prepared = produce::prepare_binary(records, &topic.record().config, now)?;
        self.produce_prepared(name, topic, prepared, now).await
    }

    /// Refuses a batch with a message beyond `max_headers_per_message`.
    fn check_header_counts(&self, counts: impl Iterator<Item = usize>) -> Result<()> {
        let max_headers = self.limits.max_headers_per_message;
        for (i, n) in counts.enumerate() {
            if n > max_headers {
                return Err(BrokerError::invalid(
                    format!("messages[{i}].headers"),
                    format!(
                        "message {i} has more than {max_headers} headers (`max_headers_per_message`)"
                    ),
                ));
            }
        }
        Ok(())
    }

    pub(crate) async fn produce_prepared(
        &self,
        name: &str,
        topic: Arc<Topic>,
        prepared: Vec<produce::Prepared>,
        now: u64,
    ) -> Result<Vec<ProduceResult>> {
        let count = prepared.len();
        let bytes: u64 = prepared
            .iter()
            .map(|p| p.message.encoded_len() as u64)
            .sum();
        let at = (now, self.clock.wall_at(now));
        let placed_here = match self.replicator.get() {
            Some(replicator) => replicator.produce(&topic, prepared, at),
            None => Err(prepared),
        };
        let results = match placed_here {
            Ok(replicated) => replicated.await?,
            Err(prepared) => {
                // A lone server is a cluster of one: its commit is the
                // local durable write.
                let started = std::time::Instant::now();
                let results =
                    produce::produce(self.store.clone(), topic, prepared, at.0, at.1).await?;
                METRICS
                    .cluster_commit_duration
                    .observe(started.elapsed().as_secs_f64());
                results
            }
        };
        let appended = results.iter().filter(|r| !r.duplicate).count() as u64;
        METRICS.produce_batch_messages.observe(count as f64);
        METRICS
            .messages_produced
            .with_label_values(&[name_label(name)])
            .inc_by(appended);
        METRICS
            .bytes_produced
            .with_label_values(&[name_label(name)])
            .inc_by(bytes);
        Ok(results)
    }

    /// Reads a partition from an offset or timestamp.
    pub async fn read(
        &self,
        name: &str,
        partition: u32,
        from: ReadFrom,
        limit: u32,
        wait_ms: u64,
    ) -> Result<ReadResponse> {
        let topic = self.topic(name)?;
        read::read(&self.store, &topic, partition, from, limit, wait_ms).await
    }

    /// Runs one retention pass over every topic.
    pub async fn enforce_retention(&self, now: u64) -> Result<u64> {
        let mut removed = 0;
        for topic in self.all_topics() {
            let store = self.store.clone();
            removed += tokio::task::spawn_blocking(move || retention::enforce(&store, &topic, now))
                .await??;
        }
        Ok(removed)
    }

    /// Wakes every long poll so shutdown does not wait for them.
    pub fn wake_all(&self) {
        for topic in self.all_topics() {
            topic.close();
        }
    }
}

fn describe(topic: &Topic) -> TopicInfo {
    let record = topic.record();
    let partitions = topic
        .partitions()
        .iter()
        .map(|p| {
            let low = p.low();
            let high = p.committed();
            PartitionInfo {
                partition: p.id,
                low_offset: low,
                high_offset: high,
                messages: high.saturating_sub(low),
                bytes: p.bytes(),
            }
        })
        .collect();
    TopicInfo {
        name: record.name,
        config: record.config,
        partitions,
    }
}

pub fn check_name(what: &'static str, name: &str) -> Result<()> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(BrokerError::InvalidName {
            what,
            name: name.chars().take(240).collect(),
        })
    }
}
