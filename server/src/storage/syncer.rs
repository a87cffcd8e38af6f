//! The syncer: with `fsync = always`, the thread that makes written batches
//! durable and only then answers their requests.
//!
//! The writer hands over each batch it wrote (unsynced) with its waiting
//! requests. The syncer takes every batch queued so far, syncs the WAL
//! once (`flush_wal(true)` covers every write completed before it), and
//! answers them in write order. While it syncs, the writer keeps writing;
//! the next sync covers all of that at once. So syncs per second adapt to
//! the load without a timer: one per request when idle, one per several
//! batches when busy, and a slow fsync delays answers but not writing.
//!
//! A batch nobody waits on (only bookkeeping answered once written, such
//! as a pull's delivery marks) does not start a sync of its own: it is
//! held until a batch with a waiting request comes (whose sync covers it)
//! or at most [`LAZY_SYNC_WITHIN`]. Under a consume load that saves a
//! third of the syncs, and an answer no longer queues behind a sync
//! nobody waited for.
//!
//! A failed sync leaves acknowledged-looking writes that are not durable:
//! the store is marked failed (never written again until reopened) and the
//! batches are answered with `WriteFailed`, their fences broken.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::health::Health;
use super::slot::DbSlot;
use super::tail_cache::TailCache;
use super::write_set::CachedBatch;
use super::writer::{Reply, WriterStats};
use super::{Fence, StorageError};
use crate::metrics::METRICS;

/// Work for the syncer.
pub(super) enum Job {
    /// A written batch: answer `waiting` once a sync covers it.
    Synced {
        waiting: Vec<Reply>,
        fences: Vec<Fence>,
        /// Its record batches, cached once durable.
        batches: Vec<CachedBatch>,
    },
    /// Answer everything queued before, then stop and signal.
    Stop(std::sync::mpsc::Sender<()>),
}

pub(super) fn spawn(
    slot: Arc<DbSlot>,
    stats: Arc<WriterStats>,
    health: Arc<Health>,
    cache: Arc<TailCache>,
    rx: Receiver<Job>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("weir-wal-syncer".into())
        .spawn(move || {
            let mut batches: Vec<Written> = Vec::new();
            // Since when the batches held (all nobody waits on) are.
            let mut held_since: Option<Instant> = None;
            loop {
                let first = match held_since {
                    None => match rx.recv() {
                        Ok(job) => Some(job),
                        Err(_) => return,
                    },
                    Some(since) => {
                        match rx.recv_timeout(LAZY_SYNC_WITHIN.saturating_sub(since.elapsed())) {
                            Ok(job) => Some(job),
                            Err(RecvTimeoutError::Timeout) => None,
                            // The writer is gone without a stop: sync what
                            // is held, then end.
                            Err(RecvTimeoutError::Disconnected) => {
                                answer(&mut batches, sync(&slot, &stats, &health), &cache);
                                return;
                            }
                        }
                    }
                };
                let mut stop = first.and_then(|job| gather(job, &mut batches));
                while stop.is_none() {
                    match rx.try_recv() {
                        Ok(job) => stop = gather(job, &mut batches),
                        Err(_) => break,
                    }
                }
                let due = held_since.is_some_and(|since| since.elapsed() >= LAZY_SYNC_WITHIN);
                if stop.is_none() && !due && batches.iter().all(Written::is_lazy) {
                    if !batches.is_empty() {
                        held_since.get_or_insert_with(Instant::now);
                    }
                    continue;
                }
                held_since = None;
                if !batches.is_empty() {
                    answer(&mut batches, sync(&slot, &stats, &health), &cache);
                }
                if let Some(stopped) = stop {
                    let _ = stopped.send(());
                    return;
                }
            }
        })
}

/// Longest a written batch nobody waits on stays unsynced.
const LAZY_SYNC_WITHIN: Duration = Duration::from_millis(100);

/// Answers the batches a sync covered, in write order.
fn answer(batches: &mut Vec<Written>, result: Result<(), StorageError>, cache: &TailCache) {
    for Written {
        waiting,
        fences,
        cached,
    } in batches.drain(..)
    {
        if result.is_err() {
            for fence in fences {
                fence.break_it();
            }
        } else {
            // Durable now: readers may be served from memory.
            cache.insert(cached);
        }
        for reply in waiting {
            let _ = reply.send(result.clone());
        }
    }
}

/// A written batch awaiting its sync: who waits, fences, record batches.
struct Written {
    waiting: Vec<Reply>,
    fences: Vec<Fence>,
    cached: Vec<CachedBatch>,
}

impl Written {
    /// Nobody waits for its sync: it need not start one.
    fn is_lazy(&self) -> bool {
        self.waiting.is_empty() && self.cached.is_empty()
    }
}

/// Adds a job to the batches awaiting this sync; returns a stop signal.
fn gather(job: Job, batches: &mut Vec<Written>) -> Option<std::sync::mpsc::Sender<()>> {
    match job {
        Job::Synced {
            waiting,
            fences,
            batches: cached,
        } => {
            batches.push(Written {
                waiting,
                fences,
                cached,
            });
            None
        }
        Job::Stop(stopped) => Some(stopped),
    }
}

/// One WAL sync covering every write completed before it.
fn sync(slot: &DbSlot, stats: &WriterStats, health: &Health) -> Result<(), StorageError> {
    if health.is_failed() {
        // Something failed since these were written: they may not be on disk.
        return Err(StorageError::WriteFailed);
    }
    let db = slot.get().map_err(|_| StorageError::WriteFailed)?;
    let started = Instant::now();
    let result = db.flush_wal(true);
    METRICS
        .commit_sync_duration
        .observe(started.elapsed().as_secs_f64());
    stats.syncs.fetch_add(1, Ordering::Relaxed);
    METRICS.wal_syncs.inc();
    match result {
        Ok(()) => Ok(()),
        Err(e) => {
            tracing::error!(error = %e, "WAL sync failed; the store is now read-only");
            stats.failed.store(true, Ordering::SeqCst);
            health.fail(format!("WAL sync failed: {e}"));
            Err(StorageError::WriteFailed)
        }
    }
}
