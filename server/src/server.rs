//! Wires storage → broker → API and runs until shutdown: the library entry
//! point that `main` and in-process tests call.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use thiserror::Error;
use tokio::net::TcpListener;

use crate::api::limits::Limits;
use crate::api::ws::Sockets;
use crate::api::{self, AppShared, AppState, Protect};
use crate::auth::{AuthConfigError, Authenticator};
use crate::broker::subscription::push::PushOptions;
use crate::broker::{Broker, BrokerError, BrokerLimits};
use crate::cluster::{Cluster, ClusterConfig, ClusterError};
use crate::config::Config;
use crate::net::{self, tls::TlsError, ServeOptions};
use crate::storage::{StorageError, Store};

#[derive(Debug, Error)]
pub enum ServerError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("server I/O failed: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Auth(#[from] AuthConfigError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

/// Runs the server on `listener` until `shutdown` completes, then stops
/// accepting, lets in-flight requests finish (up to the shutdown timeout),
/// flushes the store and returns.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    crate::metrics::configure_name_labels(config.metrics_per_topic, config.metrics_max_label_names);
    // Credentials and certificates are checked before the store opens, so
    // a bad file is reported without touching the data directory.
    let auth = Authenticator::load(&config.auth)?.map(Arc::new);
    let tls = config.tls.as_ref().map(net::tls::load).transpose()?;
    net::raise_open_files_limit();
    let store = Store::open(&config.data_dir, &config.store)?;
    let limits = &config.limits;
    let broker = Broker::open_with(
        store.clone(),
        BrokerLimits {
            max_topics: limits.max_topics,
            max_subscriptions_per_topic: limits.max_subscriptions_per_topic,
            max_unsettled_per_subscription: limits.max_unsettled_per_subscription,
            max_headers_per_message: limits.max_headers_per_message,
        },
        PushOptions {
            allow_networks: config.push_allow_networks.clone(),
        },
    )?;
    let cluster = match &config.cluster {
        None => None,
        Some(options) => {
            let secret = options
                .read_secret()
                .map_err(|e| ClusterError::Start(e.to_string()))?;
            let cluster_listener = TcpListener::bind(options.listen).await?;
            tracing::info!(
                node_id = options.node_id,
                cluster_listen = %cluster_listener.local_addr()?,
                peers = ?options.peers,
                "joining the cluster"
            );
            let cluster_config = ClusterConfig {
                node_id: options.node_id,
                peers: options.peers.clone(),
                secret,
                api_address: listener.local_addr()?.to_string(),
                heartbeat: options.heartbeat,
                election_timeout: (options.election_timeout, options.election_timeout * 2),
            };
            Some(
                Cluster::start(
                    store.clone(),
                    broker.clone(),
                    cluster_config,
                    cluster_listener,
                )
                .await?,
            )
        }
    };
    let shutting_down = Arc::new(AtomicBool::new(false));
    let sockets = Sockets::new(config.websocket.clone());
    let state = AppState::new(AppShared {
        broker: broker.clone(),
        shutting_down: shutting_down.clone(),
        max_request_bytes: config.max_request_bytes,
        sockets: sockets.clone(),
        auth: auth.clone(),
        protect: Protect {
            metrics: config.auth.protect_metrics,
            docs: config.auth.protect_docs,
        },
        limits: Arc::new(Limits::new(config.limits.clone(), config.max_request_bytes)),
        backup_dir: config.backup_dir.clone(),
        listen_address: listener.local_addr()?.to_string(),
        cluster: cluster.clone(),
    });
    let mut background = vec![spawn_retention(broker.clone(), config.retention_interval)];
    if let Some(auth) = &auth {
        background.extend(auth.spawn_reloaders(config.auth.reload_interval));
    }
    if let Some(tls) = &tls {
        background.push(tls.certificate.spawn_reloader(config.auth.reload_interval));
    }
    tracing::info!(
        listen = %listener.local_addr()?,
        data_dir = %config.data_dir.display(),
        fsync = ?config.fsync,
        tls = tls.is_some(),
        auth = auth.is_some(),
        "weir listening"
    );

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let signal_broker = broker.clone();
    let signal_flag = shutting_down.clone();
    let signal_sockets = sockets.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutdown requested: draining in-flight requests");
        signal_flag.store(true, Ordering::SeqCst);
        // Long polls return at once instead of holding shutdown up.
        signal_broker.wake_all();
        // WebSockets are no longer HTTP requests axum waits for: close them
        // (1001) and wait for them below.
        signal_sockets.shutdown();
        let _ = stop_tx.send(true);
    });
    let router = api::router(state, config.limits.request_body_timeout);
    if let Some(cluster) = &cluster {
        // Requests other nodes forward here are answered by the same API.
        cluster.set_api(router.clone());
    }
    let serve = net::serve(
        listener,
        router,
        ServeOptions {
            max_connections: config.limits.max_connections,
            header_read_timeout: config.limits.header_read_timeout,
            tls: tls.map(|t| t.config),
        },
        stop_rx.clone(),
    );
    let timeout = config.shutdown_timeout;
    let mut deadline_rx = stop_rx;
    tokio::select! {
        () = async {
            serve.await;
            sockets.closed().await;
        } => {},
        _ = async {
            let _ = deadline_rx.wait_for(|stop| *stop).await;
            tokio::time::sleep(timeout).await;
        } => tracing::warn!("shutdown timeout reached with requests still in flight"),
    }
    for task in background {
        task.abort();
    }
    if let Some(cluster) = &cluster {
        cluster.shutdown().await;
    }
    store.shutdown().await;
    tracing::info!("store flushed; bye");
    Ok(())
}

fn spawn_retention(broker: Arc<Broker>, every: std::time::Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match broker.enforce_retention(broker.now()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, "retention removed messages"),
                Err(e) => tracing::warn!(error = %e, "retention pass failed"),
            }
        }
    })
}
