//! A TCP proxy between the client and a test server, for the failures a
//! healthy server does not produce on its own: connections that go silent
//! without closing (half-open), responses that never come back (a request
//! that times out after the server did its work), connections cut in the
//! middle, and a server that comes back on another port after a restart.
//! TLS passes through untouched, so `https://` and `wss://` work through it.
//!
//! Owns the byte pumping only; the tests that use it are the other
//! `client_*` modules.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

/// A running proxy on `127.0.0.1:<random port>`.
pub struct Proxy {
    addr: SocketAddr,
    state: Arc<State>,
    accept: JoinHandle<()>,
}

struct State {
    target: Mutex<SocketAddr>,
    /// Server → client bytes are dropped while set (every connection).
    swallow: Arc<AtomicBool>,
    connections: Mutex<Vec<Connection>>,
    accepted: AtomicUsize,
}

/// One proxied connection: its pumps, and whether it is frozen.
struct Connection {
    frozen: Arc<AtomicBool>,
    pumps: [AbortHandle; 2],
}

impl Proxy {
    /// A proxy to the server at `base` (`http://127.0.0.1:port`).
    pub async fn start(base: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            target: Mutex::new(address_of(base)),
            swallow: Arc::new(AtomicBool::new(false)),
            connections: Mutex::new(Vec::new()),
            accepted: AtomicUsize::new(0),
        });
        let accept = tokio::spawn(accept_loop(listener, state.clone()));
        Proxy {
            addr,
            state,
            accept,
        }
    }

    /// The proxy's URL with the scheme of `base` (`http` or `https`).
    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}", self.addr)
    }

    /// New connections go to the server at `base` from now on.
    pub fn retarget(&self, base: &str) {
        *self.state.target.lock().unwrap() = address_of(base);
    }

    /// Every open connection goes silent both ways and stays open, as a
    /// connection whose peer vanished does (half-open). New connections
    /// are not affected.
    pub fn freeze(&self) {
        for connection in self.state.connections.lock().unwrap().iter() {
            connection.frozen.store(true, Ordering::SeqCst);
        }
    }

    /// Every open connection is closed.
    pub fn sever(&self) {
        for connection in self.state.connections.lock().unwrap().drain(..) {
            for pump in &connection.pumps {
                pump.abort();
            }
        }
    }

    /// While on, what servers send back is dropped (requests still arrive).
    pub fn swallow_responses(&self, on: bool) {
        self.state.swallow.store(on, Ordering::SeqCst);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.state.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.sever();
    }
}

fn address_of(base: &str) -> SocketAddr {
    let hostport = base
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/');
    hostport.parse().unwrap()
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    while let Ok((client, _)) = listener.accept().await {
        state.accepted.fetch_add(1, Ordering::SeqCst);
        let target = *state.target.lock().unwrap();
        let Ok(server) = TcpStream::connect(target).await else {
            // Nothing listens there (a server restarting): the client
            // sees its connection closed.
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let frozen = Arc::new(AtomicBool::new(false));
        let (client_read, client_write) = client.into_split();
        let (server_read, server_write) = server.into_split();
        let up = tokio::spawn(pump(client_read, server_write, frozen.clone(), None));
        let down = tokio::spawn(pump(
            server_read,
            client_write,
            frozen.clone(),
            Some(state.swallow.clone()),
        ));
        let mut connections = state.connections.lock().unwrap();
        connections.push(Connection {
            frozen,
            pumps: [up.abort_handle(), down.abort_handle()],
        });
    }
}

/// Copies `from` to `to` until either ends; drops what it reads while the
/// connection is frozen (or, for responses, swallowed). A frozen
/// connection is never closed by the proxy: it just stays silent.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
    swallow: Option<Arc<AtomicBool>>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let dropped = frozen.load(Ordering::SeqCst)
            || swallow
                .as_ref()
                .is_some_and(|swallow| swallow.load(Ordering::SeqCst));
        if dropped {
            continue;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    if frozen.load(Ordering::SeqCst) {
        // Half-open: keep the other side's socket open and silent.
        std::future::pending::<()>().await;
    }
    let _ = to.shutdown().await;
}
