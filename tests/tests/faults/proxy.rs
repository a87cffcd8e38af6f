//! A TCP proxy on `127.0.0.1:0` that loses responses on a seeded schedule:
//! for a chosen connection it forwards the request, waits for the first
//! byte of the reply, swallows it and closes both sides — the server did
//! the work, the client never hears of it. Clients must use one connection
//! per request (no keep-alive) for the schedule to be per request.
//!
//! Owns the byte pumping and the schedule only.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::rng::Rng;

/// A running proxy; stops accepting when dropped.
pub struct DroppingProxy {
    addr: SocketAddr,
    stats: Arc<Stats>,
    accept: JoinHandle<()>,
}

#[derive(Default)]
struct Stats {
    connections: AtomicU64,
    dropped: AtomicU64,
}

impl DroppingProxy {
    /// A proxy to `target` (`http://127.0.0.1:port`) dropping the response
    /// of each connection with probability `percent`/100.
    pub async fn start(target: &str, rng: Rng, percent: u64) -> DroppingProxy {
        let target: SocketAddr = target.trim_start_matches("http://").parse().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(Stats::default());
        let schedule = Arc::new(Mutex::new(rng));
        let accept = tokio::spawn(accept_loop(
            listener,
            target,
            schedule,
            percent,
            stats.clone(),
        ));
        DroppingProxy {
            addr,
            stats,
            accept,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Responses swallowed so far.
    pub fn dropped(&self) -> u64 {
        self.stats.dropped.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.stats.connections.load(Ordering::SeqCst)
    }
}

impl Drop for DroppingProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    schedule: Arc<Mutex<Rng>>,
    percent: u64,
    stats: Arc<Stats>,
) {
    while let Ok((client, _)) = listener.accept().await {
        stats.connections.fetch_add(1, Ordering::SeqCst);
        let drop_reply = schedule.lock().unwrap().chance(percent);
        let stats = stats.clone();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(target).await else {
                return; // the client sees its connection closed
            };
            if drop_reply {
                if swallow_reply(client, server).await {
                    stats.dropped.fetch_add(1, Ordering::SeqCst);
                }
            } else {
                let (mut client, mut server) = (client, server);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            }
        });
    }
}

/// Forwards the request, reads until the reply starts, then closes both
/// connections without sending any of it. True when a reply was swallowed.
async fn swallow_reply(client: TcpStream, server: TcpStream) -> bool {
    let (mut client_read, _client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upstream = tokio::spawn(async move {
        let mut buf = vec![0_u8; 64 * 1024];
        loop {
            match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if server_write.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    let mut first = [0_u8; 1];
    let swallowed = matches!(server_read.read(&mut first).await, Ok(1));
    upstream.abort();
    // Dropping the halves closes both connections.
    swallowed
}
