//! The fault campaign: producers write through every node of a 3-node
//! cluster, and consumers pull and ack a subscription through every node,
//! while faults hit it — kill -9 of a partition leader, SIGSTOP of
//! a leader beyond the election timeout (then SIGCONT), a leader cut off
//! by a network partition, a follower wiped and rejoining, and a rolling
//! restart of every node. Afterwards every replica must hold the same
//! messages (no divergence) and the history checker must find nothing
//! acknowledged lost, duplicated or reordered, no message delivered again
//! after its ack was confirmed, and — once the subscription is drained —
//! every acknowledged message delivered and settled. The write gap each
//! leader fault causes is measured and printed.
//!
//! `WEIR_CLUSTER_CYCLES` (default: one of each fault) sets how many faults
//! one run injects; `make soak-cluster` runs many, in random order
//! (`WEIR_FAULT_SEED` replays one).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use weir_tests::history::{Delivery, History, Mode, Outcome, Position, Produce, SubscriptionSpec};

use crate::nodes::Cluster;
use crate::rng::{env_count, seed, Rng};

const TOPIC: &str = "ledger";
const PARTITIONS: u64 = 3;
const PRODUCERS: u64 = 6;
const SUBSCRIPTION: &str = "audit";
/// The subscription's name in the history.
const SUB_NAME: &str = "ledger/audit";
const CONSUMERS: u64 = 2;
/// Leases: short, so deliveries whose ack failed come back while draining.
const ACK_TIMEOUT_MS: u64 = 4000;
const WITHIN: Duration = Duration::from_secs(60);
/// How long one message is retried before its producer gives up on it.
const RETRY_FOR: Duration = Duration::from_secs(60);
/// Longer than the test cluster's election timeout range (600–1200 ms).
const BEYOND_ELECTION: Duration = Duration::from_millis(2500);

/// Where each node answers now (`None`: down); producers read it.
type Endpoints = Arc<Mutex<BTreeMap<u64, Option<String>>>>;

/// When each producer's messages were acknowledged.
type Acks = Arc<Mutex<BTreeMap<u64, Vec<Instant>>>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    KillLeader,
    PauseLeader,
    IsolateLeader,
    WipeFollower,
    RollingRestart,
}

const ALL: [Fault; 5] = [
    Fault::KillLeader,
    Fault::PauseLeader,
    Fault::IsolateLeader,
    Fault::WipeFollower,
    Fault::RollingRestart,
];

fn endpoint(cluster: &Cluster, id: u64) -> String {
    cluster.node(id).url("")
}

fn set_endpoint(endpoints: &Endpoints, id: u64, url: Option<String>) {
    endpoints.lock().unwrap().insert(id, url);
}

/// A client with a short timeout (a request cut by a fault is unknown,
/// not hung) that forgets idle connections to restarted nodes quickly.
fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(2))
        .build()
        .unwrap()
}

/// The partition a producer writes to (its key hashes there).
fn key_of(producer: u64) -> String {
    format!("producer-{producer}")
}

/// One producer: message after message, each retried (same idempotency
/// id) through the next node until acknowledged.
async fn produce_loop(
    producer: u64,
    endpoints: Endpoints,
    history: History,
    acks: Acks,
    stop: Arc<AtomicBool>,
) {
    let http = http_client();
    let key = key_of(producer);
    let mut turn = producer;
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let value = format!("p{producer}-{n}");
        let message = Produce::new(TOPIC, &value)
            .key(&key)
            .id(&value)
            .sequence(format!("p{producer}"), n);
        let started = Instant::now();
        loop {
            turn += 1;
            let target = {
                let endpoints = endpoints.lock().unwrap();
                let up: Vec<String> = endpoints.values().flatten().cloned().collect();
                up.get(turn as usize % up.len().max(1)).cloned()
            };
            let Some(base) = target else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let invoked = history.tick();
            let body = json!({"messages": [{"key": key, "value": value, "id": value}]});
            let sent = http
                .post(format!("{base}/v1/topics/{TOPIC}/messages"))
                .json(&body)
                .send()
                .await;
            let (outcome, position) = match sent {
                Ok(reply) => {
                    let status = reply.status().as_u16();
                    let outcome = Outcome::from_status(status);
                    let answer = reply.json::<Value>().await;
                    assert_ne!(
                        outcome,
                        Outcome::Failed,
                        "a produce through {base} was refused: {status} {answer:?}"
                    );
                    let position = match answer {
                        Ok(v) if outcome == Outcome::Ok => {
                            let r = &v["results"][0];
                            r["partition"]
                                .as_u64()
                                .zip(r["offset"].as_u64())
                                .map(|(p, o)| Position::new(p, o))
                        }
                        _ => None,
                    };
                    (outcome, position)
                }
                Err(_) => (Outcome::Unknown, None),
            };
            history.record_produce(message.clone(), invoked, outcome, position);
            if outcome == Outcome::Ok {
                acks.lock()
                    .unwrap()
                    .entry(producer)
                    .or_default()
                    .push(Instant::now());
                break;
            }
            if started.elapsed() > RETRY_FOR || stop.load(Ordering::SeqCst) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        n += 1;
    }
}

/// The next node that is up, in turn.
fn next_up(endpoints: &Endpoints, turn: &mut u64) -> Option<String> {
    *turn += 1;
    let endpoints = endpoints.lock().unwrap();
    let up: Vec<String> = endpoints.values().flatten().cloned().collect();
    up.get(*turn as usize % up.len().max(1)).cloned()
}

/// One consumer: pulls through one node, acks through the next, records
/// every delivery and ack. Runs until `stop`, then drains: it ends after
/// enough empty pulls in a row that every lease taken before has expired.
async fn consume_loop(
    consumer: u64,
    endpoints: Endpoints,
    history: History,
    stop: Arc<AtomicBool>,
) {
    let http = http_client();
    let base_path = format!("/v1/topics/{TOPIC}/subscriptions/{SUBSCRIPTION}");
    let mut turn = consumer;
    let mut empty_in_a_row = 0u32;
    let drained_after = (ACK_TIMEOUT_MS / 1000 + 3) as u32;
    let deadline = Instant::now() + Duration::from_secs(600);
    while Instant::now() < deadline {
        let stopping = stop.load(Ordering::SeqCst);
        if stopping && empty_in_a_row >= drained_after {
            return;
        }
        let Some(base) = next_up(&endpoints, &mut turn) else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let pulled = history.tick();
        let body = json!({"max_messages": 50, "wait_ms": 1000});
        let answer = match http
            .post(format!("{base}{base_path}/pull"))
            .json(&body)
            .send()
            .await
        {
            Ok(reply) if reply.status().is_success() => reply.json::<Value>().await.ok(),
            _ => None,
        };
        let Some(answer) = answer else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let messages = answer["messages"].as_array().cloned().unwrap_or_default();
        if messages.is_empty() {
            if stopping {
                empty_in_a_row += 1;
            }
            continue;
        }
        empty_in_a_row = 0;
        let mut received = Vec::new();
        for m in &messages {
            let position = Position::new(
                m["partition"].as_u64().unwrap(),
                m["offset"].as_u64().unwrap(),
            );
            let delivery = Delivery {
                subscription: SUB_NAME.to_owned(),
                value: m["value"].as_str().unwrap_or_default().to_owned(),
                position,
                attempt: m["attempt"].as_u64().unwrap_or(0) as u32,
            };
            received.push((
                history.record_delivery(delivery, pulled),
                m["ack_id"].as_str().unwrap().to_owned(),
            ));
        }
        // Acked through another node than the one that delivered.
        let Some(base) = next_up(&endpoints, &mut turn) else {
            continue;
        };
        let ack_ids: Vec<&String> = received.iter().map(|(_, id)| id).collect();
        let invoked = history.tick();
        let (outcome, unknown) = match http
            .post(format!("{base}{base_path}/ack"))
            .json(&json!({ "ack_ids": ack_ids }))
            .send()
            .await
        {
            Ok(reply) => {
                let outcome = Outcome::from_status(reply.status().as_u16());
                let answer = reply.json::<Value>().await.unwrap_or_default();
                let unknown: Vec<String> = answer["unknown"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|id| id.as_str().map(str::to_owned))
                    .collect();
                (outcome, unknown)
            }
            Err(_) => (Outcome::Unknown, Vec::new()),
        };
        for (id, ack_id) in &received {
            let outcome = if outcome == Outcome::Ok && unknown.contains(ack_id) {
                // A lease the failover dropped: delivered again later.
                Outcome::Failed
            } else {
                outcome
            };
            history.record_ack(*id, invoked, outcome);
        }
    }
    panic!("consumer {consumer} did not drain the subscription in time");
}

/// The leader of each partition of the topic, as node `id` sees it.
async fn partition_leaders(cluster: &Cluster, id: u64) -> BTreeMap<u64, u64> {
    let Some(view) = cluster.view(id).await else {
        return BTreeMap::new();
    };
    view["partitions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["topic"] == TOPIC)
        .filter_map(|p| Some((p["partition"].as_u64()?, p["leader"].as_u64()?)))
        .collect()
}

/// Waits until node `id` answers `/readyz` 200 (caught up): clients
/// behind a load balancer reach a restarted node only then.
async fn ready(cluster: &Cluster, id: u64) {
    let deadline = Instant::now() + WITHIN;
    loop {
        let reply = cluster.node(id).get("/readyz").await;
        if reply.status == 200 {
            return;
        }
        if Instant::now() >= deadline {
            let logs: Vec<String> = cluster
                .nodes
                .iter()
                .map(|(n, server)| {
                    let tail = server.log_tail();
                    let notable: Vec<&str> = tail
                        .lines()
                        .filter(|l| {
                            l.contains("panicked at")
                                || l.contains("Panicked")
                                || l.contains("StorageError")
                                || l.contains("fatal")
                        })
                        .take(20)
                        .collect();
                    format!("node {n}:\n{}", notable.join("\n"))
                })
                .collect();
            let view = cluster.view(id).await;
            panic!(
                "node {id} not ready: {}\n{}\nits view: {view:#?}\nits log:\n{}",
                reply.text,
                logs.join("\n"),
                cluster.node(id).log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until every node is ready.
async fn all_ready(cluster: &Cluster) {
    for &id in cluster.nodes.keys() {
        ready(cluster, id).await;
    }
}

/// Every message of the topic as node `id` serves it.
async fn contents(cluster: &Cluster, id: u64) -> BTreeMap<u64, Vec<(u64, Value)>> {
    let mut out = BTreeMap::new();
    for partition in 0..PARTITIONS {
        let messages = cluster.node(id).read_all(TOPIC, partition).await;
        out.insert(
            partition,
            messages
                .iter()
                .map(|m| (m["offset"].as_u64().unwrap(), m["value"].clone()))
                .collect(),
        );
    }
    out
}

/// Waits until every node serves the same messages; returns them.
async fn converged(cluster: &Cluster) -> BTreeMap<u64, Vec<(u64, Value)>> {
    let deadline = Instant::now() + WITHIN;
    loop {
        let mut views = Vec::new();
        for &id in cluster.nodes.keys() {
            views.push(contents(cluster, id).await);
        }
        if views.iter().all(|v| v == &views[0]) {
            return views.swap_remove(0);
        }
        let sizes: Vec<Vec<usize>> = views
            .iter()
            .map(|v| v.values().map(Vec::len).collect())
            .collect();
        assert!(
            Instant::now() < deadline,
            "replicas diverge (messages per partition, per node): {sizes:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The longest wait for an acknowledgement around `at`, among the
/// producers writing to `partitions`.
fn gap_around(
    acks: &Acks,
    at: Instant,
    partitions: &[u64],
    of_partition: &BTreeMap<u64, u64>,
) -> Option<Duration> {
    let acks = acks.lock().unwrap();
    acks.iter()
        .filter(|(producer, _)| {
            of_partition
                .get(producer)
                .is_some_and(|p| partitions.contains(p))
        })
        .filter_map(|(_, times)| {
            let before = times.iter().rev().find(|t| **t <= at)?;
            let after = times.iter().find(|t| **t > at)?;
            Some(*after - *before)
        })
        .max()
}

/// Injects one fault; returns the partitions whose leader it hit and when.
async fn inject(
    cluster: &mut Cluster,
    endpoints: &Endpoints,
    fault: Fault,
    rng: &mut Rng,
) -> Option<(Instant, Vec<u64>)> {
    let leaders = partition_leaders(cluster, 1).await;
    let victim = leaders
        .values()
        .copied()
        .nth(rng.range(0, leaders.len() as u64) as usize)
        .unwrap_or(1);
    let led: Vec<u64> = leaders
        .iter()
        .filter(|(_, l)| **l == victim)
        .map(|(p, _)| *p)
        .collect();
    eprintln!("fault {fault:?} on node {victim} (leads partitions {led:?})");
    match fault {
        Fault::KillLeader => {
            set_endpoint(endpoints, victim, None);
            let at = Instant::now();
            cluster.nodes.get_mut(&victim).unwrap().kill9();
            tokio::time::sleep(BEYOND_ELECTION).await;
            cluster.restart(victim);
            ready(cluster, victim).await;
            set_endpoint(endpoints, victim, Some(endpoint(cluster, victim)));
            Some((at, led))
        }
        Fault::PauseLeader => {
            let pid = cluster.node(victim).pid().to_string();
            let at = Instant::now();
            signal("-STOP", &pid);
            tokio::time::sleep(BEYOND_ELECTION).await;
            signal("-CONT", &pid);
            Some((at, led))
        }
        Fault::IsolateLeader => {
            let at = Instant::now();
            cluster.mesh.isolate(victim);
            tokio::time::sleep(BEYOND_ELECTION).await;
            cluster.mesh.heal();
            Some((at, led))
        }
        Fault::WipeFollower => {
            let follower = (1..=3)
                .find(|id| !leaders.values().any(|l| l == id))
                .unwrap_or_else(|| (1..=3).find(|id| *id != victim).unwrap());
            eprintln!("  wiping node {follower} instead (leads nothing)");
            set_endpoint(endpoints, follower, None);
            cluster.nodes.get_mut(&follower).unwrap().kill9();
            wipe(cluster.node(follower).data_dir());
            cluster.restart(follower);
            ready(cluster, follower).await;
            set_endpoint(endpoints, follower, Some(endpoint(cluster, follower)));
            None
        }
        Fault::RollingRestart => {
            for id in 1..=3 {
                set_endpoint(endpoints, id, None);
                cluster.nodes.get_mut(&id).unwrap().stop();
                cluster.restart(id);
                ready(cluster, id).await;
                set_endpoint(endpoints, id, Some(endpoint(cluster, id)));
            }
            None
        }
    }
}

fn signal(which: &str, pid: &str) {
    let status = std::process::Command::new("kill")
        .args([which, pid])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {which} {pid}: {status}");
}

/// Removes everything in a (stopped) node's data directory.
fn wipe(dir: &std::path::Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path).unwrap();
        } else {
            std::fs::remove_file(&path).unwrap();
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

// Several workers: stopping a node blocks one thread while it waits for
// the process, and the proxy mesh and the producers must go on meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn no_acknowledged_write_is_lost_or_diverges_under_faults() {
    let mut rng = Rng::new(seed("cluster faults"));
    let cycles = env_count("WEIR_CLUSTER_CYCLES", ALL.len() as u64);
    let mut cluster = Cluster::start(3).await;
    cluster.agreed_leader(&[1, 2, 3], WITHIN).await;
    let created = cluster
        .node(1)
        .put_json(
            &format!("/v1/topics/{TOPIC}"),
            &json!({"partitions": PARTITIONS, "dedupe_window_ms": 3_600_000}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    all_ready(&cluster).await;
    let subscribed = create_subscription(&cluster).await;
    assert_eq!(subscribed, 201);

    let endpoints: Endpoints = Arc::new(Mutex::new(
        (1..=3)
            .map(|id| (id, Some(endpoint(&cluster, id))))
            .collect(),
    ));
    let history = History::new();
    let acks: Acks = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    history.register_subscription(
        SUB_NAME,
        SubscriptionSpec {
            topic: TOPIC.to_owned(),
            mode: Mode::Queue,
            complete: true,
        },
    );
    let workers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            tokio::spawn(produce_loop(
                p,
                endpoints.clone(),
                history.clone(),
                acks.clone(),
                stop.clone(),
            ))
        })
        .collect();
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|c| {
            tokio::spawn(consume_loop(
                c,
                endpoints.clone(),
                history.clone(),
                stop.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut gaps = Vec::new();
    let mut injected = Vec::new();
    for cycle in 0..cycles {
        let chosen = std::env::var("WEIR_CLUSTER_FAULT").ok();
        let fault = if let Some(name) = &chosen {
            *ALL.iter()
                .find(|f| format!("{f:?}") == *name)
                .unwrap_or_else(|| panic!("WEIR_CLUSTER_FAULT={name}: one of {ALL:?}"))
        } else if cycles == ALL.len() as u64 {
            ALL[cycle as usize]
        } else {
            ALL[rng.range(0, ALL.len() as u64) as usize]
        };
        let hit = inject(&mut cluster, &endpoints, fault, &mut rng).await;
        injected.push(fault);
        all_ready(&cluster).await;
        // Load after healing, so every gap has an acknowledgement after it.
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Some((at, partitions)) = hit {
            let mapping = producer_partitions(&cluster).await;
            match gap_around(&acks, at, &partitions, &mapping) {
                Some(gap) => {
                    eprintln!("  write gap {gap:?}");
                    gaps.push(gap);
                }
                None => eprintln!("  no write gap measured (producers by partition: {mapping:?})"),
            }
        }
        eprintln!("cycle {}/{cycles}: {:?}", cycle + 1, history.counts());
    }
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await.unwrap();
    }
    // The consumers drain what is left (redeliveries included).
    for consumer in consumers {
        consumer.await.unwrap();
    }

    all_ready(&cluster).await;
    let final_log = converged(&cluster).await;
    for (partition, messages) in &final_log {
        for (offset, value) in messages {
            history.record_log(
                TOPIC,
                Position::new(*partition, *offset),
                value.as_str().map(str::to_owned),
            );
        }
    }
    let report = history.check();
    gaps.sort();
    eprintln!(
        "{}",
        report.fault_summary("cluster faults", cycles, injected.len() as u64)
    );
    eprintln!(
        "failover write gap over {} leader faults: p50 {:?}, p99 {:?}, max {:?}",
        gaps.len(),
        percentile(&gaps, 0.5),
        percentile(&gaps, 0.99),
        gaps.last().copied().unwrap_or_default()
    );
    report.assert_clean();
}

/// Creates the consumed subscription (from the start, no dead letters:
/// every message is retried until acked); returns the status.
async fn create_subscription(cluster: &Cluster) -> u16 {
    let deadline = Instant::now() + WITHIN;
    loop {
        let reply = cluster
            .node(2)
            .put_json(
                &format!("/v1/topics/{TOPIC}/subscriptions/{SUBSCRIPTION}"),
                &json!({
                    "start": "earliest",
                    "ack_timeout_ms": ACK_TIMEOUT_MS,
                    "retry": {"max_attempts": null},
                    "dead_letter_topic": null,
                }),
            )
            .await;
        if reply.status != 503 || Instant::now() >= deadline {
            return reply.status.as_u16();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The partition each producer's key lands on, as the servers place it
/// (read from the log: the first message of each producer).
async fn producer_partitions(cluster: &Cluster) -> BTreeMap<u64, u64> {
    let mut out = BTreeMap::new();
    let id = *cluster.nodes.keys().next().unwrap();
    for partition in 0..PARTITIONS {
        let page = cluster
            .node(id)
            .read(TOPIC, partition, "offset=0&limit=1000")
            .await;
        for m in page["messages"].as_array().into_iter().flatten() {
            let producer = m["key"]
                .as_str()
                .and_then(|k| k.strip_prefix("producer-"))
                .and_then(|p| p.parse().ok());
            if let Some(producer) = producer {
                out.entry(producer).or_insert(partition);
            }
        }
    }
    out
}
