//! Subscription control of [`Client`]: pause and resume, and the dead
//! letters of a subscription — browsing them with filters (one page, or
//! every page), redriving and purging a filtered selection.
//!
//! One method per endpoint, plus [`Client::dead_letters_all`], which
//! follows `next` the way [`Client::topics`] follows its pages.

use std::time::Duration;

use reqwest::Method;
use weir_protocol::{
    DeadLetter, DeadLetterList, DeadLetterQuery, DeadLetterState, PauseRequest, PurgeRequest,
    PurgeResponse, RedriveRequest, RedriveResponse, ResumeRequest, SubscriptionInfo,
};

use crate::subscriptions::subscription_path;
use crate::{paging, Client, Error};

/// How long a rate-limited redrive without `max` may take.
const RATED_REDRIVE_UNBOUNDED_S: u64 = 3600;

/// Dead letters per page when the query names no `limit` (the server's
/// default).
const DEFAULT_PAGE: usize = 100;

impl Client {
    /// Pauses a subscription: no new deliveries (pulls return nothing,
    /// sockets and push send nothing) until [`resume`](Self::resume);
    /// leases already out can still be acked, nacked and extended. The
    /// reason (at most 1024 bytes) is shown as `paused_reason`. Returns the
    /// subscription as it is after the pause.
    ///
    /// ```no_run
    /// # async fn demo(client: weir_client::Client) -> Result<(), weir_client::Error> {
    /// let info = client.pause("orders", "billing", Some("incident 42")).await?;
    /// assert!(info.paused);
    /// client.resume("orders", "billing", false).await?;
    /// # Ok(()) }
    /// ```
    pub async fn pause(
        &self,
        topic: &str,
        sub: &str,
        reason: Option<&str>,
    ) -> Result<SubscriptionInfo, Error> {
        let body = PauseRequest {
            reason: reason.map(str::to_owned),
        };
        self.post(topic, sub, "pause", &body).await
    }

    /// Resumes a subscription paused by hand or by its circuit breaker.
    /// With `redrive`, the dead letters of the breaker's window (the ones
    /// that tripped it) are redriven too.
    pub async fn resume(
        &self,
        topic: &str,
        sub: &str,
        redrive: bool,
    ) -> Result<SubscriptionInfo, Error> {
        let body = ResumeRequest {
            redrive: redrive.then_some(true),
        };
        self.post(topic, sub, "resume", &body).await
    }

    /// One page of the subscription's dead letters, in (partition, offset)
    /// order, filtered by `query` (every field optional; `limit` is the
    /// page size, 1..=1000, server default 100; `cursor` the `next` of the
    /// previous page). A page may hold fewer than `limit` even when `next`
    /// is set: follow `next` until it is `None`, or use
    /// [`dead_letters_all`](Self::dead_letters_all).
    ///
    /// ```no_run
    /// # async fn demo(client: weir_client::Client) -> Result<(), weir_client::Error> {
    /// use weir_client::{DeadLetterQuery, DeadLetterState};
    /// let query = DeadLetterQuery {
    ///     state: Some(DeadLetterState::Waiting),
    ///     reason: Some("timeout".into()),
    ///     ..Default::default()
    /// };
    /// let page = client.dead_letters("orders", "billing", &query).await?;
    /// for letter in &page.dead_letters {
    ///     println!("{}:{} {} after {} attempts", letter.partition, letter.offset, letter.reason, letter.attempts);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn dead_letters(
        &self,
        topic: &str,
        sub: &str,
        query: &DeadLetterQuery,
    ) -> Result<DeadLetterList, Error> {
        let path = format!("{}/dead-letters", subscription_path(topic, sub));
        let pairs = dead_letter_query(query);
        Self::send(self.request(Method::GET, &path).query(&pairs)).await
    }

    /// The subscription's dead letters matching `query`, following `next`
    /// from `query.cursor` until the last page, or until `max` were found
    /// (`None`: all of them). `query.limit` is the page size.
    ///
    /// ```no_run
    /// # async fn demo(client: weir_client::Client) -> Result<(), weir_client::Error> {
    /// use weir_client::{DeadLetterQuery, DeadLetterState};
    /// let waiting = DeadLetterQuery { state: Some(DeadLetterState::Waiting), ..Default::default() };
    /// let letters = client.dead_letters_all("orders", "billing", &waiting, None).await?;
    /// let info = client.subscription("orders", "billing").await?;
    /// assert_eq!(letters.len() as u64, info.stats.dead_lettered);
    /// # Ok(()) }
    /// ```
    pub async fn dead_letters_all(
        &self,
        topic: &str,
        sub: &str,
        query: &DeadLetterQuery,
        max: Option<usize>,
    ) -> Result<Vec<DeadLetter>, Error> {
        Ok(self
            .dead_letters_up_to(topic, sub, query, max)
            .await?
            .dead_letters)
    }

    /// [`dead_letters_all`](Self::dead_letters_all) that also says where
    /// to go on: `next` is the server's cursor after the last dead letter
    /// returned when `max` stopped the walk (pages are asked for no more
    /// than the room left, so none is skipped), `None` at the end.
    pub async fn dead_letters_up_to(
        &self,
        topic: &str,
        sub: &str,
        query: &DeadLetterQuery,
        max: Option<usize>,
    ) -> Result<DeadLetterList, Error> {
        let page_size = query.limit.unwrap_or(DEFAULT_PAGE);
        let mut found: Vec<DeadLetter> = Vec::new();
        let mut query = query.clone();
        loop {
            let room = max.map_or(usize::MAX, |max| max.saturating_sub(found.len()));
            if room == 0 {
                return Ok(DeadLetterList {
                    dead_letters: found,
                    next: query.cursor,
                });
            }
            query.limit = Some(page_size.min(room));
            let page = self.dead_letters(topic, sub, &query).await?;
            found.extend(page.dead_letters);
            match paging::next_cursor(query.cursor.as_deref(), page.next)? {
                Some(next) => query.cursor = Some(next),
                None => {
                    return Ok(DeadLetterList {
                        dead_letters: found,
                        next: None,
                    })
                }
            }
        }
    }

    /// Makes the subscription's waiting dead letters that match
    /// `request.filter` deliverable to it again (attempts reset), at most
    /// `request.max`, at most `request.rate_per_s` a second. With
    /// `dry_run`, only counts (`matched`) and samples them.
    ///
    /// ```no_run
    /// # async fn demo(client: weir_client::Client) -> Result<(), weir_client::Error> {
    /// use weir_client::{DeadLetterFilter, RedriveRequest};
    /// let request = RedriveRequest {
    ///     dry_run: Some(true),
    ///     filter: Some(DeadLetterFilter { reason: Some("timeout".into()), ..Default::default() }),
    ///     ..Default::default()
    /// };
    /// let preview = client.redrive_dead_letters("orders", "billing", &request).await?;
    /// println!("{} would be redriven", preview.matched);
    /// # Ok(()) }
    /// ```
    ///
    /// A redrive with `rate_per_s` takes `max / rate_per_s` seconds on the
    /// server: the request waits that long plus a margin (an hour when
    /// `max` is not given) instead of the usual request timeout.
    pub async fn redrive_dead_letters(
        &self,
        topic: &str,
        sub: &str,
        request: &RedriveRequest,
    ) -> Result<RedriveResponse, Error> {
        let path = format!("{}/dead-letters/redrive", subscription_path(topic, sub));
        let mut http = self.request(Method::POST, &path).json(request);
        if let Some(rate) = request.rate_per_s.filter(|&r| r > 0) {
            let max = request.max.or(request.max_messages);
            let seconds = max.map_or(RATED_REDRIVE_UNBOUNDED_S, |m| m / u64::from(rate) + 1);
            http = http.timeout(self.long_poll_timeout(Duration::from_secs(seconds)));
        }
        Self::send(http).await
    }

    /// Marks the subscription's waiting dead letters that match
    /// `request.filter` purged (at most `request.max`): they are no longer
    /// counted in `dead_lettered` and cannot be redriven. With `dry_run`,
    /// only counts and samples them.
    pub async fn purge_dead_letters(
        &self,
        topic: &str,
        sub: &str,
        request: &PurgeRequest,
    ) -> Result<PurgeResponse, Error> {
        self.post(topic, sub, "dead-letters/purge", request).await
    }
}

/// The query string of `query`: only the fields given.
pub(crate) fn dead_letter_query(query: &DeadLetterQuery) -> Vec<(&'static str, String)> {
    let mut pairs = Vec::new();
    let mut push = |name: &'static str, value: Option<String>| {
        if let Some(value) = value {
            pairs.push((name, value));
        }
    };
    push("limit", query.limit.map(|l| l.to_string()));
    push("cursor", query.cursor.clone());
    push("state", query.state.map(|s| state_name(s).to_owned()));
    push("reason", query.reason.clone());
    push("reason_regex", query.reason_regex.clone());
    push("key", query.key.clone());
    push("from_ms", query.from_ms.map(|t| t.to_string()));
    push("to_ms", query.to_ms.map(|t| t.to_string()));
    push("min_attempts", query.min_attempts.map(|n| n.to_string()));
    pairs
}

/// The wire name of a state (`waiting`, `redriven`, `purged`).
pub(crate) fn state_name(state: DeadLetterState) -> &'static str {
    match state {
        DeadLetterState::Waiting => "waiting",
        DeadLetterState::Redriven => "redriven",
        DeadLetterState::Purged => "purged",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_given_query_fields_are_sent() {
        assert!(dead_letter_query(&DeadLetterQuery::default()).is_empty());
        let query = DeadLetterQuery {
            limit: Some(50),
            state: Some(DeadLetterState::Waiting),
            reason_regex: Some("^time".into()),
            from_ms: Some(5),
            min_attempts: Some(3),
            ..DeadLetterQuery::default()
        };
        assert_eq!(
            dead_letter_query(&query),
            vec![
                ("limit", "50".to_owned()),
                ("state", "waiting".to_owned()),
                ("reason_regex", "^time".to_owned()),
                ("from_ms", "5".to_owned()),
                ("min_attempts", "3".to_owned()),
            ]
        );
    }

    #[test]
    fn state_names_are_the_wire_names() {
        for state in [
            DeadLetterState::Waiting,
            DeadLetterState::Redriven,
            DeadLetterState::Purged,
        ] {
            let wire = serde_json::to_value(state).unwrap();
            assert_eq!(wire, state_name(state));
        }
    }

    #[test]
    fn empty_bodies_serialize_to_empty_objects() {
        let redrive = serde_json::to_value(RedriveRequest::default()).unwrap();
        assert_eq!(redrive, serde_json::json!({}));
        let purge = serde_json::to_value(PurgeRequest::default()).unwrap();
        assert_eq!(purge, serde_json::json!({}));
        let resume = serde_json::to_value(ResumeRequest { redrive: None }).unwrap();
        assert_eq!(resume, serde_json::json!({"redrive": null}));
    }
}
