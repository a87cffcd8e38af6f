//! Brings parked messages back from the store (see `state/parked.rs`):
//! those due, as the tracking bound leaves room, and the next followers of
//! a key that freed. Run by the timer task; serialized with scans and
//! seeks by the scan lock, so a parked record is read and restored once.

use super::state::parked::KEY_QUEUE_IN_MEMORY;
use super::{committed, map_storage, Subscription};
use crate::broker::error::Result;

impl Subscription {
    /// One pass; true when messages came back (waiters should look).
    pub(super) async fn unpark(&self, now: u64) -> Result<bool> {
        let _scan = self.scan.lock().await;
        let (keys, hint, room) = {
            let mut state = self.state().await?;
            (
                state.take_key_refills(),
                state.parked_due_hint(),
                state.unpark_room(),
            )
        };
        let mut changed = false;
        for key in keys {
            let store = self.store.clone();
            let id = self.id;
            let read =
                tokio::task::spawn_blocking(move || store.key_parked(id, key, KEY_QUEUE_IN_MEMORY))
                    .await?;
            let mut state = self.state().await?;
            let parked = match read {
                Ok(parked) => parked,
                Err(e) => {
                    state.request_key_refill(key);
                    return Err(map_storage(e));
                }
            };
            let changes = state.unpark_key(key, parked, now);
            let rx = self.enqueue(&mut state, changes).await?;
            drop(state);
            committed(rx).await?;
            changed = true;
        }
        if room > 0 && hint.is_some_and(|due| due <= now) {
            let store = self.store.clone();
            let id = self.id;
            let parked = tokio::task::spawn_blocking(move || store.due_parked(id, now, room))
                .await?
                .map_err(map_storage)?;
            let mut state = self.state().await?;
            let changes = state.unpark_due(parked, now);
            let rx = self.enqueue(&mut state, changes).await?;
            drop(state);
            committed(rx).await?;
            let store = self.store.clone();
            let next = tokio::task::spawn_blocking(move || store.next_parked_due(id))
                .await?
                .map_err(map_storage)?;
            self.state().await?.set_parked_due_hint(next);
            changed = true;
        }
        Ok(changed)
    }
}
