//! Subscription endpoints of [`Client`]: create, describe, list, delete,
//! pull, ack, nack, extend, seek and dead-letter redrive.
//!
//! One method per endpoint, no policy: retries, lease extension and
//! concurrency belong to the consumer loop (`consumer/`), not here.

use reqwest::Method;
use weir_protocol::{
    AckRequest, AckResponse, ExtendRequest, NackRequest, PullRequest, PullResponse,
    ReceivedMessage, RedriveRequest, RedriveResponse, SeekRequest, SubscriptionInfo,
    SubscriptionList, SubscriptionSpec,
};

use crate::client::{encode_segment, topic_path};
use crate::encoding::pull_response;
use crate::observe::{Operation, Target};
use crate::{paging, Client, Error};

impl Client {
    /// Creates a subscription on `topic`, or updates its mutable settings
    /// (fields left `None` are not changed; `mode` and `start` only apply at
    /// creation).
    ///
    /// ```no_run
    /// # async fn demo(client: weir_client::Client) -> Result<(), weir_client::Error> {
    /// use weir_client::{Mode, Start, StartName, SubscriptionSpec};
    /// let spec = SubscriptionSpec {
    ///     mode: Some(Mode::Queue),
    ///     start: Some(Start::Named(StartName::Earliest)),
    ///     ack_timeout_ms: Some(30_000),
    ///     ..Default::default()
    /// };
    /// let info = client.create_subscription("orders", "billing", &spec).await?;
    /// println!("dead letters go to {:?}", info.config.dead_letter_topic);
    /// # Ok(()) }
    /// ```
    pub async fn create_subscription(
        &self,
        topic: &str,
        sub: &str,
        spec: &SubscriptionSpec,
    ) -> Result<SubscriptionInfo, Error> {
        let body = spec_body(spec)?;
        let path = subscription_path(topic, sub);
        Self::send(self.request(Method::PUT, &path).json(&body)).await
    }

    /// Describes a subscription: effective configuration and statistics.
    ///
    /// ```no_run
    /// # async fn demo(client: weir_client::Client) -> Result<(), weir_client::Error> {
    /// let info = client.subscription("orders", "billing").await?;
    /// println!("{} unacked, {} in flight", info.stats.backlog, info.stats.in_flight);
    /// # Ok(()) }
    /// ```
    pub async fn subscription(&self, topic: &str, sub: &str) -> Result<SubscriptionInfo, Error> {
        Self::send(self.request(Method::GET, &subscription_path(topic, sub))).await
    }

    /// Lists every subscription of `topic`, ordered by name, with
    /// statistics, following the server's pages.
    ///
    /// ```no_run
    /// # async fn demo(client: weir_client::Client) -> Result<(), weir_client::Error> {
    /// for sub in client.subscriptions("orders").await? {
    ///     println!("{}: backlog {}", sub.name, sub.stats.backlog);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn subscriptions(&self, topic: &str) -> Result<Vec<SubscriptionInfo>, Error> {
        let mut subscriptions = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self
                .subscriptions_page(topic, None, cursor.as_deref())
                .await?;
            subscriptions.extend(page.subscriptions);
            match paging::next_cursor(cursor.as_deref(), page.next)? {
                Some(next) => cursor = Some(next),
                None => return Ok(subscriptions),
            }
        }
    }

    /// One page of the subscriptions of `topic`: at most `limit` (1..=1000,
    /// server default 1000) after `cursor` (the `next` of the previous page;
    /// `None` for the first). `next` is `None` on the last page.
    ///
    /// ```no_run
    /// # async fn demo(client: weir_client::Client) -> Result<(), weir_client::Error> {
    /// let page = client.subscriptions_page("orders", Some(50), None).await?;
    /// println!("{} subscriptions, more: {}", page.subscriptions.len(), page.next.is_some());
    /// # Ok(()) }
    /// ```
    pub async fn subscriptions_page(
        &self,
        topic: &str,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<SubscriptionList, Error> {
        let path = format!("{}/subscriptions", topic_path(topic));
        let query = paging::query(limit, cursor);
        Self::send(self.request(Method::GET, &path).query(&query)).await
    }

    /// Deletes a subscription and its state (cursors, leases, attempts).
    ///
    /// ```no_run
    /// # async fn demo(client: weir_client::Client) -> Result<(), weir_client::Error> {
    /// client.delete_subscription("orders", "billing").await?;
    /// # Ok(()) }
    /// ```
    pub async fn delete_subscription(&self, topic: &str, sub: &str) -> Result<(), Error> {
        let _: serde_json::Value =
            Self::send(self.request(Method::DELETE, &subscription_path(topic, sub))).await?;
        Ok(())
    }

    /// Leases up to `request.max_messages` messages. With `wait_ms`, waits
    /// (long poll) until at least one message is available or the time is up;
    /// an empty vector means nothing was available. A client set to
    /// [`Encoding::Binary`](crate::Encoding::Binary) asks for a binary
    /// response (the request itself stays JSON).
    ///
    /// ```no_run
    /// # async fn demo(client: weir_client::Client) -> Result<(), weir_client::Error> {
    /// use weir_client::PullRequest;
    /// let request = PullRequest {
    ///     max_messages: Some(10),
    ///     wait_ms: Some(5_000),
    ///     consumer: Some("worker-1".into()),
    /// };
    /// let messages = client.pull("orders", "billing", &request).await?;
    /// let ids = messages.iter().map(|m| m.ack_id.clone()).collect();
    /// client.ack("orders", "billing", ids).await?;
    /// # Ok(()) }
    /// ```
    pub async fn pull(
        &self,
        topic: &str,
        sub: &str,
        request: &PullRequest,
    ) -> Result<Vec<ReceivedMessage>, Error> {
        Ok(self.pull_batch(topic, sub, request).await?.messages)
    }

    /// [`Client::pull`], with the pull's `batch_ack_id`: one id that acks
    /// (nacks, extends) every message of this pull still leased under it,
    /// in place of their ack ids — one short id per request instead of one
    /// per message. Queue mode only (`None` in stream mode, whose acks are
    /// cumulative, and when nothing was leased).
    ///
    /// ```no_run
    /// # async fn demo(client: weir_client::Client) -> Result<(), weir_client::Error> {
    /// use weir_client::PullRequest;
    /// let request = PullRequest { max_messages: Some(100), ..Default::default() };
    /// let pulled = client.pull_batch("orders", "billing", &request).await?;
    /// // ... process pulled.messages ...
    /// if let Some(id) = pulled.batch_ack_id {
    ///     client.ack("orders", "billing", vec![id]).await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn pull_batch(
        &self,
        topic: &str,
        sub: &str,
        request: &PullRequest,
    ) -> Result<PullResponse, Error> {
        let path = format!("{}/pull", subscription_path(topic, sub));
        // A long poll answers at the end of its wait: the request bound
        // must not cut it short.
        let wait = std::time::Duration::from_millis(request.wait_ms.unwrap_or(0));
        let http = self.request(Method::POST, &path).json(request);
        let http = self.accepting(http.timeout(self.long_poll_timeout(wait)));
        let call = pull_response(http, topic);
        let target = target(Operation::Pull, topic, sub);
        self.observe(target, 0, |r: &PullResponse| r.messages.len(), call)
            .await
    }

    /// Settles deliveries. Ids of leases that expired, were superseded or
    /// were already settled come back in `unknown`: those messages may be (or
    /// have been) delivered again.
    ///
    /// ```no_run
    /// # async fn demo(client: weir_client::Client, ack_id: String) -> Result<(), weir_client::Error> {
    /// let response = client.ack("orders", "billing", vec![ack_id]).await?;
    /// if !response.unknown.is_empty() {
    ///     eprintln!("lease lost before the ack: the message will be redelivered");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn ack(
        &self,
        topic: &str,
        sub: &str,
        ack_ids: Vec<String>,
    ) -> Result<AckResponse, Error> {
        let sent = ack_ids.len();
        let body = AckRequest { ack_ids };
        let call = self.post(topic, sub, "ack", &body);
        let target = target(Operation::Ack, topic, sub);
        self.observe(target, sent, acked, call).await
    }

    /// Releases deliveries for redelivery per the retry policy (or after
    /// `delay_ms`); `retry: Some(false)` dead-letters them at once. The
    /// `reason` is kept as the dead-letter reason.
    ///
    /// ```no_run
    /// # async fn demo(client: weir_client::Client, ack_id: String) -> Result<(), weir_client::Error> {
    /// use weir_client::NackRequest;
    /// let request = NackRequest {
    ///     ack_ids: vec![ack_id],
    ///     reason: Some("payment provider timed out".into()),
    ///     ..Default::default()
    /// };
    /// client.nack("orders", "billing", &request).await?;
    /// # Ok(()) }
    /// ```
    pub async fn nack(
        &self,
        topic: &str,
        sub: &str,
        request: &NackRequest,
    ) -> Result<AckResponse, Error> {
        let call = self.post(topic, sub, "nack", request);
        let target = target(Operation::Nack, topic, sub);
        self.observe(target, request.ack_ids.len(), acked, call)
            .await
    }

    /// Renews leases for `request.ack_timeout_ms` from now (default: the
    /// subscription's `ack_timeout_ms`).
    ///
    /// ```no_run
    /// # async fn demo(client: weir_client::Client, ack_id: String) -> Result<(), weir_client::Error> {
    /// use weir_client::ExtendRequest;
    /// let request = ExtendRequest { ack_ids: vec![ack_id], ack_timeout_ms: Some(60_000) };
    /// let response = client.extend("orders", "billing", &request).await?;
    /// assert!(response.unknown.is_empty(), "lease already lost");
    /// # Ok(()) }
    /// ```
    pub async fn extend(
        &self,
        topic: &str,
        sub: &str,
        request: &ExtendRequest,
    ) -> Result<AckResponse, Error> {
        let call = self.post(topic, sub, "extend", request);
        let target = target(Operation::Extend, topic, sub);
        self.observe(target, request.ack_ids.len(), acked, call)
            .await
    }

    /// Moves the subscription to `request.to` and returns it as it is after
    /// the seek. Messages before the new position count as settled, messages
    /// after it are delivered again.
    ///
    /// ```no_run
    /// # async fn demo(client: weir_client::Client) -> Result<(), weir_client::Error> {
    /// use weir_client::{AtTimestamp, SeekRequest, SeekTarget};
    /// let to = SeekTarget::Timestamp(AtTimestamp { timestamp: 1_764_300_000_000 });
    /// let info = client.seek("orders", "billing", &SeekRequest { to }).await?;
    /// println!("backlog after seek: {}", info.stats.backlog);
    /// # Ok(()) }
    /// ```
    pub async fn seek(
        &self,
        topic: &str,
        sub: &str,
        request: &SeekRequest,
    ) -> Result<SubscriptionInfo, Error> {
        self.post(topic, sub, "seek", request).await
    }

    /// Makes up to `max_messages` dead letters of this subscription
    /// deliverable to it again (all of them when `None`), attempts reset.
    ///
    /// ```no_run
    /// # async fn demo(client: weir_client::Client) -> Result<(), weir_client::Error> {
    /// let response = client.redrive("orders", "billing", Some(100)).await?;
    /// println!("{} messages redriven", response.redriven);
    /// # Ok(()) }
    /// ```
    pub async fn redrive(
        &self,
        topic: &str,
        sub: &str,
        max_messages: Option<u64>,
    ) -> Result<RedriveResponse, Error> {
        let body = RedriveRequest {
            max_messages,
            ..RedriveRequest::default()
        };
        self.post(topic, sub, "dead-letters/redrive", &body).await
    }

    pub(crate) async fn post<B, T>(
        &self,
        topic: &str,
        sub: &str,
        action: &str,
        body: &B,
    ) -> Result<T, Error>
    where
        B: serde::Serialize + ?Sized,
        T: serde::de::DeserializeOwned,
    {
        let path = format!("{}/{action}", subscription_path(topic, sub));
        Self::send(self.request(Method::POST, &path).json(body)).await
    }
}

/// The PUT body for `spec`: an absent `dead_letter_topic` stays absent
/// ("default, or unchanged"), `Some(None)` is sent as `null` ("none").
fn spec_body(spec: &SubscriptionSpec) -> Result<serde_json::Value, Error> {
    Ok(serde_json::to_value(spec)?)
}

fn target<'a>(operation: Operation, topic: &'a str, sub: &'a str) -> Target<'a> {
    Target {
        operation,
        topic,
        subscription: Some(sub),
    }
}

/// Deliveries a settle changed, for the metrics hook.
fn acked(response: &AckResponse) -> usize {
    usize::try_from(response.acked).unwrap_or(usize::MAX)
}

pub(crate) fn subscription_path(topic: &str, sub: &str) -> String {
    format!(
        "{}/subscriptions/{}",
        topic_path(topic),
        encode_segment(sub)
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_absent_dead_letter_topic_is_not_sent_as_null() {
        let body = spec_body(&SubscriptionSpec::default()).unwrap();
        assert!(body.get("dead_letter_topic").is_none(), "{body}");
        let reparsed: SubscriptionSpec = serde_json::from_value(body).unwrap();
        assert_eq!(reparsed.dead_letter_topic, None);

        let none = SubscriptionSpec {
            dead_letter_topic: Some(None),
            ..SubscriptionSpec::default()
        };
        assert!(spec_body(&none).unwrap()["dead_letter_topic"].is_null());
        let named = SubscriptionSpec {
            dead_letter_topic: Some(Some("orders.failed".into())),
            ..SubscriptionSpec::default()
        };
        assert_eq!(
            spec_body(&named).unwrap()["dead_letter_topic"],
            "orders.failed"
        );
    }

    #[test]
    fn subscription_names_are_path_segments() {
        assert_eq!(
            subscription_path("orders", "billing.v2"),
            "/v1/topics/orders/subscriptions/billing.v2"
        );
        assert_eq!(
            subscription_path("a/b", "c d"),
            "/v1/topics/a%2Fb/subscriptions/c%20d"
        );
    }
}
