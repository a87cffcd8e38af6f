//! Where produce goes when a topic is replicated. In a cluster, the
//! cluster layer registers a [`Replicator`]; a batch for a topic it
//! replicates is handed to it (placed by the partitions' Raft groups)
//! instead of being placed and committed here. A lone server has none.
//!
//! The broker never names the cluster: this trait is the seam.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use weir_protocol::ProduceResult;

use super::error::Result;
use super::produce::Prepared;
use super::topic::Topic;

/// A replicated produce in flight.
pub type Replicated = Pin<Box<dyn Future<Output = Result<Vec<ProduceResult>>> + Send>>;

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
}
