//! The group-commit writer: one dedicated thread owns every write to the
//! store. It drains whatever requests are queued and applies them as one
//! `WriteBatch` (written to the WAL, not yet synced).
//!
//! With `fsync = always` the batch then goes to the syncer (`syncer.rs`),
//! which answers its requests once a WAL sync covers it; meanwhile the
//! writer goes on writing the next batch, so one slow fsync does not stop
//! the writing, and every sync covers everything written while the previous
//! one ran (an fsync costs about the same for one message as for ten
//! thousand). Neither thread is a Tokio worker, so a sync never blocks the
//! async runtime.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rocksdb::{WriteBatch, WriteOptions, DB};
use tokio::sync::{mpsc, oneshot};

use std::path::PathBuf;

use super::health::{Health, HARD_RESERVE_BYTES};
use super::slot::DbSlot;
use super::syncer;
use super::tail_cache::TailCache;
use super::write_set::CachedBatch;
use super::{Fence, FsyncMode, StorageError, WriteSet};
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
    /// Tests: `(topic, n)` fails the next `n` batches that append or
    /// remove messages of `topic`, as a write stall would (nothing written), to exercise what
    /// callers do with a failed commit.
    #[cfg(test)]
    pub fail_appends: std::sync::Mutex<Option<(u32, u32)>>,
}

pub(super) fn spawn(
    slot: Arc<DbSlot>,
    path: PathBuf,
    fsync: FsyncMode,
    stats: Arc<WriterStats>,
    health: Arc<Health>,
    cache: Arc<TailCache>,
    mut rx: mpsc::Receiver<Request>,
) -> std::io::Result<(JoinHandle<()>, JoinHandle<()>)> {
    let (sync_tx, sync_rx) = std::sync::mpsc::sync_channel(SYNC_QUEUE);
    let syncer = syncer::spawn(
        slot.clone(),
        stats.clone(),
        health.clone(),
        cache.clone(),
        sync_rx,
    )?;
    let writer = std::thread::Builder::new()
        .name("weir-writer".into())
        .spawn(move || {
            let mut opts = WriteOptions::default();
            // Never synced here: the syncer does it (fsync = always), so the
            // writer can write the next batch while a sync runs.
            opts.set_sync(false);
            // RocksDB's slowdowns (a compaction backlog building up) are
            // taken as backpressure: the write waits its delay. A full
            // stop is answered at once with 503 + Retry-After (see
            // `write`) instead of parking every request behind it.
            opts.set_no_slowdown(false);
            let out = Out {
                fsync,
                cache: cache.clone(),
                sync_tx,
                stats: stats.clone(),
                health: health.clone(),
            };
            let mut pending = Pending::default();
            while let Some(first) = rx.blocking_recv() {
                // Taken per batch: the store may have been reopened. A
                // database that failed a write is never written again (it
                // is read-only until reopened; RocksDB may even abort).
                let db = match slot.get() {
                    Ok(db) if !health.is_failed() => db,
                    _ => {
                        let mut stop = refuse(first);
                        while stop.is_none() {
                            match rx.try_recv() {
                                Ok(request) => stop = refuse(request),
                                Err(_) => break,
                            }
                        }
                        if let Some(done) = stop {
                            rx.close();
                            out.stop(None, done);
                            return;
                        }
                        continue;
                    }
                };
                let mut stop = pending.take(&db, &stats, first);
                while stop.is_none() && !pending.full() {
                    match rx.try_recv() {
                        Ok(request) => stop = pending.take(&db, &stats, request),
                        Err(_) => break,
                    }
                }
                let free = health.measure(&path);
                if free.is_some_and(|f| f < HARD_RESERVE_BYTES + pending.bytes as u64) {
                    pending.refuse(StorageError::DiskFull);
                } else {
                    pending.commit(&db, &opts, &out);
                }
                if let Some(done) = stop {
                    rx.close();
                    // Answer anything that raced in before the close.
                    while let Ok(req) = rx.try_recv() {
                        if let Request::Commit(_, reply) = req {
                            let _ = reply.send(Err(StorageError::Closed));
                        }
                    }
                    out.stop(Some(&db), done);
                    return;
                }
            }
        })?;
    Ok((writer, syncer))
}

/// Batches written but not yet synced, at most (the writer waits for the
/// syncer beyond that).
const SYNC_QUEUE: usize = 1024;

/// Where a written batch's answers go.
struct Out {
    fsync: FsyncMode,
    cache: Arc<TailCache>,
    sync_tx: std::sync::mpsc::SyncSender<syncer::Job>,
    stats: Arc<WriterStats>,
    health: Arc<Health>,
}

impl Out {
    /// Answers a written batch: at once, or (fsync = always) once synced;
    /// its record batches enter the tail cache just before.
    fn written(&self, waiting: Vec<Reply>, fences: Vec<Fence>, batches: Vec<CachedBatch>) {
        if !matches!(self.fsync, FsyncMode::Always) {
            self.cache.insert(batches);
            for reply in waiting {
                let _ = reply.send(Ok(()));
            }
            return;
        }
        let job = syncer::Job::Synced {
            waiting,
            fences,
            batches,
        };
        if let Err(std::sync::mpsc::SendError(syncer::Job::Synced {
            waiting, fences, ..
        })) = self.sync_tx.send(job)
        {
            // The syncer is gone (it only stops when told): nothing synced
            // these writes, so they are not acknowledged.
            for fence in fences {
                fence.break_it();
            }
            for reply in waiting {
                let _ = reply.send(Err(StorageError::Closed));
            }
        }
    }

    /// Stops the syncer after everything written is synced, then syncs the
    /// WAL a last time (every mode) and signals `done`.
    fn stop(&self, db: Option<&DB>, done: oneshot::Sender<()>) {
        let (stopped_tx, stopped_rx) = std::sync::mpsc::channel();
        if self.sync_tx.send(syncer::Job::Stop(stopped_tx)).is_ok() {
            let _ = stopped_rx.recv();
        }
        if let Some(db) = db {
            if !self.health.is_failed() {
                if let Err(e) = db.flush_wal(true) {
                    self.health.fail(format!("final WAL sync failed: {e}"));
                    tracing::error!(error = %e, "final WAL sync failed");
                }
            }
        }
        let _ = done.send(());
    }
}

pub(super) type Reply = oneshot::Sender<Result<(), StorageError>>;

/// The batch being gathered: the sets taken so far and who waits on them.
#[derive(Default)]
struct Pending {
    batch: WriteBatch,
    bytes: usize,
    waiting: Vec<Reply>,
    /// Answered once the batch is written (before its sync).
    written: Vec<Reply>,
    /// Told once the batch is written; not answers (see
    /// `WriteSet::notify_written`).
    signals: Vec<Reply>,
    fences: Vec<Fence>,
    /// Record batches appended, for the tail cache once durable.
    batches: Vec<CachedBatch>,
    /// Tests: this batch fails (see `WriterStats::fail_appends`).
    inject_failure: bool,
}

impl Pending {
    /// Adds a request to the batch; returns the stop signal if it is one.
    fn take(
        &mut self,
        db: &DB,
        stats: &WriterStats,
        request: Request,
    ) -> Option<oneshot::Sender<()>> {
        match request {
            Request::Commit(mut set, reply) => {
                #[cfg(test)]
                {
                    let mut fail = match stats.fail_appends.lock() {
                        Ok(g) => g,
                        Err(p) => p.into_inner(),
                    };
                    if let Some((topic, n)) = fail.as_mut() {
                        if *n > 0 && set.appends_to(*topic) {
                            *n -= 1;
                            self.inject_failure = true;
                        }
                    }
                }
                #[cfg(not(test))]
                let _ = stats;
                if !set.fences_hold() {
                    // Built on memory an earlier failed commit left wrong:
                    // refused; its owner reloads from the store first.
                    let _ = reply.send(Err(StorageError::Fenced));
                    return None;
                }
                self.fences.extend(set.take_fences());
                self.batches.extend(set.take_batches());
                self.signals.extend(set.take_written_signals());
                let once_written = set.is_once_written();
                self.bytes += set.apply(db, &mut self.batch);
                if once_written {
                    self.written.push(reply);
                } else {
                    self.waiting.push(reply);
                }
                None
            }
            Request::Stop(done) => Some(done),
        }
    }

    /// Answers every set of the batch with `error`, writing nothing.
    fn refuse(&mut self, error: StorageError) {
        self.batch = WriteBatch::default();
        self.bytes = 0;
        self.batches.clear();
        for fence in self.fences.drain(..) {
            fence.break_it();
        }
        for reply in self
            .waiting
            .drain(..)
            .chain(self.written.drain(..))
            .chain(self.signals.drain(..))
        {
            let _ = reply.send(Err(error.clone()));
        }
    }

    fn sets(&self) -> usize {
        self.waiting.len() + self.written.len()
    }

    fn full(&self) -> bool {
        self.sets() >= MAX_SETS_PER_BATCH || self.bytes >= MAX_BYTES_PER_BATCH
    }

    /// Writes the batch (if any set was taken) and hands its answers on.
    fn commit(&mut self, db: &DB, opts: &WriteOptions, out: &Out) {
        if self.sets() == 0 {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        let injected = std::mem::take(&mut self.inject_failure);
        let result = if injected {
            Err(StorageError::Stalled)
        } else {
            write(db, batch, opts, &out.stats, self.sets())
        };
        self.bytes = 0;
        let mut waiting = std::mem::take(&mut self.waiting);
        let written = std::mem::take(&mut self.written);
        let signals = std::mem::take(&mut self.signals);
        let fences = std::mem::take(&mut self.fences);
        let batches = std::mem::take(&mut self.batches);
        match result {
            Ok(()) => {
                for reply in written.into_iter().chain(signals) {
                    let _ = reply.send(Ok(()));
                }
                out.written(waiting, fences, batches);
            }
            Err(e) => {
                if let StorageError::WriteFailed = e {
                    out.health.fail(
                        "a write to the store failed (disk full or I/O error); reopening".into(),
                    );
                }
                // Before the next request is looked at.
                for fence in fences {
                    fence.break_it();
                }
                waiting.extend(written);
                waiting.extend(signals);
                for reply in waiting {
                    // A requester that went away (client disconnected)
                    // does not undo anything; nothing to do.
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Answers a request while the store is being reopened.
fn refuse(request: Request) -> Option<oneshot::Sender<()>> {
    match request {
        Request::Commit(mut set, reply) => {
            for fence in set.take_fences() {
                fence.break_it();
            }
            let _ = reply.send(Err(StorageError::WriteFailed));
            None
        }
        Request::Stop(done) => Some(done),
    }
}

fn write(
    db: &DB,
    batch: WriteBatch,
    opts: &WriteOptions,
    stats: &WriterStats,
    sets: usize,
) -> Result<(), StorageError> {
    if db
        .property_int_value("rocksdb.is-write-stopped")
        .ok()
        .flatten()
        .is_some_and(|stopped| stopped > 0)
    {
        tracing::warn!("writes stopped by a compaction backlog; answering 503");
        return Err(StorageError::Stalled);
    }
    let started = Instant::now();
    let result = db.write_opt(batch, opts);
    METRICS
        .commit_write_duration
        .observe(started.elapsed().as_secs_f64());
    METRICS.commit_batch_operations.observe(sets as f64);
    stats.batches.fetch_add(1, Ordering::Relaxed);
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
    slot: Arc<DbSlot>,
    period: Duration,
    stats: Arc<WriterStats>,
    health: Arc<Health>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("weir-wal-sync".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(period);
                if health.is_failed() {
                    continue;
                }
                let Ok(db) = slot.get() else { continue };
                match db.flush_wal(true) {
                    Ok(()) => {
                        stats.syncs.fetch_add(1, Ordering::Relaxed);
                        METRICS.wal_syncs.inc();
                    }
                    Err(e) => {
                        // Acknowledged writes are not durable: unready until
                        // the store is reopened.
                        tracing::error!(error = %e, "periodic WAL sync failed");
                        stats.failed.store(true, Ordering::SeqCst);
                        health.fail(format!("periodic WAL sync failed: {e}"));
                    }
                }
            }
        })
}
