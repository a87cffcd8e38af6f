//! The dead letters of a subscription as records: browsing them with
//! filters (reason, key, headers, time, attempts, state), and redriving or
//! purging a filtered selection. Each record stays after it is redriven or
//! purged, with its new state, so the history can be browsed and a second
//! redrive finds nothing; every batch changes records and delivery state in
//! one commit, so a crash halfway never redrives one twice or drops one.

use std::collections::HashMap;
use std::time::Duration;

use regex::Regex;
use weir_protocol::{
    DeadLetter, DeadLetterFilter, DeadLetterList, DeadLetterQuery, DeadLetterState, PurgeRequest,
    PurgeResponse, RedriveRequest, RedriveResponse,
};

use super::{committed, Subscription};
use crate::broker::error::{BrokerError, Result};
use crate::broker::read::to_wire;
use crate::storage::{EntryState, StoredMessage, SubEntry};

/// Records read per store scan.
const SCAN_BATCH: usize = 1000;
/// Records one listing request looks at, at most (it returns `next`).
const LIST_SCAN_BUDGET: usize = 20_000;
/// Default and largest page of a listing.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;
/// Dead letters returned as a sample by redrive and purge.
const SAMPLE: usize = 10;
/// Longest regular expression accepted.
const MAX_REGEX_BYTES: usize = 1024;

/// A filter ready to match records (and, when it needs them, messages).
struct Matcher {
    filter: DeadLetterFilter,
    regex: Option<Regex>,
    state: Option<DeadLetterState>,
}

impl Matcher {
    fn new(filter: DeadLetterFilter, state: Option<DeadLetterState>) -> Result<Matcher> {
        let regex = match &filter.reason_regex {
            None => None,
            Some(text) if text.len() > MAX_REGEX_BYTES => {
                return Err(BrokerError::invalid(
                    "reason_regex",
                    format!("`reason_regex` must be at most {MAX_REGEX_BYTES} bytes"),
                ))
            }
            Some(text) => Some(
                regex::RegexBuilder::new(text)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| {
                        BrokerError::invalid(
                            "reason_regex",
                            format!("`reason_regex` is not a valid regular expression: {e}"),
                        )
                    })?,
            ),
        };
        if let (Some(from), Some(to)) = (filter.from_ms, filter.to_ms) {
            if from > to {
                return Err(BrokerError::invalid(
                    "from_ms",
                    "`from_ms` must not be after `to_ms`",
                ));
            }
        }
        Ok(Matcher {
            filter,
            regex,
            state,
        })
    }

    /// Matches what the record alone tells (and where it came from).
    fn record(&self, partition: u32, offset: u64, entry: &SubEntry) -> bool {
        let f = &self.filter;
        f.partition.is_none_or(|p| p == partition)
            && f.offset.is_none_or(|o| o == offset)
            && self.state.is_none_or(|s| s == state_of(entry))
            && f.reason
                .as_ref()
                .is_none_or(|r| entry.reason.contains(r.as_str()))
            && self
                .regex
                .as_ref()
                .is_none_or(|r| r.is_match(&entry.reason))
            && f.from_ms.is_none_or(|t| entry.due_at >= t)
            && f.to_ms.is_none_or(|t| entry.due_at < t)
            && f.min_attempts.is_none_or(|n| entry.attempts >= n)
    }

    fn needs_message(&self) -> bool {
        self.filter.key.is_some() || self.filter.headers.as_ref().is_some_and(|h| !h.is_empty())
    }

    /// Matches what only the message tells (key, headers).
    fn message(&self, message: Option<&StoredMessage>) -> bool {
        if !self.needs_message() {
            return true;
        }
        let Some(m) = message else {
            return false;
        };
        self.filter
            .key
            .as_ref()
            .is_none_or(|k| m.key.as_deref() == Some(k.as_str()))
            && self
                .filter
                .headers
                .iter()
                .flatten()
                .all(|(name, value)| m.headers.iter().any(|(n, v)| n == name && v == value))
    }
}

fn state_of(entry: &SubEntry) -> DeadLetterState {
    match entry.state {
        EntryState::Redriven => DeadLetterState::Redriven,
        EntryState::Purged => DeadLetterState::Purged,
        _ => DeadLetterState::Waiting,
    }
}

/// `partition:offset`, the listing cursor.
fn parse_cursor(cursor: Option<&str>) -> Result<Option<(u32, u64)>> {
    let Some(text) = cursor else {
        return Ok(None);
    };
    let parsed = text
        .split_once(':')
        .and_then(|(p, o)| Some((p.parse().ok()?, o.parse().ok()?)));
    match parsed {
        Some(position) => Ok(Some(position)),
        None => Err(BrokerError::invalid(
            "cursor",
            "`cursor` must be the `next` value of a previous page",
        )),
    }
}

/// One matching record with its message.
struct Found {
    partition: u32,
    offset: u64,
    entry: SubEntry,
    message: Option<StoredMessage>,
}

impl Subscription {
    /// Reads records after `after`, keeps the matching ones (up to
    /// `want`), looking at no more than `budget` records. Returns them and
    /// the position of the last record looked at (`None` at the end). The
    /// original messages are read only when the filter needs them or the
    /// caller shows them (`with_messages`).
    async fn scan_dead(
        &self,
        matcher: &Matcher,
        mut after: Option<(u32, u64)>,
        want: usize,
        budget: usize,
        with_messages: bool,
    ) -> Result<(Vec<Found>, Option<(u32, u64)>)> {
        let mut found = Vec::new();
        let mut looked = 0;
        loop {
            let store = self.store.clone();
            let sub = self.id();
            let batch =
                tokio::task::spawn_blocking(move || store.sub_dead_letters(sub, after, SCAN_BATCH))
                    .await??;
            let end = batch.len() < SCAN_BATCH;
            let mut candidates = Vec::new();
            for (p, o, entry) in batch {
                looked += 1;
                after = Some((p, o));
                if matcher.record(p, o, &entry) {
                    candidates.push((p, o, entry));
                }
                if looked >= budget {
                    break;
                }
            }
            let mut messages = if with_messages || matcher.needs_message() {
                self.read_originals(&candidates).await?
            } else {
                HashMap::new()
            };
            for (p, o, entry) in candidates {
                let message = messages.remove(&(p, o));
                if matcher.message(message.as_ref()) {
                    found.push(Found {
                        partition: p,
                        offset: o,
                        entry,
                        message,
                    });
                    if found.len() >= want {
                        // Resume right after the last one returned.
                        return Ok((found, Some((p, o))));
                    }
                }
            }
            if end {
                return Ok((found, None));
            }
            if looked >= budget {
                return Ok((found, after));
            }
        }
    }

    /// The original messages of dead letters still in the topic.
    async fn read_originals(
        &self,
        records: &[(u32, u64, SubEntry)],
    ) -> Result<HashMap<(u32, u64), StoredMessage>> {
        let mut by_partition: HashMap<u32, Vec<u64>> = HashMap::new();
        for (p, o, _) in records {
            by_partition.entry(*p).or_default().push(*o);
        }
        let mut out = HashMap::new();
        for (p, offsets) in by_partition {
            let store = self.store.clone();
            let topic = self.topic.id();
            let found =
                tokio::task::spawn_blocking(move || store.read_at(topic, p, &offsets)).await??;
            out.extend(found.into_iter().map(|m| ((p, m.offset), m)));
        }
        Ok(out)
    }

    fn to_wire_dead(&self, found: Found) -> DeadLetter {
        let topic = self.topic.name();
        DeadLetter {
            partition: found.partition,
            offset: found.offset,
            attempts: found.entry.attempts,
            reason: found.entry.reason.clone(),
            dead_lettered_at: found.entry.due_at,
            state: state_of(&found.entry),
            message: found.message.map(|m| to_wire(&topic, found.partition, m)),
        }
    }

    /// A page of dead-letter records matching `query`.
    pub async fn dead_letters(&self, query: DeadLetterQuery) -> Result<DeadLetterList> {
        let limit = query.limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(BrokerError::invalid(
                "limit",
                format!("`limit` must be between 1 and {MAX_PAGE}"),
            ));
        }
        let after = parse_cursor(query.cursor.as_deref())?;
        if query.min_attempts.is_some_and(|n| n > i32::MAX as u32) {
            return Err(BrokerError::invalid(
                "min_attempts",
                format!("`min_attempts` must be at most {}", i32::MAX),
            ));
        }
        let matcher = Matcher::new(
            DeadLetterFilter {
                reason: query.reason,
                reason_regex: query.reason_regex,
                key: query.key,
                headers: None,
                from_ms: query.from_ms,
                to_ms: query.to_ms,
                min_attempts: query.min_attempts,
                partition: None,
                offset: None,
            },
            query.state,
        )?;
        let (found, last) = self
            .scan_dead(&matcher, after, limit, LIST_SCAN_BUDGET, true)
            .await?;
        let next = last.map(|(p, o)| format!("{p}:{o}"));
        Ok(DeadLetterList {
            dead_letters: found.into_iter().map(|f| self.to_wire_dead(f)).collect(),
            next,
        })
    }

    /// Makes the waiting dead letters matching the request deliverable
    /// again, in batches (each one commit), at most `rate_per_s` a second.
    pub async fn redrive_filtered(&self, request: &RedriveRequest) -> Result<RedriveResponse> {
        if request.rate_per_s == Some(0) {
            return Err(BrokerError::invalid(
                "rate_per_s",
                "`rate_per_s` must be positive",
            ));
        }
        if request.max_messages == Some(0) {
            return Err(BrokerError::invalid(
                "max_messages",
                "`max_messages` must be positive or null (all)",
            ));
        }
        let selection = Selection {
            filter: request.filter.clone().unwrap_or_default(),
            max: request.max.or(request.max_messages),
            dry_run: request.dry_run.unwrap_or(false),
            rate_per_s: request.rate_per_s,
        };
        let (matched, redriven, sample) = self.apply_to_dead(selection, Apply::Redrive).await?;
        Ok(RedriveResponse {
            redriven,
            matched,
            sample,
        })
    }

    /// Purges the waiting dead letters matching the request.
    pub async fn purge_dead_letters(&self, request: &PurgeRequest) -> Result<PurgeResponse> {
        let selection = Selection {
            filter: request.filter.clone().unwrap_or_default(),
            max: request.max,
            dry_run: request.dry_run.unwrap_or(false),
            rate_per_s: None,
        };
        let (matched, purged, sample) = self.apply_to_dead(selection, Apply::Purge).await?;
        Ok(PurgeResponse {
            purged,
            matched,
            sample,
        })
    }

    /// Applies `what` to the waiting dead letters `selection` picks, batch
    /// by batch, each batch one commit. Returns how many matched, how many
    /// changed, and a sample.
    async fn apply_to_dead(
        &self,
        selection: Selection,
        what: Apply,
    ) -> Result<(u64, u64, Vec<DeadLetter>)> {
        if selection.max == Some(0) {
            return Err(BrokerError::invalid(
                "max",
                "`max` must be positive or null (all)",
            ));
        }
        let matcher = Matcher::new(selection.filter, Some(DeadLetterState::Waiting))?;
        let batch = selection
            .rate_per_s
            .map_or(SCAN_BATCH, |r| (r as usize).clamp(1, SCAN_BATCH));
        let (mut matched, mut changed, mut sample) = (0, 0, Vec::new());
        let mut after = None;
        let mut remaining = selection.max.unwrap_or(u64::MAX);
        while remaining > 0 {
            let started = tokio::time::Instant::now();
            let want = remaining.min(batch as u64) as usize;
            // Messages only for the sample: a redrive or purge of many dead
            // letters does not read every original.
            let (found, last) = self
                .scan_dead(&matcher, after, want, usize::MAX, sample.len() < SAMPLE)
                .await?;
            after = last;
            remaining = remaining.saturating_sub(found.len() as u64);
            matched += found.len() as u64;
            let records: Vec<(u32, u64, SubEntry)> = found
                .iter()
                .map(|f| (f.partition, f.offset, f.entry.clone()))
                .collect();
            for f in found {
                if sample.len() < SAMPLE {
                    sample.push(self.to_wire_dead(f));
                }
            }
            if !selection.dry_run && !records.is_empty() {
                let (mut state, mut changes) = self.lock(self.now()).await?;
                let n = match what {
                    Apply::Redrive => {
                        let (redriven, n) = state.redrive(&records);
                        changes.extend(redriven);
                        n
                    }
                    Apply::Purge => {
                        changes.extend(state.purge(&records));
                        records.len() as u64
                    }
                };
                let rx = self.enqueue(&mut state, changes).await?;
                drop(state);
                committed(rx).await?;
                changed += n;
                if what == Apply::Redrive {
                    self.wake();
                }
                tracing::info!(subscription = %self.name(), action = ?what, done = changed, "dead letters in progress");
            }
            if after.is_none() {
                break;
            }
            if let (Some(_), false) = (selection.rate_per_s, selection.dry_run) {
                tokio::time::sleep_until(started + Duration::from_secs(1)).await;
            }
        }
        Ok((matched, changed, sample))
    }
}

/// Which waiting dead letters a redrive or purge applies to.
struct Selection {
    filter: DeadLetterFilter,
    max: Option<u64>,
    dry_run: bool,
    rate_per_s: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Apply {
    Redrive,
    Purge,
}
