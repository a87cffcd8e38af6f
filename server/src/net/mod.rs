//! The listener: accepts TCP connections, enforces `max_connections`,
//! terminates TLS when configured (recording the client certificate's
//! principal), and serves HTTP/1.1 (and h2c) with WebSocket upgrades on
//! hyper. Owns the connection-level timeouts: the TLS handshake and each
//! request's headers must arrive within `header_read_timeout` (hyper's
//! timer also runs while a keep-alive connection waits for its next
//! request, so idle connections close after it as well). Graceful
//! shutdown stops accepting, lets requests in flight finish and closes
//! idle connections at once.

pub mod tls;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::api::guard::PeerIdentity;
use crate::metrics::METRICS;

/// How connections are accepted and served.
#[derive(Clone)]
pub struct ServeOptions {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// Serves `router` on `listener` until `stop` turns true, then drains.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    options: ServeOptions,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(options.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let acceptor = options.tls.clone().map(TlsAcceptor::from);
    loop {
        let (tcp, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors or a transient network error:
                    // back off instead of spinning on accept.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.wait_for(|s| *s) => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            METRICS.connections_rejected.inc();
            tokio::spawn(refuse(tcp, acceptor.is_none(), options.max_connections));
            continue;
        };
        if let Err(e) = tcp.set_nodelay(true) {
            // Without TCP_NODELAY small frames wait for the peer's delayed ACK.
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let router = router.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let stop = stop.clone();
        let acceptor = acceptor.clone();
        let handshake_timeout = options.header_read_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            METRICS.connections_open.inc();
            match acceptor {
                None => {
                    serve_connection(
                        tcp,
                        PeerIdentity::default(),
                        router,
                        &builder,
                        watcher,
                        stop,
                    )
                    .await
                }
                Some(acceptor) => {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let identity = PeerIdentity {
                                certificate_name: stream
                                    .get_ref()
                                    .1
                                    .peer_certificates()
                                    .and_then(|certs| certs.first())
                                    .and_then(tls::certificate_name),
                            };
                            serve_connection(stream, identity, router, &builder, watcher, stop)
                                .await
                        }
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
            METRICS.connections_open.dec();
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

async fn serve_connection<I>(
    io: I,
    identity: PeerIdentity,
    router: Router,
    builder: &auto::Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Requests of this connection being handled (from the end of their
    // headers to their response).
    let active = Arc::new(AtomicUsize::new(0));
    let counted = active.clone();
    let service = router
        .map_request(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(identity.clone());
            req
        })
        .map_future(move |response| {
            let handling = Handling::enter(&counted);
            async move {
                let response = response.await;
                drop(handling);
                response
            }
        });
    let hyper_service = TowerToHyperService::new(service);
    let conn = builder
        .serve_connection_with_upgrades(TokioIo::new(io), hyper_service)
        .into_owned();
    let conn = watcher.watch(conn);
    tokio::pin!(conn);
    // Graceful shutdown closes idle connections and lets requests finish;
    // a connection still sending a request's headers is neither, so once
    // nothing is being handled it is dropped instead of holding the stop
    // up for the whole header timeout.
    let abandoned = async {
        let _ = stop.wait_for(|s| *s).await;
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if active.load(Ordering::SeqCst) == 0 {
                break;
            }
        }
    };
    tokio::select! {
        result = &mut conn => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        () = abandoned => tracing::debug!("connection with an unfinished request closed by shutdown"),
    }
}

/// One request being handled on a connection.
struct Handling(Arc<AtomicUsize>);

impl Handling {
    fn enter(active: &Arc<AtomicUsize>) -> Handling {
        active.fetch_add(1, Ordering::SeqCst);
        Handling(active.clone())
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Answers a connection over `max_connections`: a 503 problem document on
/// plain HTTP, a plain close on TLS (no handshake is spent on it).
async fn refuse(mut tcp: TcpStream, plain: bool, max: usize) {
    if plain {
        let body = format!(
            r#"{{"type":"urn:weir:error:overloaded","title":"Overloaded","status":503,"detail":"the server has {max} connections open (`max_connections`); retry shortly","code":"overloaded"}}"#
        );
        let response = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let _ =
            tokio::time::timeout(Duration::from_secs(1), tcp.write_all(response.as_bytes())).await;
    }
    let _ = tcp.shutdown().await;
}

/// Raises the soft open-files limit to the hard limit, so the connection
/// limit, not the process's descriptor limit, is what refuses clients.
pub fn raise_open_files_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => tracing::debug!(to = ?limit.maximum, "raised the open-files limit"),
            Err(e) => tracing::warn!(error = %e, "cannot raise the open-files limit"),
        }
    }
}
