//! The cluster view of [`Client`]: `GET /v1/cluster` — the nodes, their
//! health, and who leads each partition (a lone server reports itself).

use reqwest::Method;

use crate::{Client, ClusterInfo, Error};

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
}
