//! Ack, nack and extend: settle, fail or renew deliveries named by ack ids
//! (one delivery each) or batch ack ids (every delivery of one pull still
//! leased under it). Each request's changes are committed (one group
//! commit) before it is answered; ids that match no current delivery are
//! reported, not errors.

use weir_protocol::AckResponse;

use super::ack_id::AckTarget;
use super::backoff::MAX_BACKOFF_MS;
use super::config::{MAX_ACK_TIMEOUT_MS, MIN_ACK_TIMEOUT_MS};
use super::state::{Acks, FailKind, Failure};
use super::{committed, Subscription, MAX_ACK_IDS, MAX_REASON_BYTES};
use crate::broker::error::{BrokerError, Result};

/// What to do with each delivery.
#[derive(Debug, Clone)]
pub enum Settle {
    Ack,
    Nack {
        reason: Option<String>,
        delay_ms: Option<u64>,
        retry: bool,
    },
    Extend {
        lease_ms: Option<u64>,
    },
}

impl Settle {
    /// Validates the numbers and text of a settle request.
    pub fn check(&self) -> Result<()> {
        match self {
            Settle::Ack => Ok(()),
            Settle::Nack { reason, delay_ms, .. } => {
                if reason.as_ref().is_some_and(|r| r.len() > MAX_REASON_BYTES) {
                    return Err(BrokerError::invalid(
                        "reason",
                        format!("`reason` must be at most {MAX_REASON_BYTES} bytes"),
                    ));
                }
                if delay_ms.is_some_and(|d| d > MAX_BACKOFF_MS) {
                    return Err(BrokerError::invalid(
                        "delay_ms",
                        format!("`delay_ms` must be at most {MAX_BACKOFF_MS} (30 days)"),
                    ));
                }
                Ok(())
            }
            Settle::Extend { lease_ms } => match lease_ms {
                Some(t) if !(MIN_ACK_TIMEOUT_MS..=MAX_ACK_TIMEOUT_MS).contains(t) => Err(BrokerError::invalid(
                    "ack_timeout_ms",
                    format!("`ack_timeout_ms` must be between {MIN_ACK_TIMEOUT_MS} and {MAX_ACK_TIMEOUT_MS}"),
                )),
                _ => Ok(()),
            },
        }
    }
}

/// Parses ack ids and batch ack ids: malformed ones are a 400 naming the
/// first bad one.
pub fn parse_ack_ids(ids: &[String]) -> Result<Vec<AckTarget>> {
    if ids.is_empty() {
        return Err(BrokerError::invalid(
            "ack_ids",
            "`ack_ids` must not be empty",
        ));
    }
    if ids.len() > MAX_ACK_IDS {
        return Err(BrokerError::invalid(
            "ack_ids",
            format!("at most {MAX_ACK_IDS} ack ids per request"),
        ));
    }
    ids.iter()
        .enumerate()
        .map(|(i, id)| {
            AckTarget::decode(id).ok_or_else(|| {
                BrokerError::invalid(
                    format!("ack_ids[{i}]"),
                    format!(
                        "ack id {i} `{}` is malformed: use the `ack_id` of a pulled message \
                         or the `batch_ack_id` of a pull",
                        id.chars().take(64).collect::<String>()
                    ),
                )
            })
        })
        .collect()
}

impl Subscription {
    /// Applies `what` to every delivery in `ids`; answers once durable.
    pub async fn settle(&self, ids: &[String], what: Settle) -> Result<AckResponse> {
        what.check()?;
        let parsed = parse_ack_ids(ids)?;
        if self.is_deleted() {
            return Err(self.gone());
        }
        let sub_id = self.id();
        let now = self.now();
        let (mut state, mut changes) = self.lock(now).await?;
        let lease_default = state.config().ack_timeout_ms;
        let mut response = AckResponse::default();
        let mut acks = Acks::default();
        for (text, target) in ids.iter().zip(parsed) {
            // One delivery, or what is left of a pull's under its batch id
            // (a single id allocates nothing).
            let (one, batch);
            let deliveries: &[(u32, u64, u64)] = match &target {
                _ if target.subscription() != sub_id => &[],
                AckTarget::One(id) => {
                    one = [(id.partition, id.offset, id.token)];
                    &one
                }
                AckTarget::Batch(b) => {
                    batch = state.leased_by_pull(b.pull, &b.ranges);
                    &batch
                }
            };
            let mut matched = 0;
            for &(partition, offset, token) in deliveries {
                let known = match &what {
                    Settle::Ack => {
                        state.ack_into(&mut acks, partition, offset, token, now, &mut changes)
                    }
                    Settle::Nack {
                        reason,
                        delay_ms,
                        retry,
                    } => {
                        let failure = Failure {
                            kind: FailKind::Nack,
                            reason: reason.clone().unwrap_or_else(|| "nack".to_owned()),
                            delay_ms: *delay_ms,
                            permanent: !retry,
                        };
                        state.nack(partition, offset, token, failure, now, &mut changes)
                    }
                    Settle::Extend { lease_ms } => state.extend(
                        partition,
                        offset,
                        token,
                        lease_ms.unwrap_or(lease_default),
                        now,
                    ),
                };
                matched += u64::from(known);
            }
            if matched > 0 {
                response.acked += matched;
            } else {
                response.unknown.push(text.clone());
            }
        }
        state.finish_acks(acks, &mut changes);
        // Acks wake long polls only when they can unblock deliveries (a
        // key held, a full window); nacks always (retries, dead letters).
        let wake_waiters = match what {
            Settle::Ack => state.acks_unblock() || state.parked_due_waiting(now),
            Settle::Nack { .. } => true,
            Settle::Extend { .. } => false,
        };
        let rx = self.enqueue(&mut state, changes).await?;
        drop(state);
        committed(rx).await?;
        // (Acks and extends create no earlier deadline: the timer task's
        // planned wake-up stays right, so it is not disturbed.)
        if wake_waiters && response.acked > 0 {
            self.wake();
        }
        Ok(response)
    }

    /// Releases every lease of a closed socket under the retry policy (in
    /// stream mode: the partitions of its consumer).
    pub async fn release_holder(&self, holder: u64, consumer: Option<&str>) -> Result<()> {
        let now = self.now();
        let (mut state, mut changes) = self.lock(now).await?;
        changes.extend(state.release_holder(holder, now));
        if state.mode() == weir_protocol::Mode::Stream {
            let consumer = consumer.unwrap_or(super::pull::DEFAULT_CONSUMER);
            changes.extend(state.release_consumer(consumer, now));
        }
        let rx = self.enqueue(&mut state, changes).await?;
        drop(state);
        committed(rx).await?;
        self.wake();
        Ok(())
    }
}
