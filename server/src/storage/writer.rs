//! The group-commit writer: one dedicated thread owns every write to the
//! store. It drains whatever requests are queued, applies them as one
//! `WriteBatch` with one WAL sync, then answers every waiting request.
//!
//! This is how "durable before the answer" and high throughput coexist: an
//! fsync costs the same for one message as for ten thousand. The thread is
//! not a Tokio worker, so the sync never blocks the async runtime.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rocksdb::{WriteBatch, WriteOptions, DB};
use tokio::sync::{mpsc, oneshot};

use super::{FsyncMode, StorageError, WriteSet};
use crate::metrics::METRICS;

/// Most write sets merged into one batch; bounds the latency of a batch.
const MAX_SETS_PER_BATCH: usize = 4096;
/// Most bytes merged into one batch.
const MAX_BYTES_PER_BATCH: usize = 64 << 20;

pub(super) enum Request {
    Commit(WriteSet, oneshot::Sender<Result<(), StorageError>>),
    Stop(oneshot::Sender<()>),
}

/// Counters the rest of the server reads (metrics, readiness, tests).
#[derive(Default)]
pub struct WriterStats {
    pub syncs: AtomicU64,
    pub batches: AtomicU64,
    /// Set when a write failed for a reason other than a stall: RocksDB is
    /// then read-only until reopened.
    pub failed: AtomicBool,
}

pub(super) fn spawn(
    db: Arc<DB>,
    fsync: FsyncMode,
    stats: Arc<WriterStats>,
    mut rx: mpsc::Receiver<Request>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("weir-writer".into())
        .spawn(move || {
            let mut opts = WriteOptions::default();
            opts.set_sync(matches!(fsync, FsyncMode::Always));
            // A write stall becomes an immediate error (503 + Retry-After)
            // instead of parking the writer and every request behind it.
            opts.set_no_slowdown(true);
            let mut waiting = Vec::with_capacity(256);
            while let Some(first) = rx.blocking_recv() {
                let mut stop = None;
                let mut batch = WriteBatch::default();
                let mut bytes = 0usize;
                match first {
                    Request::Commit(set, reply) => {
                        bytes += set.apply(&db, &mut batch);
                        waiting.push(reply);
                    }
                    Request::Stop(done) => stop = Some(done),
                }
                while stop.is_none()
                    && waiting.len() < MAX_SETS_PER_BATCH
                    && bytes < MAX_BYTES_PER_BATCH
                {
                    match rx.try_recv() {
                        Ok(Request::Commit(set, reply)) => {
                            bytes += set.apply(&db, &mut batch);
                            waiting.push(reply);
                        }
                        Ok(Request::Stop(done)) => stop = Some(done),
                        Err(_) => break,
                    }
                }
                if !waiting.is_empty() {
                    let result = write(&db, batch, &opts, &stats, waiting.len(), fsync);
                    for reply in waiting.drain(..) {
                        // A requester that went away (client disconnected)
                        // does not undo the write; nothing to do.
                        let _ = reply.send(result.clone());
                    }
                }
                if let Some(done) = stop {
                    rx.close();
                    // Answer anything that raced in before the close.
                    while let Ok(req) = rx.try_recv() {
                        if let Request::Commit(_, reply) = req {
                            let _ = reply.send(Err(StorageError::Closed));
                        }
                    }
                    if let Err(e) = db.flush_wal(true) {
                        tracing::error!(error = %e, "final WAL sync failed");
                    }
                    let _ = done.send(());
                    return;
                }
            }
        })
}

fn write(
    db: &DB,
    batch: WriteBatch,
    opts: &WriteOptions,
    stats: &WriterStats,
    sets: usize,
    fsync: FsyncMode,
) -> Result<(), StorageError> {
    let started = Instant::now();
    let result = db.write_opt(batch, opts);
    let elapsed = started.elapsed();
    METRICS.commit_batch_operations.observe(sets as f64);
    METRICS.commit_sync_duration.observe(elapsed.as_secs_f64());
    stats.batches.fetch_add(1, Ordering::Relaxed);
    if matches!(fsync, FsyncMode::Always) {
        stats.syncs.fetch_add(1, Ordering::Relaxed);
        METRICS.wal_syncs.inc();
    }
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == rocksdb::ErrorKind::Incomplete => {
            tracing::warn!("write stalled by compaction backlog; answering 503");
            Err(StorageError::Stalled)
        }
        Err(e) => {
            tracing::error!(error = %e, "store write failed; store is now read-only");
            stats.failed.store(true, Ordering::SeqCst);
            Err(StorageError::WriteFailed)
        }
    }
}

/// Syncs the WAL periodically for `fsync = "interval"`.
pub(super) fn spawn_interval_sync(
    db: Arc<DB>,
    period: Duration,
    stats: Arc<WriterStats>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("weir-wal-sync".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(period);
                match db.flush_wal(true) {
                    Ok(()) => {
                        stats.syncs.fetch_add(1, Ordering::Relaxed);
                        METRICS.wal_syncs.inc();
                    }
                    Err(e) => tracing::error!(error = %e, "periodic WAL sync failed"),
                }
            }
        })
}
