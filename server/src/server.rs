//! Wires storage → broker → API and runs until shutdown: the library entry
//! point that `main` and in-process tests call.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::serve::ListenerExt;
use thiserror::Error;
use tokio::net::TcpListener;

use crate::api::ws::Sockets;
use crate::api::{self, AppState};
use crate::broker::{clock::now_ms, Broker, BrokerError};
use crate::config::Config;
use crate::storage::{StorageError, Store};

#[derive(Debug, Error)]
pub enum ServerError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("server I/O failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Runs the server on `listener` until `shutdown` completes, then stops
/// accepting, lets in-flight requests finish (up to the shutdown timeout),
/// flushes the store and returns.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    crate::metrics::set_per_name_labels(config.metrics_per_topic);
    let store = Store::open(&config.data_dir, &config.store)?;
    let broker = Broker::open(store.clone())?;
    let shutting_down = Arc::new(AtomicBool::new(false));
    let sockets = Sockets::new(config.websocket.clone());
    let state = AppState {
        broker: broker.clone(),
        shutting_down: shutting_down.clone(),
        max_request_bytes: config.max_request_bytes,
        sockets: sockets.clone(),
    };
    let background = spawn_retention(broker.clone(), config.retention_interval);
    tracing::info!(
        listen = %listener.local_addr()?,
        data_dir = %config.data_dir.display(),
        fsync = ?config.fsync,
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
    let mut graceful_rx = stop_rx.clone();
    // Small frames (WebSocket pushes, confirmations) go out at once:
    // without TCP_NODELAY, Nagle's algorithm holds them for the peer's
    // delayed ACK (tens of milliseconds).
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    let serve = axum::serve(listener, api::router(state)).with_graceful_shutdown(async move {
        let _ = graceful_rx.wait_for(|stop| *stop).await;
    });
    let timeout = config.shutdown_timeout;
    let mut deadline_rx = stop_rx;
    tokio::select! {
        result = async {
            serve.await?;
            sockets.closed().await;
            Ok::<_, std::io::Error>(())
        } => result?,
        _ = async {
            let _ = deadline_rx.wait_for(|stop| *stop).await;
            tokio::time::sleep(timeout).await;
        } => tracing::warn!("shutdown timeout reached with requests still in flight"),
    }
    background.abort();
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
            match broker.enforce_retention(now_ms()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, "retention removed messages"),
                Err(e) => tracing::warn!(error = %e, "retention pass failed"),
            }
        }
    })
}
