//! The state machine of any group: the metadata's or a partition's. One
//! type lets every group share one `Raft` type, one network and one
//! listener.

use std::io::{self, Cursor};

use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{OptionalSend, RaftSnapshotBuilder};

use super::metadata::MetaStateMachine;
use super::partition::PartitionMachine;
use super::types::{LogId, Snapshot, SnapshotMeta, StoredMembership, TypeConfig};

/// A group's state machine.
#[derive(Clone)]
pub enum GroupMachine {
    Meta(MetaStateMachine),
    Partition(PartitionMachine),
}

impl RaftSnapshotBuilder<TypeConfig> for GroupMachine {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn build_snapshot(&mut self) -> io::Result<Snapshot> {
        match self {
            GroupMachine::Meta(m) => m.build_snapshot().await,
            GroupMachine::Partition(p) => p.build_snapshot().await,
        }
    }
}

impl RaftStateMachine<TypeConfig> for GroupMachine {
    type SnapshotData = Cursor<Vec<u8>>;
    type SnapshotBuilder = GroupMachine;

    async fn applied_state(&mut self) -> io::Result<(Option<LogId>, StoredMembership)> {
        match self {
            GroupMachine::Meta(m) => m.applied_state().await,
            GroupMachine::Partition(p) => p.applied_state().await,
        }
    }

    async fn apply<S>(&mut self, entries: S) -> io::Result<()>
    where
        S: futures_util::Stream<Item = io::Result<EntryResponder<TypeConfig>>>
            + Unpin
            + OptionalSend,
    {
        match self {
            GroupMachine::Meta(m) => m.apply(entries).await,
            GroupMachine::Partition(p) => p.apply(entries).await,
        }
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Self::SnapshotData,
    ) -> io::Result<()> {
        match self {
            GroupMachine::Meta(m) => m.install_snapshot(meta, snapshot).await,
            GroupMachine::Partition(p) => p.install_snapshot(meta, snapshot).await,
        }
    }

    async fn get_current_snapshot(&mut self) -> io::Result<Option<Snapshot>> {
        match self {
            GroupMachine::Meta(m) => m.get_current_snapshot().await,
            GroupMachine::Partition(p) => p.get_current_snapshot().await,
        }
    }
}
