//! `weir cluster`: what the answering node sees of the cluster — its
//! nodes with their state and when each was last heard from, the metadata
//! group, and who leads each partition (`--partitions`); `add-node`,
//! `remove-node` and `transfer-leader` change membership and leadership.

use clap::{Args, Subcommand};
use weir_client::{Client, ClusterInfo, Error};

use super::output::{outln, Printer, Table};

#[derive(Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    command: Option<ClusterCommand>,
    /// Also list every partition: leader, replicas, commit index and the
    /// lag of each follower.
    #[arg(long)]
    partitions: bool,
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Add a node started with --node-id, --peers and --cluster-listen: it
    /// catches up as a learner, then becomes a voter (admin).
    AddNode {
        /// Its --node-id.
        id: u64,
        /// Where the other nodes reach its --cluster-listen (host:port).
        address: String,
    },
    /// Remove a node (admin): its partition copies move to the other nodes
    /// first; progress is printed while they do.
    RemoveNode {
        /// Its node id.
        id: u64,
    },
    /// Make a node the metadata group's leader (admin).
    TransferLeader {
        /// The node to lead.
        node: u64,
    },
}

/// How long `remove-node` waits for a node's partition copies to move.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// Removes node `id`; while the server answers that its copies are still
/// moving to other nodes, says so on stderr and asks again.
async fn remove_node(client: &weir_client::Client, id: u64) -> Result<(), weir_client::Error> {
    let deadline = std::time::Instant::now() + DRAIN_TIMEOUT;
    loop {
        match client.remove_node(id).await {
            Err(e)
                if std::time::Instant::now() < deadline
                    && e.problem()
                        .is_some_and(|p| p.detail.contains("being moved")) =>
            {
                if let Some(problem) = e.problem() {
                    eprintln!("{}", problem.detail);
                }
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
            other => return other,
        }
    }
}

fn or_dash(value: Option<u64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

pub async fn run(args: ClusterArgs, client: &Client, printer: &Printer) -> Result<(), Error> {
    match args.command {
        Some(ClusterCommand::AddNode { id, address }) => {
            client.add_node(id, &address).await?;
            done(printer, &format!("node {id} added"));
            return Ok(());
        }
        Some(ClusterCommand::RemoveNode { id }) => {
            remove_node(client, id).await?;
            done(printer, &format!("node {id} removed"));
            return Ok(());
        }
        Some(ClusterCommand::TransferLeader { node }) => {
            client.transfer_leader(node).await?;
            done(printer, &format!("leadership moving to node {node}"));
            return Ok(());
        }
        None => {}
    }
    let cluster = client.cluster().await?;
    if printer.is_json() {
        printer.json(&cluster);
        return Ok(());
    }
    print_nodes(&cluster);
    if args.partitions {
        outln!("");
        print_partitions(&cluster);
    }
    Ok(())
}

fn done(printer: &Printer, what: &str) {
    if printer.is_json() {
        printer.json(&serde_json::json!({ "done": what }));
    } else {
        outln!("{what}");
    }
}

fn print_nodes(cluster: &ClusterInfo) {
    match &cluster.metadata {
        Some(m) => outln!(
            "node {} answering; metadata leader {} (term {}, commit index {})",
            cluster.node_id,
            or_dash(m.leader),
            m.term,
            m.commit_index
        ),
        None => outln!("node {} answering; running alone", cluster.node_id),
    }
    let mut table =
        Table::new(&["NODE", "STATE", "LAST SEEN MS", "ADDRESS", "API ADDRESS"]).right(&[0, 2]);
    for node in &cluster.nodes {
        table.row(vec![
            node.id.to_string(),
            node.state.as_str().to_owned(),
            or_dash(node.last_seen_ms),
            node.address.clone(),
            node.api_address.clone().unwrap_or_else(|| "-".to_owned()),
        ]);
    }
    table.print();
}

fn print_partitions(cluster: &ClusterInfo) {
    let mut table = Table::new(&[
        "TOPIC",
        "PARTITION",
        "LEADER",
        "REPLICAS",
        "COMMIT",
        "FOLLOWER LAG",
    ])
    .right(&[1, 2, 4]);
    for p in &cluster.partitions {
        let replicas: Vec<String> = p.replicas.iter().map(u64::to_string).collect();
        let lag: Vec<String> = p
            .followers
            .iter()
            .map(|f| format!("{}:{}", f.id, f.lag))
            .collect();
        table.row(vec![
            p.topic.clone(),
            p.partition.to_string(),
            or_dash(p.leader),
            replicas.join(","),
            p.commit_index.to_string(),
            if lag.is_empty() {
                "-".to_owned()
            } else {
                lag.join(" ")
            },
        ]);
    }
    table.print();
}
