//! The cluster view of [`Client`]: `GET /v1/cluster` — the nodes, their
//! health, and who leads each partition (a lone server reports itself).

use reqwest::Method;

use crate::{AddNodeRequest, Client, ClusterInfo, Error, TransferLeaderRequest};

impl Client {
    /// The cluster as the server answering sees it: every node with its
    /// state and when it was last heard from, and per partition its leader,
    /// replicas, commit index and follower lag (only of the topics the
    /// caller may see).
    ///
    /// ```no_run
    /// # async fn demo(client: weir_client::Client) -> Result<(), weir_client::Error> {
    /// let cluster = client.cluster().await?;
    /// for node in &cluster.nodes {
    ///     println!("node {} is {:?}", node.id, node.state);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn cluster(&self) -> Result<ClusterInfo, Error> {
        Self::send(self.request(Method::GET, "/v1/cluster")).await
    }

    /// Adds node `id` (started with `--node-id`, `--peers` and
    /// `--cluster-listen`), which the other nodes reach at `address`: it
    /// catches up as a learner, then becomes a voter. Needs `admin` on
    /// every topic.
    pub async fn add_node(&self, id: u64, address: &str) -> Result<(), Error> {
        let body = AddNodeRequest {
            id,
            address: address.to_owned(),
        };
        no_content(self.request(Method::POST, "/v1/cluster/nodes").json(&body)).await
    }

    /// Removes node `id`. While it still holds partition copies the server
    /// answers 409 (`conflict`, saying they are being moved to the other
    /// nodes) and starts moving them: ask again until it succeeds.
    pub async fn remove_node(&self, id: u64) -> Result<(), Error> {
        no_content(self.request(Method::DELETE, &format!("/v1/cluster/nodes/{id}"))).await
    }

    /// Moves the metadata group's leadership to node `to`.
    pub async fn transfer_leader(&self, to: u64) -> Result<(), Error> {
        let body = TransferLeaderRequest { to };
        no_content(
            self.request(Method::POST, "/v1/cluster/transfer-leader")
                .json(&body),
        )
        .await
    }
}

/// Sends a request whose success has no body.
async fn no_content(rb: reqwest::RequestBuilder) -> Result<(), Error> {
    Client::receive(rb, |_| ()).await.map(drop)
}
