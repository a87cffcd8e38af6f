//! The node-to-node listener's routes: the Raft RPCs of every group the
//! node holds, metadata proposals forwarded to the metadata leader, and the
//! node's status, and client requests other nodes forward to this one's
//! API (`/forward/...`, see `forward.rs`). Every request must carry the cluster secret and name this
//! node as its target; anything else is refused before it reaches a group.

use std::io::Cursor;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use axum::{Json, Router};
use openraft::async_runtime::WatchReceiver;
use openraft::raft::{AppendEntriesRequest, TransferLeaderRequest, VoteRequest};
use subtle::ConstantTimeEq;

use super::command::Command;
use super::groups::Groups;
use super::incarnation::Hello;
use super::membership::MembershipChange;
use super::metadata::{MetaCommand, Proposed};
use super::network::{PeerStatus, Peers, SnapshotBody, FROM_HEADER, TO_HEADER};
use super::node::Cluster;
use super::produce::ForwardedAppend;
use super::read::ForwardedRead;
use super::types::{GroupId, Raft, Snapshot, TypeConfig, METADATA_GROUP};

/// Largest RPC body accepted (a batch of entries or a snapshot).
const MAX_BODY: usize = 64 << 20;

/// What the routes reach.
#[derive(Clone)]
pub struct RpcState {
    pub peers: Arc<Peers>,
    pub metadata: Raft,
    pub groups: Arc<Groups>,
    /// The node itself (weak: the listener must not keep it alive).
    pub cluster: std::sync::Weak<Cluster>,
    /// Whether Raft RPCs are served yet (a node on a new incarnation
    /// first tells its peers, `incarnation.rs`).
    pub raft_open: Arc<std::sync::atomic::AtomicBool>,
}

impl RpcState {
    /// The group `group`, or the answer saying this node holds none such
    /// (never created implicitly).
    fn group(&self, group: GroupId) -> Result<Raft, Box<Response>> {
        if group == METADATA_GROUP {
            Ok(self.metadata.clone())
        } else if let Some(held) = self.groups.get(group) {
            Ok(held.raft.clone())
        } else {
            Err(Box::new(
                (
                    StatusCode::NOT_FOUND,
                    format!("no Raft group {group} on this node"),
                )
                    .into_response(),
            ))
        }
    }
}

/// The listener's router.
pub fn router(state: RpcState) -> Router {
    Router::new()
        .route("/raft/{group}/append", post(append))
        .route("/raft/{group}/vote", post(vote))
        .route("/raft/{group}/snapshot", post(snapshot))
        .route("/raft/{group}/transfer-leader", post(transfer_leader))
        .route("/partition/{group}/append", post(partition_append))
        .route("/partition/{group}/read", post(partition_read))
        .route(
            "/partition/{group}/subscriptions",
            post(partition_subscriptions),
        )
        .route("/hello", post(hello))
        .route("/meta/propose", post(propose))
        .route("/meta/membership", post(membership))
        .route("/meta/read-index", post(read_index))
        .route("/status", post(status))
        .route("/forward/{*rest}", any(forward_in))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .with_state(state)
}

/// Refuses requests without the secret, or meant for another node.
async fn authenticate(
    State(state): State<RpcState>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let expected = state.peers.secret();
    let matches: bool = presented.as_bytes().ct_eq(expected.as_bytes()).into();
    if !matches {
        tracing::warn!(target: "weir::audit", "cluster request refused: wrong or missing cluster secret");
        return (StatusCode::UNAUTHORIZED, "cluster secret required").into_response();
    }
    let id_of = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
    };
    if id_of(TO_HEADER) != Some(state.peers.me()) {
        return (
            StatusCode::MISDIRECTED_REQUEST,
            format!("this is node {}", state.peers.me()),
        )
            .into_response();
    }
    if let Some(from) = id_of(FROM_HEADER) {
        state.peers.saw(from);
    }
    next.run(request).await
}

fn unavailable(e: impl std::fmt::Display) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response()
}

/// Runs `call` on group `group` and answers with its JSON result (503 when
/// the group failed, 404 when this node holds no such group).
async fn on_group<F, Fut, T, E>(state: &RpcState, group: GroupId, call: F) -> Response
where
    F: FnOnce(Raft) -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
    T: serde::Serialize,
    E: std::fmt::Display,
{
    if !state.raft_open.load(std::sync::atomic::Ordering::SeqCst) {
        return unavailable("this node starts on an empty data directory and is telling its peers");
    }
    match state.group(group) {
        Ok(raft) => match call(raft).await {
            Ok(answer) => Json(answer).into_response(),
            Err(e) => unavailable(e),
        },
        Err(refused) => *refused,
    }
}

/// Runs `call` on the node and answers with its JSON result (503 while
/// the node is stopping).
async fn on_node<F, Fut, T>(state: &RpcState, call: F) -> Response
where
    F: FnOnce(Arc<Cluster>) -> Fut,
    Fut: std::future::Future<Output = T>,
    T: serde::Serialize,
{
    match state.cluster.upgrade() {
        Some(cluster) => Json(call(cluster).await).into_response(),
        None => unavailable("the node is stopping"),
    }
}

async fn append(
    State(state): State<RpcState>,
    Path(group): Path<GroupId>,
    Json(rpc): Json<AppendEntriesRequest<TypeConfig>>,
) -> Response {
    on_group(&state, group, |raft| async move {
        raft.append_entries(rpc).await
    })
    .await
}

async fn vote(
    State(state): State<RpcState>,
    Path(group): Path<GroupId>,
    Json(rpc): Json<VoteRequest<TypeConfig>>,
) -> Response {
    on_group(&state, group, |raft| async move { raft.vote(rpc).await }).await
}

async fn snapshot(
    State(state): State<RpcState>,
    Path(group): Path<GroupId>,
    Json(body): Json<SnapshotBody>,
) -> Response {
    let snapshot = Snapshot {
        meta: body.meta,
        snapshot: Cursor::new(body.data),
    };
    on_group(&state, group, |raft| async move {
        raft.install_full_snapshot(body.vote, snapshot).await
    })
    .await
}

async fn transfer_leader(
    State(state): State<RpcState>,
    Path(group): Path<GroupId>,
    Json(req): Json<TransferLeaderRequest<TypeConfig>>,
) -> Response {
    on_group(&state, group, |raft| async move {
        raft.handle_transfer_leader(req).await
    })
    .await
}

/// A metadata change forwarded by another node; applied here only while
/// this node leads the metadata group.
async fn propose(State(state): State<RpcState>, Json(command): Json<MetaCommand>) -> Response {
    match state.metadata.client_write(Command::Meta(command)).await {
        Ok(answer) => Json(Proposed {
            index: answer.log_id.index,
            response: answer.data.into_meta(),
        })
        .into_response(),
        Err(e) => (StatusCode::CONFLICT, e.to_string()).into_response(),
    }
}

/// A produce share forwarded by another node to this partition leader.
async fn partition_append(
    State(state): State<RpcState>,
    Path(group): Path<GroupId>,
    Json(body): Json<ForwardedAppend>,
) -> Response {
    on_node(&state, |cluster| async move {
        cluster.take_forwarded(group, body).await
    })
    .await
}

/// Subscription updates forwarded by another node to this partition leader.
async fn partition_subscriptions(
    State(state): State<RpcState>,
    Path(group): Path<GroupId>,
    Json(updates): Json<Vec<super::command::SubUpdate>>,
) -> Response {
    on_node(&state, |cluster| async move {
        cluster.propose_here(group, updates).await
    })
    .await
}

/// A read forwarded by another node to this partition leader.
async fn partition_read(
    State(state): State<RpcState>,
    Path(group): Path<GroupId>,
    Json(body): Json<ForwardedRead>,
) -> Response {
    on_node(&state, |cluster| async move {
        cluster.serve_forwarded_read(group, body).await
    })
    .await
}

/// A client request another node forwarded to this node's API: the
/// caller's credentials are put back where the API reads them.
async fn forward_in(State(state): State<RpcState>, request: Request) -> Response {
    use super::forward::{CLIENT_AUTHORIZATION, CLIENT_CERTIFICATE};
    use axum::http::header::AUTHORIZATION;
    use tower::ServiceExt;
    let Some(cluster) = state.cluster.upgrade() else {
        return unavailable("the node is stopping");
    };
    let Some(api) = cluster.api() else {
        return unavailable("the node is starting");
    };
    let (mut parts, body) = request.into_parts();
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let inner = target.strip_prefix("/forward").unwrap_or(target);
    parts.uri = match inner.parse() {
        Ok(uri) => uri,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    // Only the connection's upgrade goes on (not this router's own path
    // parameters, which the API's routes would read as theirs).
    let upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
    parts.extensions = axum::http::Extensions::new();
    if let Some(upgrade) = upgrade {
        parts.extensions.insert(upgrade);
    }
    parts.headers.remove(AUTHORIZATION);
    if let Some(value) = parts.headers.remove(CLIENT_AUTHORIZATION) {
        parts.headers.insert(AUTHORIZATION, value);
    }
    if let Some(value) = parts.headers.remove(CLIENT_CERTIFICATE) {
        parts.extensions.insert(crate::api::guard::PeerIdentity {
            certificate_name: value.to_str().ok().map(str::to_owned),
        });
    }
    match api.oneshot(Request::from_parts(parts, body)).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// The metadata leader's read index (`null` when this node does not lead).
async fn read_index(State(state): State<RpcState>) -> Response {
    on_node(&state, |cluster| async move {
        cluster.metadata_read_index().await
    })
    .await
}

/// A peer starting over on an empty data directory.
async fn hello(State(state): State<RpcState>, Json(hello): Json<Hello>) -> Response {
    on_node(
        &state,
        |cluster| async move { cluster.welcome(&hello).await },
    )
    .await
}

/// A membership change forwarded by another node (this node leads the
/// metadata group, or the forwarder retries elsewhere).
async fn membership(
    State(state): State<RpcState>,
    Json(change): Json<MembershipChange>,
) -> Response {
    on_node(&state, |cluster| async move {
        cluster.apply_membership(change).await
    })
    .await
}

async fn status(State(state): State<RpcState>) -> Response {
    match state.metadata.is_initialized().await {
        Ok(initialized) => {
            let me = state.peers.me();
            let mut committed = state.groups.committed_led_by(me);
            let meta = state.metadata.metrics().borrow_watched().clone();
            if meta.current_leader == Some(me) {
                committed.insert(METADATA_GROUP, meta.local_committed.map_or(0, |l| l.index));
            }
            Json(PeerStatus {
                node_id: me,
                initialized,
                leaders: state.groups.leaders(),
                committed,
            })
        }
        .into_response(),
        Err(e) => unavailable(e),
    }
}
