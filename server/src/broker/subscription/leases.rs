//! The leases out now, with the consumers that pulled them (queue mode:
//! as named by the pull; stream mode: the partition's owner).

use std::sync::Arc;

use weir_protocol::{Lease, LeaseList};

use super::Subscription;
use crate::broker::error::{BrokerError, Result};
use crate::broker::subscription::state::MAX_TRACKED;

/// Largest page of leases.
pub const MAX_LEASES_PAGE: usize = 1000;

impl Subscription {
    /// Remembers who pulled these queue-mode deliveries. Bounded: past
    /// twice the tracked limit the oldest names are dropped wholesale (the
    /// view then shows no consumer for them).
    pub(super) fn note_consumers(
        &self,
        consumer: &str,
        deliveries: impl Iterator<Item = (u32, u64)>,
    ) {
        let name: Arc<str> = Arc::from(consumer);
        let mut names = match self.lease_consumers.lock() {
            Ok(n) => n,
            Err(p) => p.into_inner(),
        };
        if names.len() > 2 * MAX_TRACKED {
            names.clear();
        }
        for position in deliveries {
            names.insert(position, name.clone());
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
        let mut names = match self.lease_consumers.lock() {
            Ok(n) => n,
            Err(p) => p.into_inner(),
        };
        // Forget names of settled leases when there are few leases left
        // (cheap then), so the map follows what is in flight.
        if !truncated && names.len() > views.len() * 4 + 64 {
            let live: std::collections::HashSet<(u32, u64)> =
                views.iter().map(|v| (v.partition, v.offset)).collect();
            names.retain(|k, _| live.contains(k));
        }
        let leases = views
            .into_iter()
            .map(|v| Lease {
                partition: v.partition,
                offset: v.offset,
                count: v.count,
                attempt: v.attempt,
                consumer: v
                    .owner
                    .or_else(|| names.get(&(v.partition, v.offset)).map(|n| n.to_string())),
                deadline: v.deadline,
            })
            .collect();
        Ok(LeaseList { leases, truncated })
    }
}
