//! Ids waiting for a settle request, grouped by [`Kind`]: ids of equal
//! kinds leave in one request (at most [`MAX_IDS`]), groups in the order
//! their first id arrived, and a group waits while a request of its class
//! is in flight. Pure data; the task in `task.rs` drives it.

use std::collections::VecDeque;

use super::Kind;

/// Most ack ids per request (the server takes up to 10,000).
pub(crate) const MAX_IDS: usize = 1000;

/// Waiting ids; `R` is where each one's outcome goes.
#[derive(Debug)]
pub(crate) struct Pending<R> {
    groups: VecDeque<(Kind, Vec<(String, R)>)>,
}

impl<R> Default for Pending<R> {
    fn default() -> Self {
        Pending {
            groups: VecDeque::new(),
        }
    }
}

impl<R> Pending<R> {
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    pub fn push(&mut self, kind: Kind, ack_id: String, reply: R) {
        match self.groups.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, ids)) => ids.push((ack_id, reply)),
            None => self.groups.push_back((kind, vec![(ack_id, reply)])),
        }
    }

    /// The next request: the oldest group whose class is not `busy`, up to
    /// [`MAX_IDS`] of its ids (the rest stay first in line).
    pub fn take(&mut self, busy: impl Fn(&Kind) -> bool) -> Option<(Kind, Vec<(String, R)>)> {
        let at = self.groups.iter().position(|(kind, _)| !busy(kind))?;
        let (kind, ids) = self.groups.get_mut(at)?;
        if ids.len() > MAX_IDS {
            let rest = ids.split_off(MAX_IDS);
            let batch = std::mem::replace(ids, rest);
            return Some((kind.clone(), batch));
        }
        self.groups.remove(at)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use super::*;
    use crate::Nack;

    fn ids<R>(batch: &(Kind, Vec<(String, R)>)) -> Vec<&str> {
        batch.1.iter().map(|(id, _)| id.as_str()).collect()
    }

    #[test]
    fn equal_kinds_share_a_request_in_arrival_order() {
        let mut pending = Pending::default();
        pending.push(Kind::Ack, "a".into(), ());
        pending.push(Kind::Nack(Nack::retry()), "n".into(), ());
        pending.push(Kind::Ack, "b".into(), ());
        pending.push(Kind::Nack(Nack::dead_letter()), "d".into(), ());
        pending.push(Kind::Extend(None), "e".into(), ());
        let first = pending.take(|_| false).unwrap();
        assert_eq!((first.0.clone(), ids(&first)), (Kind::Ack, vec!["a", "b"]));
        let second = pending.take(|_| false).unwrap();
        assert_eq!(ids(&second), vec!["n"]);
        let third = pending.take(|_| false).unwrap();
        assert_eq!(third.0, Kind::Nack(Nack::dead_letter()));
        assert_eq!(pending.take(|_| false).unwrap().0, Kind::Extend(None));
        assert!(pending.is_empty());
    }

    #[test]
    fn busy_classes_wait_and_big_groups_are_split() {
        let mut pending = Pending::default();
        for i in 0..(MAX_IDS + 5) {
            pending.push(Kind::Ack, format!("a{i}"), ());
        }
        let lease = Some(Duration::from_secs(5));
        pending.push(Kind::Extend(lease), "e".into(), ());
        let renewals = pending.take(|k| *k == Kind::Ack).unwrap();
        assert_eq!(renewals.0, Kind::Extend(lease));
        assert!(pending.take(|k| *k == Kind::Ack).is_none());
        let full = pending.take(|_| false).unwrap();
        assert_eq!(full.1.len(), MAX_IDS);
        let rest = pending.take(|_| false).unwrap();
        assert_eq!(ids(&rest)[0], format!("a{MAX_IDS}"));
        assert_eq!(rest.1.len(), 5);
        assert!(pending.is_empty());
    }
}
