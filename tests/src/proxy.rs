//! A userspace TCP fault-injection proxy for multi-node cluster tests (this
//! machine has no `tc netem`).
//!
//! Owns the network between nodes: a test routes every node-to-node TCP link
//! through a [`Proxy`] and degrades it at will with a [`Mode`] — pass, black
//! hole, cut or delay — that takes effect at once, on the connections already
//! open as well as on new ones. [`Mesh`] holds one proxy per ordered pair of
//! nodes and offers the usual scenarios: [`Mesh::isolate`],
//! [`Mesh::partition`], [`Mesh::heal`].
//!
//! Typical use, when the nodes' ports are only known once they run:
//!
//! 1. [`Mesh::reserve`] the node ids: every link gets its listening address;
//! 2. start each node with [`Mesh::peers`] of its id as its peer addresses;
//! 3. [`Mesh::set_upstream`] each node's real listen address (connections
//!    that arrived earlier wait up to [`UPSTREAM_WAIT`] for it);
//! 4. inject faults, [`Mesh::heal`], check the cluster converges.
//!
//! Everything is bounded: one 64 KiB read buffer per direction of a
//! connection and at most 1,024 chunks queued per direction (further reads
//! wait: backpressure). Only loopback addresses are used. Dropping a proxy
//! (or [`Proxy::stop`]) closes its listener and every connection it opened;
//! no task outlives it.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{sleep, sleep_until, timeout, Instant};

/// How long a connection accepted before its proxy knows the upstream
/// ([`Proxy::reserve`]) waits for [`Proxy::set_upstream`] before it is closed.
pub const UPSTREAM_WAIT: Duration = Duration::from_secs(5);

/// Size of the read buffer of each direction of a connection.
const BUFFER_SIZE: usize = 64 * 1024;
/// Chunks read but not yet delivered, per direction (they pile up under
/// [`Mode::Delay`]); the reader waits once this many are queued.
const MAX_QUEUED_CHUNKS: usize = 1024;
/// Bound on connecting to the upstream (on loopback it answers at once).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed `accept` (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// What a link does to the traffic crossing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Forward everything as it comes.
    #[default]
    Pass,
    /// Black hole: new connections are still accepted and nothing is closed
    /// or reset, but no byte is delivered, so peers time out. Bytes sent
    /// meanwhile are held back (the proxy stops reading; the sender's buffers
    /// fill and its writes block, as over a real black hole) rather than
    /// discarded from the middle of a stream: once the link passes again they
    /// arrive in order, as TCP retransmission would deliver them, and the
    /// peers' framing stays intact.
    Drop,
    /// Close every open connection at once and close each new one right after
    /// accepting it. Always applies to both directions.
    Cut,
    /// Deliver each chunk this long after the proxy read it, in order.
    Delay(Duration),
}

/// One direction of a proxied connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the connecting side to the upstream (requests).
    ToUpstream,
    /// From the upstream back to the connecting side (responses).
    FromUpstream,
}

/// The modes of both directions; the link is cut while either is `Cut`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Faults {
    to_upstream: Mode,
    from_upstream: Mode,
}

impl Faults {
    fn get(self, direction: Direction) -> Mode {
        match direction {
            Direction::ToUpstream => self.to_upstream,
            Direction::FromUpstream => self.from_upstream,
        }
    }

    /// These faults with `direction` set to `mode` (both if it is `Cut`).
    fn with(mut self, direction: Direction, mode: Mode) -> Faults {
        match (mode, direction) {
            (Mode::Cut, _) => {
                self.to_upstream = Mode::Cut;
                self.from_upstream = Mode::Cut;
            }
            (_, Direction::ToUpstream) => self.to_upstream = mode,
            (_, Direction::FromUpstream) => self.from_upstream = mode,
        }
        self
    }

    fn is_cut(self) -> bool {
        self.to_upstream == Mode::Cut || self.from_upstream == Mode::Cut
    }
}

/// State shared by a proxy's handle and its tasks.
#[derive(Debug)]
struct Shared {
    faults: watch::Sender<Faults>,
    upstream: watch::Sender<Option<SocketAddr>>,
    forwarded: AtomicU64,
}

/// A fault-injecting TCP proxy: listens on `127.0.0.1` and forwards each
/// accepted connection to its upstream.
///
/// Dropping it stops the listener and closes every connection it opened
/// (asynchronously; [`Proxy::stop`] waits until it is done).
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// Dropped to stop the accept loop (which then ends every connection).
    shutdown: watch::Sender<()>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Starts a proxy to `upstream` (a loopback address).
    pub async fn start(upstream: SocketAddr) -> io::Result<Proxy> {
        check_loopback(upstream)?;
        let proxy = Proxy::reserve().await?;
        proxy.set_upstream(upstream)?;
        Ok(proxy)
    }

    /// Starts a proxy whose upstream is not known yet: its address can be
    /// handed out now and the upstream given later with
    /// [`Proxy::set_upstream`]. Connections accepted meanwhile wait up to
    /// [`UPSTREAM_WAIT`] for it, then are closed.
    pub async fn reserve() -> io::Result<Proxy> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            faults: watch::Sender::new(Faults::default()),
            upstream: watch::Sender::new(None),
            forwarded: AtomicU64::new(0),
        });
        let (shutdown, stopped) = watch::channel(());
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&shared), stopped));
        Ok(Proxy {
            addr,
            shared,
            shutdown,
            task,
        })
    }

    /// Sets (or changes) where connections are forwarded; it must be a
    /// loopback address. Open connections keep their upstream; waiting and
    /// new ones use this one.
    pub fn set_upstream(&self, upstream: SocketAddr) -> io::Result<()> {
        check_loopback(upstream)?;
        self.shared.upstream.send_replace(Some(upstream));
        Ok(())
    }

    /// The upstream, once known.
    pub fn upstream(&self) -> Option<SocketAddr> {
        *self.shared.upstream.borrow()
    }

    /// The address to connect to instead of the upstream.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Applies `mode` to both directions, on open connections too.
    pub fn set_mode(&self, mode: Mode) {
        self.shared.faults.send_replace(Faults {
            to_upstream: mode,
            from_upstream: mode,
        });
    }

    /// Applies `mode` to one direction only (an asymmetric fault), on open
    /// connections too. [`Mode::Cut`] cannot be one-way: it cuts both.
    pub fn set_direction_mode(&self, direction: Direction, mode: Mode) {
        self.shared
            .faults
            .send_modify(|faults| *faults = faults.with(direction, mode));
    }

    /// The link's mode: [`Mode::Cut`] while it is cut, else the mode of
    /// [`Direction::ToUpstream`] (the same as the other one unless
    /// [`Proxy::set_direction_mode`] made them differ; see
    /// [`Proxy::direction_mode`]).
    pub fn mode(&self) -> Mode {
        let faults = *self.shared.faults.borrow();
        if faults.is_cut() {
            Mode::Cut
        } else {
            faults.to_upstream
        }
    }

    /// The mode of one direction.
    pub fn direction_mode(&self, direction: Direction) -> Mode {
        self.shared.faults.borrow().get(direction)
    }

    /// Bytes delivered so far, both directions and all connections together.
    pub fn bytes_forwarded(&self) -> u64 {
        self.shared.forwarded.load(Ordering::Relaxed)
    }

    /// Stops the listener and closes every connection, and returns once all
    /// of them are closed.
    pub async fn stop(self) {
        let Proxy { shutdown, task, .. } = self;
        drop(shutdown);
        // An error only means the task was cancelled (runtime shutting down).
        let _ = task.await;
    }
}

fn check_loopback(addr: SocketAddr) -> io::Result<()> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the proxy only forwards to loopback addresses, not {addr}"),
        ))
    }
}

fn link_closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "proxy link closed")
}

/// Accepts connections until the proxy's handle goes away, then closes them
/// all. The connections' tasks live in `connections`, so none outlives it.
async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<()>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            // Nothing is ever sent: this returns when the sender is dropped.
            _ = shutdown.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                // Under Cut the socket is closed as soon as it is accepted.
                Ok((client, _)) if shared.faults.borrow().is_cut() => drop(client),
                Ok((client, _)) => {
                    connections.spawn(serve(client, Arc::clone(&shared)));
                }
                Err(_) => sleep(ACCEPT_BACKOFF).await,
            },
        }
    }
    drop(listener);
    connections.shutdown().await;
}

/// Runs one connection until it ends or its link is cut; returning drops
/// (closes) both sockets.
async fn serve(client: TcpStream, shared: Arc<Shared>) {
    let mut faults = shared.faults.subscribe();
    tokio::select! {
        () = until_cut(&mut faults) => {}
        _ = relay(client, &shared) => {}
    }
}

async fn until_cut(faults: &mut watch::Receiver<Faults>) {
    // An error means the proxy is gone: close as well.
    let _ = faults.wait_for(|faults| faults.is_cut()).await;
}

/// Connects to the upstream and copies both ways until both directions have
/// ended (half-closes are passed on) or either fails.
async fn relay(client: TcpStream, shared: &Shared) -> io::Result<()> {
    let upstream = upstream_addr(shared).await?;
    let server = timeout(CONNECT_TIMEOUT, TcpStream::connect(upstream))
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
    // Small messages should not wait for Nagle on top of the injected faults.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::try_join!(
        pump(client_read, server_write, Direction::ToUpstream, shared),
        pump(server_read, client_write, Direction::FromUpstream, shared),
    )?;
    Ok(())
}

/// The upstream, waiting up to [`UPSTREAM_WAIT`] for it to be set.
async fn upstream_addr(shared: &Shared) -> io::Result<SocketAddr> {
    let mut upstream = shared.upstream.subscribe();
    let waited = timeout(UPSTREAM_WAIT, async {
        upstream.wait_for(Option::is_some).await.map(|addr| *addr)
    })
    .await;
    match waited {
        Ok(Ok(Some(addr))) => Ok(addr),
        Ok(_) => Err(link_closed()),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the proxy's upstream was not set in time",
        )),
    }
}

/// A read chunk on its way to the other side.
struct Chunk {
    read_at: Instant,
    data: Vec<u8>,
}

/// One direction: a reader feeding a bounded queue that a writer drains
/// according to the direction's mode.
async fn pump(
    src: OwnedReadHalf,
    dst: OwnedWriteHalf,
    direction: Direction,
    shared: &Shared,
) -> io::Result<()> {
    let (tx, rx) = mpsc::channel(MAX_QUEUED_CHUNKS);
    tokio::try_join!(
        read_side(src, tx, shared.faults.subscribe(), direction),
        write_side(
            rx,
            dst,
            shared.faults.subscribe(),
            direction,
            &shared.forwarded
        ),
    )?;
    Ok(())
}

/// Reads chunks into the queue; stops reading while the direction drops, so
/// that the sender sees a black hole. Returning (at end of stream) closes the
/// queue, which makes the writer pass the half-close on.
async fn read_side(
    mut src: OwnedReadHalf,
    tx: mpsc::Sender<Chunk>,
    mut faults: watch::Receiver<Faults>,
    direction: Direction,
) -> io::Result<()> {
    let mut buf = vec![0; BUFFER_SIZE];
    loop {
        faults
            .wait_for(|faults| faults.get(direction) != Mode::Drop)
            .await
            .map_err(|_| link_closed())?;
        let n = src.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        let chunk = Chunk {
            read_at: Instant::now(),
            data: buf[..n].to_vec(),
        };
        tx.send(chunk).await.map_err(|_| link_closed())?;
    }
}

/// Writes the queued chunks in order, each once its direction's mode lets
/// it through, then shuts the destination's write side down.
async fn write_side(
    mut rx: mpsc::Receiver<Chunk>,
    mut dst: OwnedWriteHalf,
    mut faults: watch::Receiver<Faults>,
    direction: Direction,
    forwarded: &AtomicU64,
) -> io::Result<()> {
    while let Some(chunk) = rx.recv().await {
        hold(&mut faults, direction, chunk.read_at).await?;
        dst.write_all(&chunk.data).await?;
        forwarded.fetch_add(chunk.data.len() as u64, Ordering::Relaxed);
    }
    dst.shutdown().await
}

/// Waits until a chunk read at `read_at` may be delivered under the current
/// mode, following mode changes as they come.
async fn hold(
    faults: &mut watch::Receiver<Faults>,
    direction: Direction,
    read_at: Instant,
) -> io::Result<()> {
    loop {
        let due = match faults.borrow_and_update().get(direction) {
            Mode::Pass => return Ok(()),
            Mode::Cut => return Err(io::Error::from(io::ErrorKind::ConnectionAborted)),
            Mode::Drop => None,
            // A delay too long to represent holds the chunk like Drop.
            Mode::Delay(delay) => read_at.checked_add(delay),
        };
        match due {
            Some(due) if due <= Instant::now() => return Ok(()),
            Some(due) => tokio::select! {
                () = sleep_until(due) => {}
                changed = faults.changed() => changed.map_err(|_| link_closed())?,
            },
            None => faults.changed().await.map_err(|_| link_closed())?,
        }
    }
}

/// One [`Proxy`] per ordered pair of nodes: node `from` reaches node `to`
/// through [`Mesh::addr`]`(from, to)`.
///
/// The link `(from, to)` carries the connections that `from` opens to `to`,
/// requests and responses alike; connections that `to` opens to `from` take
/// the link `(to, from)`. So cutting two nodes apart takes both links
/// ([`Mesh::partition`] and [`Mesh::isolate`] do), and a one-way fault on a
/// connection is set on its link's [`Proxy`] ([`Mesh::link`]) with
/// [`Proxy::set_direction_mode`].
///
/// Methods taking node ids panic on an id the mesh was not made with.
#[derive(Debug)]
pub struct Mesh {
    nodes: BTreeSet<u64>,
    links: BTreeMap<(u64, u64), Proxy>,
}

impl Mesh {
    /// Starts the links between `nodes` (id → the node's real cluster listen
    /// address, on loopback).
    pub async fn start(nodes: &BTreeMap<u64, SocketAddr>) -> io::Result<Mesh> {
        for &addr in nodes.values() {
            check_loopback(addr)?;
        }
        let ids: Vec<u64> = nodes.keys().copied().collect();
        let mesh = Mesh::reserve(&ids).await?;
        for (&id, &addr) in nodes {
            mesh.set_upstream(id, addr)?;
        }
        Ok(mesh)
    }

    /// Starts the links between the nodes `ids` before their addresses are
    /// known: hand [`Mesh::peers`] to each node, start the nodes, then
    /// [`Mesh::set_upstream`] each one.
    pub async fn reserve(ids: &[u64]) -> io::Result<Mesh> {
        let nodes: BTreeSet<u64> = ids.iter().copied().collect();
        let mut links = BTreeMap::new();
        for &from in &nodes {
            for &to in &nodes {
                if from != to {
                    links.insert((from, to), Proxy::reserve().await?);
                }
            }
        }
        Ok(Mesh { nodes, links })
    }

    /// Sets node `to`'s real listen address (loopback) as the upstream of
    /// every link towards it.
    pub fn set_upstream(&self, to: u64, addr: SocketAddr) -> io::Result<()> {
        self.check(to);
        check_loopback(addr)?;
        for proxy in self.links_where(|_, target| target == to) {
            proxy.set_upstream(addr)?;
        }
        Ok(())
    }

    /// The address node `from` must use to reach node `to`.
    pub fn addr(&self, from: u64, to: u64) -> SocketAddr {
        self.link(from, to).addr()
    }

    /// The addresses node `from` must use for each other node: its peers.
    pub fn peers(&self, from: u64) -> BTreeMap<u64, SocketAddr> {
        self.check(from);
        self.links
            .iter()
            .filter(|((source, _), _)| *source == from)
            .map(|(&(_, to), proxy)| (to, proxy.addr()))
            .collect()
    }

    /// The proxy of the link from `from` to `to` (for one-way faults and
    /// byte counts).
    pub fn link(&self, from: u64, to: u64) -> &Proxy {
        match self.links.get(&(from, to)) {
            Some(proxy) => proxy,
            None => panic!("the mesh has no link from node {from} to node {to}"),
        }
    }

    /// Sets the mode of the connections `from` opens to `to` (both of their
    /// directions); the connections `to` opens to `from` are not affected.
    pub fn set(&self, from: u64, to: u64, mode: Mode) {
        self.link(from, to).set_mode(mode);
    }

    /// Cuts every link to and from `node`.
    pub fn isolate(&self, node: u64) {
        self.check(node);
        for proxy in self.links_where(|from, to| from == node || to == node) {
            proxy.set_mode(Mode::Cut);
        }
    }

    /// Cuts every link between a node of `a` and a node of `b`, both ways;
    /// links within each group are left as they are.
    pub fn partition(&self, a: &[u64], b: &[u64]) {
        for &x in a {
            for &y in b {
                self.check(x);
                self.check(y);
                if x != y {
                    self.set(x, y, Mode::Cut);
                    self.set(y, x, Mode::Cut);
                }
            }
        }
    }

    /// Puts every link back to [`Mode::Pass`], both directions.
    pub fn heal(&self) {
        for proxy in self.links.values() {
            proxy.set_mode(Mode::Pass);
        }
    }

    /// Stops every link and returns once all their connections are closed.
    pub async fn stop(self) {
        for proxy in self.links.into_values() {
            proxy.stop().await;
        }
    }

    fn links_where(&self, keep: impl Fn(u64, u64) -> bool) -> impl Iterator<Item = &Proxy> {
        self.links
            .iter()
            .filter(move |(&(from, to), _)| keep(from, to))
            .map(|(_, proxy)| proxy)
    }

    fn check(&self, node: u64) {
        assert!(self.nodes.contains(&node), "node {node} is not in the mesh");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bound on every wait that is expected to succeed.
    const WAIT: Duration = Duration::from_secs(5);
    /// How long a black-holed read must stay silent.
    const QUIET: Duration = Duration::from_millis(300);

    /// A server that writes `greeting` to each connection, then echoes it and
    /// reports every chunk it receives (dropped once the channel is full).
    async fn server(greeting: Vec<u8>) -> (SocketAddr, mpsc::Receiver<Vec<u8>>) {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (seen_tx, seen_rx) = mpsc::channel(64);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let greeting = greeting.clone();
                let seen = seen_tx.clone();
                tokio::spawn(async move {
                    socket.write_all(&greeting).await?;
                    let mut buf = vec![0; 4096];
                    loop {
                        let n = socket.read(&mut buf).await?;
                        if n == 0 {
                            return io::Result::Ok(());
                        }
                        let _ = seen.try_send(buf[..n].to_vec());
                        socket.write_all(&buf[..n]).await?;
                    }
                });
            }
        });
        (addr, seen_rx)
    }

    async fn echo_server() -> SocketAddr {
        server(Vec::new()).await.0
    }

    async fn connect(addr: SocketAddr) -> TcpStream {
        timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connect timed out")
            .expect("connect failed")
    }

    async fn read_exactly(stream: &mut TcpStream, expected: &[u8]) {
        let mut buf = vec![0; expected.len()];
        timeout(WAIT, stream.read_exact(&mut buf))
            .await
            .expect("read timed out")
            .expect("read failed");
        assert_eq!(buf, expected);
    }

    async fn echo(stream: &mut TcpStream, message: &[u8]) {
        stream.write_all(message).await.unwrap();
        read_exactly(stream, message).await;
    }

    /// The peer closed (end of stream) or reset the connection.
    async fn assert_closed(stream: &mut TcpStream) {
        let mut buf = [0; 64];
        match timeout(WAIT, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => {}
            Ok(Ok(n)) => panic!("read {n} bytes from a connection that should be closed"),
            Err(_) => panic!("the connection is still open after {WAIT:?}"),
        }
    }

    /// Nothing arrives, and the connection is not closed either.
    async fn assert_silent(stream: &mut TcpStream) {
        let mut buf = [0; 64];
        let read = timeout(QUIET, stream.read(&mut buf)).await;
        assert!(read.is_err(), "expected silence, got {read:?}");
    }

    async fn eventually(what: &str, condition: impl Fn() -> bool) {
        let deadline = Instant::now() + WAIT;
        while !condition() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn passes_traffic_through_and_counts_it() {
        let proxy = Proxy::start(echo_server().await).await.unwrap();
        assert_eq!(proxy.mode(), Mode::Pass);
        let mut stream = connect(proxy.addr()).await;
        echo(&mut stream, b"hello").await;
        echo(&mut stream, b"world").await;
        eventually("20 bytes counted", || proxy.bytes_forwarded() == 20).await;
    }

    #[tokio::test]
    async fn drop_blackholes_without_closing_and_heal_delivers() {
        let (upstream, mut seen) = server(Vec::new()).await;
        let proxy = Proxy::start(upstream).await.unwrap();
        let mut open = connect(proxy.addr()).await;
        echo(&mut open, b"before").await;
        assert_eq!(seen.recv().await.unwrap(), b"before");

        proxy.set_mode(Mode::Drop);
        assert_eq!(proxy.mode(), Mode::Drop);
        open.write_all(b"during").await.unwrap();
        assert_silent(&mut open).await;
        // New connections are accepted but black-holed too.
        let mut new = connect(proxy.addr()).await;
        new.write_all(b"fresh").await.unwrap();
        assert_silent(&mut new).await;
        assert!(
            seen.try_recv().is_err(),
            "the upstream got bytes under Drop"
        );

        proxy.set_mode(Mode::Pass);
        read_exactly(&mut open, b"during").await;
        read_exactly(&mut new, b"fresh").await;
        echo(&mut open, b"after").await;
    }

    #[tokio::test]
    async fn cut_closes_open_connections_and_new_ones() {
        let proxy = Proxy::start(echo_server().await).await.unwrap();
        let mut open = connect(proxy.addr()).await;
        echo(&mut open, b"ping").await;

        proxy.set_mode(Mode::Cut);
        assert_eq!(proxy.mode(), Mode::Cut);
        assert_closed(&mut open).await;
        let mut new = connect(proxy.addr()).await;
        assert_closed(&mut new).await;

        proxy.set_mode(Mode::Pass);
        let mut healed = connect(proxy.addr()).await;
        echo(&mut healed, b"back").await;
    }

    #[tokio::test]
    async fn one_way_cut_cuts_both_ways() {
        let proxy = Proxy::start(echo_server().await).await.unwrap();
        let mut open = connect(proxy.addr()).await;
        echo(&mut open, b"ping").await;
        proxy.set_direction_mode(Direction::FromUpstream, Mode::Cut);
        assert_eq!(proxy.direction_mode(Direction::ToUpstream), Mode::Cut);
        assert_closed(&mut open).await;
    }

    #[tokio::test]
    async fn delay_holds_each_chunk_in_order() {
        let delay = Duration::from_millis(200);
        let proxy = Proxy::start(echo_server().await).await.unwrap();
        let mut stream = connect(proxy.addr()).await;
        echo(&mut stream, b"warm").await;

        // Both directions delayed: a round trip takes at least twice as long.
        proxy.set_mode(Mode::Delay(delay));
        let started = Instant::now();
        for part in [&b"one"[..], b"two", b"three"] {
            stream.write_all(part).await.unwrap();
        }
        read_exactly(&mut stream, b"onetwothree").await;
        assert!(started.elapsed() >= 2 * delay, "{:?}", started.elapsed());

        // One direction delayed.
        proxy.set_direction_mode(Direction::ToUpstream, Mode::Pass);
        assert_eq!(
            proxy.direction_mode(Direction::FromUpstream),
            Mode::Delay(delay)
        );
        let started = Instant::now();
        echo(&mut stream, b"half").await;
        assert!(started.elapsed() >= delay, "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn one_way_drop_blackholes_one_direction() {
        let (upstream, mut seen) = server(Vec::new()).await;
        let proxy = Proxy::start(upstream).await.unwrap();
        let mut stream = connect(proxy.addr()).await;

        // Responses lost: the upstream gets the request, the client no answer.
        proxy.set_direction_mode(Direction::FromUpstream, Mode::Drop);
        stream.write_all(b"request").await.unwrap();
        let got = timeout(WAIT, seen.recv()).await.unwrap().unwrap();
        assert_eq!(got, b"request");
        assert_silent(&mut stream).await;
        proxy.set_direction_mode(Direction::FromUpstream, Mode::Pass);
        read_exactly(&mut stream, b"request").await;

        // Requests lost: the upstream gets nothing.
        proxy.set_direction_mode(Direction::ToUpstream, Mode::Drop);
        stream.write_all(b"lost").await.unwrap();
        assert_silent(&mut stream).await;
        assert!(
            seen.try_recv().is_err(),
            "the upstream got a dropped request"
        );
        proxy.set_mode(Mode::Pass);
        read_exactly(&mut stream, b"lost").await;
    }

    #[tokio::test]
    async fn stop_and_drop_close_every_connection() {
        let upstream = echo_server().await;
        let proxy = Proxy::start(upstream).await.unwrap();
        let addr = proxy.addr();
        let mut open = connect(addr).await;
        echo(&mut open, b"ping").await;
        proxy.stop().await;
        assert_closed(&mut open).await;
        assert!(TcpStream::connect(addr).await.is_err(), "still listening");

        let proxy = Proxy::start(upstream).await.unwrap();
        let mut open = connect(proxy.addr()).await;
        echo(&mut open, b"ping").await;
        drop(proxy);
        assert_closed(&mut open).await;
    }

    #[tokio::test]
    async fn late_upstream_serves_waiting_connections() {
        let proxy = Proxy::reserve().await.unwrap();
        assert_eq!(proxy.upstream(), None);
        let mut early = connect(proxy.addr()).await;
        early.write_all(b"early").await.unwrap();
        assert_silent(&mut early).await;

        proxy.set_upstream(echo_server().await).unwrap();
        read_exactly(&mut early, b"early").await;
        let mut late = connect(proxy.addr()).await;
        echo(&mut late, b"late").await;
    }

    #[tokio::test]
    async fn connection_without_upstream_closes_after_the_wait() {
        let proxy = Proxy::reserve().await.unwrap();
        let mut stream = connect(proxy.addr()).await;
        let mut buf = [0; 8];
        let read = timeout(UPSTREAM_WAIT + WAIT, stream.read(&mut buf))
            .await
            .expect("still open long after UPSTREAM_WAIT");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }

    #[tokio::test]
    async fn only_loopback_upstreams() {
        let outside: SocketAddr = "192.0.2.1:80".parse().unwrap();
        let error = Proxy::start(outside).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        let proxy = Proxy::reserve().await.unwrap();
        assert!(proxy.set_upstream(outside).is_err());
        assert_eq!(proxy.upstream(), None);
    }

    /// Three nodes whose servers greet with their id.
    async fn three_nodes() -> BTreeMap<u64, SocketAddr> {
        let mut nodes = BTreeMap::new();
        for id in 1..=3u8 {
            nodes.insert(u64::from(id), server(vec![id]).await.0);
        }
        nodes
    }

    /// Connects `from` → `to` through the mesh and checks `to` answers.
    async fn reach(mesh: &Mesh, from: u64, to: u64) -> TcpStream {
        let mut stream = connect(mesh.addr(from, to)).await;
        read_exactly(&mut stream, &[u8::try_from(to).unwrap()]).await;
        stream
    }

    #[tokio::test]
    async fn mesh_routes_each_pair_to_its_target() {
        let mesh = Mesh::start(&three_nodes().await).await.unwrap();
        for from in 1..=3 {
            let peers = mesh.peers(from);
            let expected: Vec<u64> = (1..=3).filter(|&to| to != from).collect();
            assert_eq!(peers.keys().copied().collect::<Vec<_>>(), expected);
            for to in expected {
                assert_eq!(peers[&to], mesh.addr(from, to));
                let mut stream = reach(&mesh, from, to).await;
                echo(&mut stream, b"hi").await;
            }
        }
        mesh.stop().await;
    }

    #[tokio::test]
    async fn mesh_partition_cuts_both_ways_and_heal_restores() {
        let mesh = Mesh::start(&three_nodes().await).await.unwrap();
        let mut one_two = reach(&mesh, 1, 2).await;
        let mut two_one = reach(&mesh, 2, 1).await;
        let mut two_three = reach(&mesh, 2, 3).await;

        mesh.partition(&[1], &[2, 3]);
        assert_closed(&mut one_two).await;
        assert_closed(&mut two_one).await;
        for (from, to) in [(1, 3), (3, 1)] {
            assert_eq!(mesh.link(from, to).mode(), Mode::Cut);
            assert_closed(&mut connect(mesh.addr(from, to)).await).await;
        }
        // Within a side, traffic flows.
        echo(&mut two_three, b"still").await;
        reach(&mesh, 3, 2).await;

        mesh.heal();
        for (from, to) in [(1, 2), (2, 1), (1, 3), (3, 1)] {
            reach(&mesh, from, to).await;
        }
    }

    #[tokio::test]
    async fn mesh_isolate_cuts_one_node_off() {
        let mesh = Mesh::start(&three_nodes().await).await.unwrap();
        mesh.isolate(3);
        for (from, to) in [(1, 3), (3, 1), (2, 3), (3, 2)] {
            assert_closed(&mut connect(mesh.addr(from, to)).await).await;
        }
        reach(&mesh, 1, 2).await;
        reach(&mesh, 2, 1).await;

        mesh.set(3, 1, Mode::Pass);
        reach(&mesh, 3, 1).await;
        assert_eq!(mesh.link(1, 3).mode(), Mode::Cut);
    }

    #[tokio::test]
    async fn mesh_late_binding() {
        let mesh = Mesh::reserve(&[1, 2, 3]).await.unwrap();
        let peers_of_one = mesh.peers(1);
        // A connection made before node 2 is up waits for it.
        let mut early = connect(peers_of_one[&2]).await;

        let nodes = three_nodes().await;
        for (&id, &addr) in &nodes {
            mesh.set_upstream(id, addr).unwrap();
        }
        assert_eq!(mesh.link(1, 2).upstream(), Some(nodes[&2]));
        read_exactly(&mut early, &[2]).await;
        reach(&mesh, 3, 1).await;
    }
}
