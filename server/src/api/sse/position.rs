//! Where a topic's event stream starts: the `from` parameter, and the
//! resume token carried in each event's `id:` (sent back by clients as
//! `Last-Event-ID`).
//!
//! A resume token names the next offset to send of every partition the
//! stream knew: `<partition>=<offset>` pairs joined by `,` (`0=42,1=7`), the
//! same list `from=offsets:` takes. One token resumes every partition at
//! once, so a stream resumed after its last event misses nothing and
//! repeats nothing. Partitions a token does not name (added after it was
//! made) start at their first stored message.

use std::collections::BTreeMap;

use crate::api::error::{ApiError, ApiResult};
use crate::broker::topic::MAX_PARTITIONS;
use crate::broker::topic_reader::TopicReader;

/// A parsed start position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// Messages produced from now on.
    Latest,
    /// Everything stored.
    Earliest,
    /// Each partition's first message at or after this time (ms).
    Timestamp(u64),
    /// These partitions at these offsets; the others from their earliest.
    Offsets(BTreeMap<u32, u64>),
}

/// What names the start, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    From,
    LastEventId,
}

impl Source {
    fn field(self) -> &'static str {
        match self {
            Source::From => "from",
            Source::LastEventId => "Last-Event-ID",
        }
    }
}

const FROM_FORMS: &str =
    "`from` must be `latest`, `earliest`, `timestamp:<ms>` or `offsets:<partition>=<offset>,...`";

/// Parses `from` (absent: `latest`). A bare number is a timestamp, as on
/// the WebSocket tail.
pub fn parse_from(text: Option<&str>) -> ApiResult<Start> {
    let Some(text) = text else {
        return Ok(Start::Latest);
    };
    if let Some(ms) = text.strip_prefix("timestamp:") {
        return ms.parse().map(Start::Timestamp).map_err(|_| {
            ApiError::invalid(
                "from",
                format!("`{ms}` is not a timestamp in milliseconds; {FROM_FORMS}"),
            )
        });
    }
    if let Some(list) = text.strip_prefix("offsets:") {
        return parse_offsets(list, Source::From).map(Start::Offsets);
    }
    match text {
        "latest" => Ok(Start::Latest),
        "earliest" => Ok(Start::Earliest),
        t if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) => t
            .parse()
            .map(Start::Timestamp)
            .map_err(|_| ApiError::invalid("from", FROM_FORMS)),
        _ => Err(ApiError::invalid("from", FROM_FORMS)),
    }
}

/// Parses a `Last-Event-ID` resume token (an `offsets:` prefix is allowed).
pub fn parse_token(text: &str) -> ApiResult<Start> {
    let list = text.trim();
    let list = list.strip_prefix("offsets:").unwrap_or(list);
    parse_offsets(list, Source::LastEventId).map(Start::Offsets)
}

/// `0=10,1=5` → {0: 10, 1: 5}; each partition at most once.
fn parse_offsets(list: &str, source: Source) -> ApiResult<BTreeMap<u32, u64>> {
    let field = source.field();
    let bad = |detail: String| ApiError::invalid(field, detail);
    let mut offsets = BTreeMap::new();
    for pair in list.split(',') {
        let shown: String = pair.chars().take(64).collect();
        let (partition, offset) = pair
            .split_once('=')
            .ok_or_else(|| bad(format!("`{shown}` is not `<partition>=<offset>`")))?;
        let partition: u32 = partition
            .trim()
            .parse()
            .map_err(|_| bad(format!("`{shown}`: not a partition number")))?;
        let offset: u64 = offset
            .trim()
            .parse()
            .map_err(|_| bad(format!("`{shown}`: not an offset")))?;
        if partition >= MAX_PARTITIONS {
            return Err(bad(format!(
                "partition {partition} is out of range (at most {MAX_PARTITIONS} partitions)"
            )));
        }
        if offsets.insert(partition, offset).is_some() {
            return Err(bad(format!("partition {partition} is named twice")));
        }
    }
    Ok(offsets)
}

/// The resume token of `cursors` (next offset to send, by partition).
pub fn token(cursors: &[u64]) -> String {
    let mut out = String::with_capacity(cursors.len() * 8);
    for (partition, offset) in cursors.iter().enumerate() {
        if partition > 0 {
            out.push(',');
        }
        out.push_str(&partition.to_string());
        out.push('=');
        out.push_str(&offset.to_string());
    }
    out
}

/// The first offset to send in each partition of the reader's topic.
/// Offsets below a partition's first stored message start at that message.
pub async fn resolve(reader: &TopicReader, start: &Start, source: Source) -> ApiResult<Vec<u64>> {
    let partitions = reader.topic().partitions();
    if let Start::Offsets(offsets) = start {
        let count = partitions.len() as u32;
        if let Some(partition) = offsets.keys().find(|&&p| p >= count) {
            return Err(ApiError::invalid(
                source.field(),
                format!("partition {partition} does not exist: the topic has {count}"),
            ));
        }
    }
    let mut cursors = Vec::with_capacity(partitions.len());
    for partition in &partitions {
        let low = partition.low();
        cursors.push(match start {
            Start::Latest => partition.committed(),
            Start::Earliest => low,
            Start::Timestamp(t) => reader.offset_at(partition, *t).await?,
            Start::Offsets(offsets) => offsets.get(&partition.id).map_or(low, |&o| o.max(low)),
        });
    }
    Ok(cursors)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn from_takes_every_documented_form() {
        assert_eq!(parse_from(None).unwrap(), Start::Latest);
        assert_eq!(parse_from(Some("latest")).unwrap(), Start::Latest);
        assert_eq!(parse_from(Some("earliest")).unwrap(), Start::Earliest);
        assert_eq!(
            parse_from(Some("timestamp:1764300000000")).unwrap(),
            Start::Timestamp(1_764_300_000_000)
        );
        assert_eq!(parse_from(Some("1500")).unwrap(), Start::Timestamp(1500));
        assert_eq!(
            parse_from(Some("offsets:0=10,2=5")).unwrap(),
            Start::Offsets(BTreeMap::from([(0, 10), (2, 5)]))
        );
        for bad in [
            "",
            "soon",
            "timestamp:",
            "timestamp:x",
            "offsets:",
            "offsets:0",
            "offsets:0=1,0=2",
            "offsets:a=1",
            "offsets:0=-1",
            "offsets:5000=1",
        ] {
            let e = parse_from(Some(bad)).unwrap_err();
            assert_eq!(e.problem.field.as_deref(), Some("from"), "{bad}");
        }
    }

    #[test]
    fn tokens_round_trip_and_name_their_header() {
        let cursors = [42, 0, 7];
        let text = token(&cursors);
        assert_eq!(text, "0=42,1=0,2=7");
        assert_eq!(
            parse_token(&text).unwrap(),
            Start::Offsets(BTreeMap::from([(0, 42), (1, 0), (2, 7)]))
        );
        assert_eq!(
            parse_token(&format!("offsets:{text}")).unwrap(),
            parse_token(&text).unwrap()
        );
        assert_eq!(token(&[]), "");
        let e = parse_token("garbage").unwrap_err();
        assert_eq!(e.problem.field.as_deref(), Some("Last-Event-ID"));
    }
}
