//! The metadata group's state machine: what every node agrees on about the
//! cluster. Today: the membership (kept by openraft) and each node's
//! client-facing address; topics, subscriptions and partition assignments
//! join it next (`docs/cluster.md`).
//!
//! Its state is small: the whole of it is stored as one value after every
//! applied batch (synced before any proposer is answered), and a snapshot
//! is that value.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Cursor};
use std::sync::{Arc, RwLock};

use futures_util::TryStreamExt;
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use serde::{Deserialize, Serialize};

use super::codec::{decode, encode};
use super::types::{GroupId, LogId, NodeId, Snapshot, SnapshotMeta, StoredMembership, TypeConfig};
use crate::storage::{RaftValue, Store, WriteSet};

/// A change proposed to the metadata group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaCommand {
    /// A node says where clients reach it.
    RegisterNode { id: NodeId, api_address: String },
}

impl fmt::Display for MetaCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetaCommand::RegisterNode { id, api_address } => {
                write!(f, "register node {id} at {api_address}")
            }
        }
    }
}

/// The result of an applied command.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaResponse {
    #[default]
    Done,
}

/// What the metadata group knows about one node beyond the membership.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisteredNode {
    pub api_address: String,
}

/// The replicated metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaData {
    pub nodes: BTreeMap<NodeId, RegisteredNode>,
}

impl MetaData {
    fn apply(&mut self, command: &MetaCommand) -> MetaResponse {
        match command {
            MetaCommand::RegisterNode { id, api_address } => {
                self.nodes.insert(
                    *id,
                    RegisteredNode {
                        api_address: api_address.clone(),
                    },
                );
            }
        }
        MetaResponse::Done
    }
}

/// Everything the state machine stores, in one value.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Applied {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    data: MetaData,
}

/// The metadata state machine over the store; cheap to clone (shared).
#[derive(Clone)]
pub struct MetaStateMachine {
    store: Arc<Store>,
    group: GroupId,
    state: Arc<RwLock<Applied>>,
}

impl MetaStateMachine {
    /// Loads the applied state of `group` from the store.
    pub fn load(store: Arc<Store>, group: GroupId) -> io::Result<Self> {
        let state = match store
            .raft_value(group, RaftValue::State)
            .map_err(io::Error::other)?
        {
            Some(bytes) => decode(&bytes)?,
            None => Applied::default(),
        };
        Ok(MetaStateMachine {
            store,
            group,
            state: Arc::new(RwLock::new(state)),
        })
    }

    /// A copy of the applied metadata.
    pub fn data(&self) -> MetaData {
        self.read().data.clone()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Applied> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores `next` durably, then makes it the state in memory.
    async fn save(&self, next: Applied) -> io::Result<()> {
        let mut set = WriteSet::new();
        set.put_raft_value(self.group, RaftValue::State, encode(&next)?);
        self.store.commit(set).await.map_err(io::Error::other)?;
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = next;
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for MetaStateMachine {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn build_snapshot(&mut self) -> io::Result<Snapshot> {
        let state = self.read().clone();
        let meta = SnapshotMeta {
            last_log_id: state.last_applied,
            last_membership: state.membership.clone(),
        };
        Ok(Snapshot {
            meta,
            snapshot: Cursor::new(encode(&state)?),
        })
    }
}

impl RaftStateMachine<TypeConfig> for MetaStateMachine {
    type SnapshotData = Cursor<Vec<u8>>;
    type SnapshotBuilder = MetaStateMachine;

    async fn applied_state(&mut self) -> io::Result<(Option<LogId>, StoredMembership)> {
        let state = self.read();
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<S>(&mut self, mut entries: S) -> io::Result<()>
    where
        S: futures_util::Stream<Item = io::Result<EntryResponder<TypeConfig>>>
            + Unpin
            + OptionalSend,
    {
        let mut next = self.read().clone();
        let mut answers = Vec::new();
        while let Some((entry, responder)) = entries.try_next().await? {
            next.last_applied = Some(entry.log_id);
            let response = match &entry.payload {
                EntryPayload::Blank => MetaResponse::Done,
                EntryPayload::Normal(command) => next.data.apply(command),
                EntryPayload::Membership(m) => {
                    next.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                    MetaResponse::Done
                }
            };
            if let Some(responder) = responder {
                answers.push((responder, response));
            }
        }
        // Proposers hear of their change only once it is stored.
        self.save(next).await?;
        for (responder, response) in answers {
            responder.send(response);
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Self::SnapshotData,
    ) -> io::Result<()> {
        let mut state: Applied = decode(snapshot.get_ref())?;
        state.last_applied = meta.last_log_id;
        state.membership = meta.last_membership.clone();
        self.save(state).await
    }

    async fn get_current_snapshot(&mut self) -> io::Result<Option<Snapshot>> {
        // The state is stored after every applied batch, so a snapshot of
        // it is always at hand (and as recent as can be).
        if self.read().last_applied.is_none() {
            return Ok(None);
        }
        self.build_snapshot().await.map(Some)
    }
}
