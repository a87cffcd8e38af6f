//! Which of a consumer's deliveries are still unsettled: lets a consumer
//! that pushes deliveries (the Server-Sent Events stream) keep at most
//! `max_in_flight` of them unacked. Read-only: nothing is changed or
//! committed.

use super::ack_id::AckId;
use super::Subscription;

impl Subscription {
    /// For each delivery of `ids`, whether it still awaits an ack, nack or
    /// expiry (see `State::is_outstanding`). Ids of another subscription
    /// are never outstanding here.
    pub async fn outstanding(&self, ids: &[AckId]) -> Vec<bool> {
        let now = self.now();
        let state = self.state.lock().await;
        ids.iter()
            .map(|id| {
                id.subscription == self.id
                    && state.is_outstanding(id.partition, id.offset, id.token, now)
            })
            .collect()
    }
}
