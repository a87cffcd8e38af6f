//! Where produce goes when a topic is replicated. In a cluster, the
//! cluster layer registers a [`Replicator`]; a batch for a topic it
//! replicates is handed to it (placed by the partitions' Raft groups)
//! instead of being placed and committed here. A lone server has none.
//!
//! The state of a subscription of a replicated topic is replicated too:
//! one node serves it (the replicator says which: [`Replicator::serving`]),
//! claims it before it loads the state, and commits every change through
//! the replicator instead of the local store.
//!
//! The broker never names the cluster: this trait is the seam.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use weir_protocol::ProduceResult;

use super::error::Result;
use super::produce::Prepared;
use super::subscription::state::Change;
use super::topic::Topic;
use crate::storage::PauseRecord;

/// A replicated produce in flight.
pub type Replicated = Pin<Box<dyn Future<Output = Result<Vec<ProduceResult>>> + Send>>;

/// Where the broker finds the cluster's seam (set once, when a cluster
/// node starts; shared with every subscription).
pub type ReplicatorSlot = Arc<std::sync::OnceLock<Arc<dyn Replicator>>>;

/// A replicated commit of subscription changes (or a claim) in flight.
pub type Committing<T> = Pin<Box<dyn Future<Output = Result<T>> + Send>>;

/// Takes the produce of replicated topics.
pub trait Replicator: Send + Sync {
    /// The produce of `batch` to `topic` at `at` (broker time, wall
    /// time); the batch back when the topic is not replicated (it is
    /// placed here).
    #[allow(clippy::result_large_err)]
    fn produce(
        &self,
        topic: &Arc<Topic>,
        batch: Vec<Prepared>,
        at: (u64, u64),
    ) -> std::result::Result<Replicated, Vec<Prepared>>;

    /// Whether `topic` is replicated: its messages are appended only
    /// through the replicator (never placed locally).
    fn replicates(&self, topic: &str) -> bool;

    /// The claim under which this node may serve the subscriptions of
    /// `topic` now, or `None` when another node serves them (or none can
    /// yet). A claim is a number that grows with every change of server.
    fn serving(&self, topic: &Topic) -> Option<u64>;

    /// Claims subscription `sub` of `topic` for this node under `claim`:
    /// once it resolves, changes of older claims are refused and this
    /// node's store holds every change committed before, so the state can
    /// be loaded from it.
    /// Resolves to the claim made: `claim` or, when this node claimed the
    /// subscription under it before, a higher one (a claim is never made
    /// twice: a commit of an abandoned claim that arrives late is refused).
    fn claim(&self, topic: &Arc<Topic>, sub: u32, claim: u64) -> Committing<u64>;

    /// Commits `changes` of subscription `sub`, made under `claim`, in the
    /// order given; queued before this returns (call it in the order the
    /// changes were made). Fails when the claim was superseded.
    fn commit(
        &self,
        topic: &Arc<Topic>,
        sub: u32,
        claim: u64,
        changes: Vec<Change>,
    ) -> Committing<()>;

    /// Creates topic `name` cluster-wide with default settings (a
    /// dead-letter topic); resolves once it exists on this node.
    fn create_topic(&self, name: &str, now: u64) -> Committing<()>;

    /// Pauses (`Some`) or resumes (`None`) subscription `name` of `topic`
    /// cluster-wide; resolves once this node applied it.
    fn pause(&self, topic: &str, name: &str, paused: Option<PauseRecord>) -> Committing<()>;
}
