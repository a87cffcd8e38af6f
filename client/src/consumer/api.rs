//! The pull the consumer loop makes, as a trait next to the settle calls
//! ([`SettleApi`]): the HTTP implementation is a [`SubscriptionRef`], an in-memory
//! fake lives in the tests, so the loop's timing (lease renewal, retry
//! pauses) is tested with a paused clock.

use std::future::Future;

use weir_protocol::{PullRequest, ReceivedMessage};

use crate::settle::SettleApi;
use crate::subscriber::SubscriptionRef;
use crate::Error;

pub(crate) trait SubscriptionApi: SettleApi + Clone {
    fn pull(
        &self,
        request: &PullRequest,
    ) -> impl Future<Output = Result<Vec<ReceivedMessage>, Error>> + Send;
}

impl SubscriptionApi for SubscriptionRef {
    async fn pull(&self, request: &PullRequest) -> Result<Vec<ReceivedMessage>, Error> {
        self.client.pull(&self.topic, &self.name, request).await
    }
}
