//! Cluster options: which node this is, its peers, the node-to-node
//! listener and its secret. None of them set: the server runs alone.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{ConfigError, FileConfig};

/// Shortest cluster secret accepted, in bytes.
const MIN_SECRET_BYTES: usize = 16;

/// How this node joins a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterOptions {
    pub node_id: u64,
    /// Every member's node-to-node address, by node id (this node's too).
    pub peers: BTreeMap<u64, String>,
    /// Where the node-to-node listener binds.
    pub listen: SocketAddr,
    pub secret_file: PathBuf,
    pub heartbeat: Duration,
    /// Elections start after a random time in `[min, 2 × min]` without a
    /// leader.
    pub election_timeout: Duration,
}

impl ClusterOptions {
    /// Reads the shared secret (surrounding whitespace trimmed).
    pub fn read_secret(&self) -> Result<String, ConfigError> {
        let text =
            std::fs::read_to_string(&self.secret_file).map_err(|source| ConfigError::Read {
                path: self.secret_file.display().to_string(),
                source,
            })?;
        let secret = text.trim().to_owned();
        if secret.len() < MIN_SECRET_BYTES {
            return Err(invalid(
                "cluster_secret_file",
                format!("the secret must be at least {MIN_SECRET_BYTES} bytes"),
            ));
        }
        Ok(secret)
    }
}

fn invalid(option: &'static str, detail: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        option,
        detail: detail.into(),
    }
}

/// Parses `1=host:port,2=host:port,...`.
fn parse_peers(text: &str) -> Result<BTreeMap<u64, String>, ConfigError> {
    let mut peers = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, address) = item
            .split_once('=')
            .ok_or_else(|| invalid("peers", format!("`{item}`: expected <node id>=<host:port>")))?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| invalid("peers", format!("`{item}`: the node id must be a number")))?;
        let address = address.trim();
        let valid = address
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !valid {
            return Err(invalid(
                "peers",
                format!("`{item}`: the address must be host:port"),
            ));
        }
        if peers.insert(id, address.to_owned()).is_some() {
            return Err(invalid("peers", format!("node {id} is listed twice")));
        }
    }
    Ok(peers)
}

/// The cluster options, if any is set; all-or-nothing.
pub(super) fn resolve(f: &FileConfig) -> Result<Option<ClusterOptions>, ConfigError> {
    let any = f.node_id.is_some()
        || f.peers.as_deref().is_some_and(|p| !p.trim().is_empty())
        || f.cluster_listen.as_deref().is_some_and(|l| !l.is_empty())
        || f.cluster_secret_file.is_some();
    if !any {
        return Ok(None);
    }
    let missing = |option: &'static str| {
        invalid(
            option,
            "a cluster needs --node-id, --peers, --cluster-listen and --cluster-secret-file",
        )
    };
    let node_id = f.node_id.ok_or_else(|| missing("node_id"))?;
    if node_id == 0 {
        return Err(invalid("node_id", "node ids start at 1"));
    }
    let peers = parse_peers(f.peers.as_deref().ok_or_else(|| missing("peers"))?)?;
    if !peers.contains_key(&node_id) {
        return Err(invalid(
            "peers",
            format!("must list this node ({node_id}=<its --cluster-listen address>) too"),
        ));
    }
    if peers.contains_key(&0) {
        return Err(invalid("peers", "node ids start at 1"));
    }
    let listen_text = f
        .cluster_listen
        .as_deref()
        .filter(|l| !l.is_empty())
        .ok_or_else(|| missing("cluster_listen"))?;
    let listen = listen_text.parse().map_err(|e| {
        invalid(
            "cluster_listen",
            format!("`{listen_text}`: {e} (expected host:port)"),
        )
    })?;
    let secret_file = f
        .cluster_secret_file
        .clone()
        .ok_or_else(|| missing("cluster_secret_file"))?;
    let heartbeat = f.cluster_heartbeat_ms.unwrap_or(300);
    let election = f.cluster_election_timeout_ms.unwrap_or(1500);
    if heartbeat == 0 || election < 3 * heartbeat {
        return Err(invalid(
            "cluster_election_timeout_ms",
            format!("must be at least 3 × cluster_heartbeat_ms ({heartbeat}), and the heartbeat positive"),
        ));
    }
    Ok(Some(ClusterOptions {
        node_id,
        peers,
        listen,
        secret_file,
        heartbeat: Duration::from_millis(heartbeat),
        election_timeout: Duration::from_millis(election),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_and_refuse_bad_items() {
        let p = parse_peers("1=127.0.0.1:9001, 2=node-2.weir:9001,3=[::1]:9001").unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[&2], "node-2.weir:9001");
        for bad in ["1", "x=a:1", "1=a", "1=a:x", "1=:9", "1=a:1,1=b:2"] {
            assert!(parse_peers(bad).is_err(), "{bad}");
        }
    }
}
