//! Store behaviour, each durability claim checked by closing and reopening
//! the same directory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use weir_protocol::{Retention, TopicConfig};

fn topic_record(id: u32) -> TopicRecord {
    TopicRecord {
        id,
        name: format!("t{id}"),
        config: TopicConfig {
            partitions: 1,
            retention: Retention::default(),
            max_message_bytes: 1024,
            dedupe_window_ms: 1000,
            replication_factor: 1,
        },
        created_at: 1,
    }
}

fn new_message(n: u64) -> NewMessage {
    NewMessage {
        key: Some(format!("k{n}")),
        headers: vec![],
        json: true,
        payload: format!("{n}").into_bytes(),
        deliver_at: 0,
    }
}

/// A format-1 record of message `n` (stamped 1000 + n).
fn message(n: u64) -> Vec<u8> {
    record::encode(&new_message(n), 1000 + n)
}

/// A batch of messages `range` (each stamped 1000 + n).
fn batch(range: std::ops::Range<u64>) -> BatchBuilder {
    let mut b = BatchBuilder::with_capacity(0);
    for n in range {
        b.push(&new_message(n), 1000 + n);
    }
    b
}

async fn open(dir: &Path) -> Arc<Store> {
    Store::open(dir, &StoreOptions::default()).unwrap()
}

#[tokio::test]
async fn appended_messages_survive_reopen_in_order() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path()).await;
        let mut set = WriteSet::new();
        set.put_topic(&topic_record(1));
        set.put_counter(COUNTER_TOPIC, 2);
        set.append_batch(1, 0, 0, batch(0..4));
        set.append_batch(1, 0, 4, batch(4..10));
        set.put_partition(
            1,
            0,
            &PartitionMeta {
                partition: 0,
                low: 0,
                high: 10,
                bytes: 100,
                last_timestamp: 1009,
            },
        );
        store.commit(set).await.unwrap();
        store.shutdown().await;
    }
    let store = open(dir.path()).await;
    let recovered = store.recover().unwrap();
    assert_eq!(recovered.next_topic_id, 2);
    assert_eq!(recovered.topics.len(), 1);
    assert_eq!(recovered.topics[0].1[0].high, 10);
    let read = store.read_messages(1, 0, 3, 10, 100, u64::MAX).unwrap();
    let offsets: Vec<u64> = read.iter().map(|m| m.offset).collect();
    assert_eq!(offsets, (3..10).collect::<Vec<_>>());
    assert_eq!(read[0].payload, b"3");
    // Bounds: count, bytes (always at least one), end.
    assert_eq!(
        store.read_messages(1, 0, 0, 10, 2, u64::MAX).unwrap().len(),
        2
    );
    assert_eq!(store.read_messages(1, 0, 0, 10, 100, 1).unwrap().len(), 1);
    assert_eq!(
        store
            .read_messages(1, 0, 0, 5, 100, u64::MAX)
            .unwrap()
            .len(),
        5
    );
    // Other partitions and topics are not mixed in.
    assert!(store
        .read_messages(1, 1, 0, 10, 100, u64::MAX)
        .unwrap()
        .is_empty());
    assert!(store
        .read_messages(2, 0, 0, 10, 100, u64::MAX)
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn corrupt_record_is_an_error_not_wrong_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let mut bad = batch(0..1).finish();
    let last = bad.len() - 1;
    bad[last] ^= 0xFF;
    let mut set = WriteSet::new();
    set.put_raw_batch(1, 0, 0, bad);
    store.commit(set).await.unwrap();
    assert!(matches!(
        store.read_messages(1, 0, 0, 1, 10, u64::MAX),
        Err(StorageError::Corrupt(_))
    ));
}

#[tokio::test]
async fn time_index_finds_first_offset_at_or_after() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let mut set = WriteSet::new();
    // Messages 0..10 stamped 1000..1010 in three batches; a sparse index.
    set.append_batch(1, 0, 0, batch(0..3));
    set.append_batch(1, 0, 3, batch(3..7));
    set.append_batch(1, 0, 7, batch(7..10));
    set.index_timestamp(1, 0, 1000, 0);
    set.index_timestamp(1, 0, 1005, 5);
    set.append_batch(1, 1, 20, batch(20..22));
    store.commit(set).await.unwrap();
    assert_eq!(store.offset_for_timestamp(1, 0, 50).unwrap(), Some(0));
    assert_eq!(store.offset_for_timestamp(1, 0, 1000).unwrap(), Some(0));
    assert_eq!(store.offset_for_timestamp(1, 0, 1001).unwrap(), Some(1));
    assert_eq!(store.offset_for_timestamp(1, 0, 1004).unwrap(), Some(4));
    assert_eq!(store.offset_for_timestamp(1, 0, 1006).unwrap(), Some(6));
    assert_eq!(store.offset_for_timestamp(1, 0, 1009).unwrap(), Some(9));
    assert_eq!(store.offset_for_timestamp(1, 0, 1010).unwrap(), None);
    // No index entry at all: walks from the start.
    assert_eq!(store.offset_for_timestamp(1, 1, 1021).unwrap(), Some(21));
    assert_eq!(store.offset_for_timestamp(1, 2, 0).unwrap(), None);
}

#[tokio::test]
async fn truncate_and_delete_topic_remove_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let mut set = WriteSet::new();
    let record = topic_record(3);
    set.put_topic(&record);
    set.append_batch(3, 0, 0, batch(0..3));
    set.append_batch(3, 0, 3, batch(3..6));
    set.append_batch(3, 0, 6, batch(6..10));
    set.index_timestamp(3, 0, 1000, 0);
    set.put_dedupe(
        3,
        "id-1",
        DedupeEntry {
            partition: 0,
            offset: 1,
            expires_at: 50,
        },
    );
    store.commit(set).await.unwrap();
    let mut set = WriteSet::new();
    set.truncate_partition(3, 0, 4, 1004);
    store.commit(set).await.unwrap();
    // Whole batches only: 0..3 is gone, 3..6 (holding 4) stays.
    let left = store.read_messages(3, 0, 0, 10, 100, u64::MAX).unwrap();
    assert_eq!(left.first().map(|m| m.offset), Some(3));
    assert_eq!(left.len(), 7);
    let mut set = WriteSet::new();
    set.truncate_partition(3, 0, 6, 1006);
    store.commit(set).await.unwrap();
    let left = store.read_messages(3, 0, 0, 10, 100, u64::MAX).unwrap();
    assert_eq!(left.first().map(|m| m.offset), Some(6));
    assert_eq!(
        store.get_dedupe(3, "id-1").unwrap().map(|e| e.offset),
        Some(1)
    );
    // The id and its expiry index entry.
    assert_eq!(store.expired_dedupe_keys(3, 100, 10).unwrap().len(), 2);
    assert!(store.expired_dedupe_keys(3, 10, 10).unwrap().is_empty());
    let mut set = WriteSet::new();
    set.delete_topic(&record);
    store.commit(set).await.unwrap();
    assert!(store
        .read_messages(3, 0, 0, 10, 100, u64::MAX)
        .unwrap()
        .is_empty());
    assert!(store.get_dedupe(3, "id-1").unwrap().is_none());
    assert!(store.recover().unwrap().topics.is_empty());
}

#[tokio::test]
async fn subscription_state_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path()).await;
        let mut set = WriteSet::new();
        set.put_sub_cursor(7, 0, 42);
        set.put_sub_entry(
            7,
            0,
            45,
            &SubEntry {
                state: EntryState::Pending,
                attempts: 2,
                due_at: 99,
                reason: "boom".into(),
            },
        );
        set.put_sub_entry(
            7,
            0,
            43,
            &SubEntry {
                state: EntryState::Acked,
                attempts: 1,
                due_at: 0,
                reason: String::new(),
            },
        );
        set.put_sub_cursor(8, 0, 1);
        store.commit(set).await.unwrap();
        store.shutdown().await;
    }
    let store = open(dir.path()).await;
    let loaded = store.load_sub_state(7).unwrap();
    assert_eq!(loaded.cursors, vec![(0, 42)]);
    let offsets: Vec<u64> = loaded.entries.iter().map(|e| e.1).collect();
    assert_eq!(offsets, vec![43, 45]);
    assert_eq!(loaded.entries[1].2.attempts, 2);
}

#[tokio::test]
async fn concurrent_commits_share_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let mut tasks = Vec::new();
    for t in 0..64u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut set = WriteSet::new();
            set.append_batch(1, 0, t, batch(t..t + 1));
            store.commit(set).await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stats = store.writer_stats();
    let batches = stats.batches.load(Ordering::Relaxed);
    assert!((1..=64).contains(&batches));
    assert_eq!(
        store
            .read_messages(1, 0, 0, 64, 100, u64::MAX)
            .unwrap()
            .len(),
        64
    );
    store.shutdown().await;
    // After shutdown, commits fail cleanly instead of hanging.
    assert!(matches!(
        store.commit(WriteSet::new()).await,
        Err(StorageError::Closed)
    ));
}

#[tokio::test]
async fn store_refuses_to_open_on_corruption_in_the_middle_of_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path()).await;
        // Many small commits: many WAL records after the one we damage.
        for n in 0..200 {
            let mut set = WriteSet::new();
            set.append_batch(1, 0, n, batch(n..n + 1));
            store.commit(set).await.unwrap();
        }
        store.shutdown().await;
    }
    let wal = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .expect("a WAL file");
    let mut bytes = std::fs::read(&wal).unwrap();
    assert!(bytes.len() > 4096, "WAL too small: {}", bytes.len());
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 64] {
        *b ^= 0xA5;
    }
    std::fs::write(&wal, bytes).unwrap();
    match Store::open(dir.path(), &StoreOptions::default()) {
        Err(StorageError::Open { detail, .. }) => {
            assert!(
                detail.contains("Corruption") || detail.contains("orrupt"),
                "{detail}"
            );
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("a store with a damaged WAL middle opened (data silently dropped)"),
    }
}

/// Expired ids are found through the expiry index, in time order, without
/// walking the live ones; an id given again after it expired keeps its new
/// entry.
#[tokio::test]
async fn expired_dedupe_ids_come_from_the_expiry_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let mut set = WriteSet::new();
    for i in 0..1000u64 {
        let entry = DedupeEntry {
            partition: 0,
            offset: i,
            expires_at: if i < 10 { 100 + i } else { 1_000_000 },
        };
        set.put_dedupe(7, &format!("id-{i}"), entry);
    }
    store.commit(set).await.unwrap();
    // Ten expired by 200: each with its index entry.
    let expired = store.expired_dedupe_keys(7, 200, 100).unwrap();
    assert_eq!(expired.len(), 20);
    assert_eq!(store.expired_dedupe_keys(7, 200, 3).unwrap().len(), 6);
    // "id-0" is given again (a new entry, a new expiry) before cleanup.
    let mut set = WriteSet::new();
    set.put_dedupe(
        7,
        "id-0",
        DedupeEntry {
            partition: 0,
            offset: 5000,
            expires_at: 5000,
        },
    );
    store.commit(set).await.unwrap();
    let mut set = WriteSet::new();
    for key in store.expired_dedupe_keys(7, 200, 100).unwrap() {
        set.delete_dedupe_key(key);
    }
    store.commit(set).await.unwrap();
    assert!(store.expired_dedupe_keys(7, 200, 100).unwrap().is_empty());
    assert_eq!(
        store.get_dedupe(7, "id-0").unwrap().map(|e| e.offset),
        Some(5000)
    );
    assert!(store.get_dedupe(7, "id-1").unwrap().is_none());
    assert!(store.get_dedupe(7, "id-10").unwrap().is_some());
}

/// Writes a format-1 data directory (one key per message in `messages`,
/// no format marker) the way older builds did.
fn write_format_1(dir: &Path, messages: &[(u32, u32, u64)]) {
    let mut opts = rocksdb::Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    let names = [CF_MESSAGES, CF_TIME_INDEX, CF_DEDUPE, CF_SUB_STATE, CF_META];
    let db = DB::open_cf(&opts, dir, names).unwrap();
    let legacy = db.cf_handle(CF_MESSAGES).unwrap();
    for &(topic, partition, offset) in messages {
        db.put_cf(
            legacy,
            partition_key(topic, partition, offset),
            message(offset),
        )
        .unwrap();
    }
    db.flush_cf(legacy).unwrap();
}

/// A format-1 directory is converted once at startup: every message keeps
/// its offset, bytes and timestamp (gaps stay gaps, partitions and topics
/// stay apart), the old column family is gone, and a newer format is
/// refused.
#[tokio::test]
async fn format_1_directories_are_upgraded_to_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut old: Vec<(u32, u32, u64)> = Vec::new();
    old.extend((0..2500).map(|o| (1, 0, o)));
    old.extend((0..10).chain(20..25).map(|o| (1, 1, o)));
    old.extend((5..8).map(|o| (2, 0, o)));
    write_format_1(dir.path(), &old);
    {
        let store = open(dir.path()).await;
        let all = store
            .read_messages(1, 0, 0, u64::MAX, 10_000, u64::MAX)
            .unwrap();
        assert_eq!(all.len(), 2500);
        for (i, m) in all.iter().enumerate() {
            assert_eq!(m.offset, i as u64);
            assert_eq!(m.payload, i.to_string().into_bytes());
            assert_eq!(m.timestamp, 1000 + i as u64);
            assert_eq!(m.stored_bytes, message(i as u64).len() as u64);
        }
        let p1: Vec<u64> = store
            .read_messages(1, 1, 0, u64::MAX, 100, u64::MAX)
            .unwrap()
            .iter()
            .map(|m| m.offset)
            .collect();
        assert_eq!(p1, (0..10).chain(20..25).collect::<Vec<_>>());
        let at = store.read_at(1, 1, &[22, 3, 15, 9]).unwrap();
        let at: Vec<u64> = at.iter().map(|m| m.offset).collect();
        assert_eq!(at, vec![22, 3, 9]);
        assert_eq!(
            store
                .read_messages(2, 0, 0, 100, 100, u64::MAX)
                .unwrap()
                .len(),
            3
        );
        store.shutdown().await;
    }
    let names = DB::list_cf(&rocksdb::Options::default(), dir.path()).unwrap();
    assert!(!names.iter().any(|n| n == CF_MESSAGES), "{names:?}");
    {
        // Opening again changes nothing.
        let store = open(dir.path()).await;
        let n = store
            .read_messages(1, 0, 0, u64::MAX, 10_000, u64::MAX)
            .unwrap()
            .len();
        assert_eq!(n, 2500);
        let mut set = WriteSet::new();
        set.put_counter("format", 3);
        store.commit(set).await.unwrap();
        store.shutdown().await;
    }
    match Store::open(dir.path(), &StoreOptions::default()) {
        Err(StorageError::Open { detail, .. }) => assert!(detail.contains("newer"), "{detail}"),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("a directory of a newer format opened"),
    }
}

/// Point reads find messages inside batches, in the order asked.
#[tokio::test]
async fn read_at_finds_messages_inside_batches() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let mut set = WriteSet::new();
    set.append_batch(1, 0, 0, batch(0..5));
    set.append_batch(1, 0, 5, batch(5..9));
    set.append_batch(1, 0, 12, batch(12..14));
    store.commit(set).await.unwrap();
    let got: Vec<u64> = store
        .read_at(1, 0, &[8, 0, 4, 5, 10, 13, 2, 99])
        .unwrap()
        .iter()
        .map(|m| m.offset)
        .collect();
    assert_eq!(got, vec![8, 0, 4, 5, 13, 2]);
    let mut sizes = Vec::new();
    store
        .scan_sizes(1, 0, 3, 13, |o, size, ts| {
            sizes.push((o, size, ts));
            true
        })
        .unwrap();
    let offsets: Vec<u64> = sizes.iter().map(|s| s.0).collect();
    assert_eq!(offsets, vec![3, 4, 5, 6, 7, 8, 12]);
    assert!(sizes
        .iter()
        .all(|&(o, size, ts)| ts == 1000 + o && size == new_message(o).encoded_len() as u64));
}

/// A flushed memtable's WAL file is archived by RocksDB (not unlinked
/// whole) and then deleted by the trim thread; the data stays readable.
#[tokio::test]
async fn obsolete_wal_files_are_archived_then_trimmed_away() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let archive = super::wal_trim::archive_dir(dir.path());
    for round in 0..3u64 {
        let mut set = WriteSet::new();
        set.append_batch(1, 0, round * 10, batch(round * 10..round * 10 + 10));
        store.commit(set).await.unwrap();
        let db = store.db().unwrap();
        db.flush_cf(cf(&db, CF_BATCHES).unwrap()).unwrap();
    }
    let logs_in_archive = || {
        std::fs::read_dir(&archive)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
                    .count()
            })
            .unwrap_or(0)
    };
    eventually(|| archive.is_dir() && logs_in_archive() == 0).await;
    assert!(archive.is_dir(), "RocksDB archives obsolete WAL files");
    assert_eq!(logs_in_archive(), 0, "the trim thread deleted them");
    let read = store.read_messages(1, 0, 0, 30, 100, u64::MAX).unwrap();
    assert_eq!(read.len(), 30);
    store.shutdown().await;
}

/// Waits up to 5 s for `done` to hold (what background threads do);
/// whether it did.
async fn eventually(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..100 {
        if done() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    done()
}

/// Syncs the store's syncer has done so far.
fn syncs(store: &Store) -> u64 {
    store
        .writer_stats()
        .syncs
        .load(std::sync::atomic::Ordering::Relaxed)
}

/// A set answered once written (a pull's delivery mark) starts no sync of
/// its own: fifty in a row cost none (a dozen before), and the
/// next set that waits for its sync covers them all.
#[tokio::test]
async fn sets_answered_once_written_do_not_start_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let before = syncs(&store);
    for upto in 1..=50u64 {
        let mut set = WriteSet::new();
        set.put_sub_delivered(1, 0, upto);
        set.answer_once_written();
        store.commit(set).await.unwrap();
    }
    // Only a stall of the test longer than the hold could let one through.
    assert!(syncs(&store) - before <= 2, "{}", syncs(&store) - before);
    let mut set = WriteSet::new();
    set.put_counter(COUNTER_TOPIC, 2);
    store.commit(set).await.unwrap();
    assert!(syncs(&store) > before);
}

/// Held unsynced at most `LAZY_SYNC_WITHIN`: a lone delivery mark is
/// synced soon without anything else coming.
#[tokio::test]
async fn a_lone_set_answered_once_written_is_synced_soon() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let before = syncs(&store);
    let mut set = WriteSet::new();
    set.put_sub_delivered(1, 0, 7);
    set.answer_once_written();
    store.commit(set).await.unwrap();
    assert!(
        eventually(|| syncs(&store) > before).await,
        "the held set was never synced"
    );
}
