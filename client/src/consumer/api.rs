//! The four subscription calls the consumer loop makes, as a trait: the
//! HTTP implementation here, an in-memory fake in the tests, so the loop's
//! timing (lease extension, retry pauses) is tested with a paused clock.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use weir_protocol::{AckResponse, ExtendRequest, NackRequest, PullRequest, ReceivedMessage};

use crate::{Client, Error};

pub(crate) trait SubscriptionApi: Clone + Send + Sync + 'static {
    fn pull(
        &self,
        request: &PullRequest,
    ) -> impl Future<Output = Result<Vec<ReceivedMessage>, Error>> + Send;

    fn ack(&self, ack_id: &str) -> impl Future<Output = Result<AckResponse, Error>> + Send;

    fn nack(
        &self,
        ack_id: &str,
        reason: &str,
    ) -> impl Future<Output = Result<AckResponse, Error>> + Send;

    fn extend(
        &self,
        ack_id: &str,
        lease: Option<Duration>,
    ) -> impl Future<Output = Result<AckResponse, Error>> + Send;
}

/// One subscription of one topic, over HTTP.
#[derive(Debug, Clone)]
pub(crate) struct HttpSubscription {
    pub client: Client,
    pub topic: Arc<str>,
    pub sub: Arc<str>,
}

impl SubscriptionApi for HttpSubscription {
    async fn pull(&self, request: &PullRequest) -> Result<Vec<ReceivedMessage>, Error> {
        self.client.pull(&self.topic, &self.sub, request).await
    }

    async fn ack(&self, ack_id: &str) -> Result<AckResponse, Error> {
        let ids = vec![ack_id.to_owned()];
        self.client.ack(&self.topic, &self.sub, ids).await
    }

    async fn nack(&self, ack_id: &str, reason: &str) -> Result<AckResponse, Error> {
        let request = NackRequest {
            ack_ids: vec![ack_id.to_owned()],
            reason: Some(reason.to_owned()),
            ..NackRequest::default()
        };
        self.client.nack(&self.topic, &self.sub, &request).await
    }

    async fn extend(&self, ack_id: &str, lease: Option<Duration>) -> Result<AckResponse, Error> {
        let request = ExtendRequest {
            ack_ids: vec![ack_id.to_owned()],
            ack_timeout_ms: lease.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        };
        self.client.extend(&self.topic, &self.sub, &request).await
    }
}
