//! The leases out now, with the consumers that pulled them (queue mode:
//! as named by the pull; stream mode: the partition's owner).

use weir_protocol::{Lease, LeaseList};

use super::Subscription;
use crate::broker::error::{BrokerError, Result};

/// Largest page of leases.
pub const MAX_LEASES_PAGE: usize = 1000;

impl Subscription {
    /// Remembers who pulled these queue-mode deliveries.
    pub(super) fn note_consumers(
        &self,
        consumer: &str,
        deliveries: impl Iterator<Item = (u32, u64)>,
    ) {
        match self.lease_consumers.lock() {
            Ok(mut names) => names.note(consumer, deliveries),
            Err(p) => p.into_inner().note(consumer, deliveries),
        }
    }

    /// Up to `limit` leases out now.
    pub async fn leases(&self, limit: Option<usize>) -> Result<LeaseList> {
        let limit = limit.unwrap_or(100);
        if !(1..=MAX_LEASES_PAGE).contains(&limit) {
            return Err(BrokerError::invalid(
                "limit",
                format!("`limit` must be between 1 and {MAX_LEASES_PAGE}"),
            ));
        }
        let (views, truncated) = self.state().await?.leases(limit, self.now());
        let names = match self.lease_consumers.lock() {
            Ok(n) => n,
            Err(p) => p.into_inner(),
        };
        let leases = views
            .into_iter()
            .map(|v| Lease {
                partition: v.partition,
                offset: v.offset,
                count: v.count,
                attempt: v.attempt,
                consumer: v
                    .owner
                    .or_else(|| names.get(v.partition, v.offset).map(|n| n.to_string())),
                deadline: v.deadline,
            })
            .collect();
        Ok(LeaseList { leases, truncated })
    }
}
