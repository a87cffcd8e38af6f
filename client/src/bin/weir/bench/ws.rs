//! [`Transport`] over the subscription WebSocket: messages are pushed to one
//! socket per consumer (credit of one pull's size, refilled as they are
//! taken), acks go over the socket that received them and are confirmed
//! once durable; produce stays on HTTP (the workloads measure delivery, and
//! publish → frame received end to end).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use tokio::sync::Mutex;
use weir_client::{
    AckResponse, Client, Error, PullRequest, PullResponse, Refill, SubscribeOptions, WsAcker,
    WsSubscription,
};

use super::{Body, Transport};

/// Credit per socket when the pull names no size.
const DEFAULT_CREDIT: u32 = 100;

#[derive(Clone)]
pub struct Ws {
    client: Client,
    /// One socket per consumer name.
    sockets: Arc<Mutex<HashMap<String, Arc<Mutex<WsSubscription>>>>>,
    /// Each consumer's socket's acker: acks go back over the socket that
    /// received the messages, which stops counting them as held.
    ackers: Arc<Mutex<HashMap<String, WsAcker>>>,
    /// A pushed batch ends when no message follows within this gap (zero:
    /// take only what has already arrived — for latency measurements).
    batch_gap: Duration,
}

impl Ws {
    pub fn new(client: Client, batch_gap: Duration) -> Ws {
        Ws {
            client,
            sockets: Arc::new(Mutex::new(HashMap::new())),
            ackers: Arc::new(Mutex::new(HashMap::new())),
            batch_gap,
        }
    }

    async fn socket(
        &self,
        topic: &str,
        sub: &str,
        request: &PullRequest,
    ) -> Result<Arc<Mutex<WsSubscription>>, Error> {
        let consumer = consumer_of(request);
        let mut sockets = self.sockets.lock().await;
        if let Some(socket) = sockets.get(&consumer) {
            return Ok(socket.clone());
        }
        // As many on their way to this consumer as one pull of this size
        // would lease: the credit is the pull size, topped up as messages
        // are taken. (A taken batch stays leased until its ack is durable,
        // while the next one already flows: up to two batches per socket
        // are leased at once, where an HTTP consumer pulls again only once
        // its ack is answered.)
        let credit = request.max_messages.unwrap_or(DEFAULT_CREDIT).max(1);
        let options = SubscribeOptions {
            consumer: Some(consumer.clone()),
            credit,
            refill: Refill::OnYield,
            // The bench acks at once: renewing would only add requests.
            renew: None,
            ..SubscribeOptions::default()
        };
        let subscription = self.client.subscribe_ws(topic, sub, options).await?;
        self.ackers
            .lock()
            .await
            .insert(consumer.clone(), subscription.acker());
        let socket = Arc::new(Mutex::new(subscription));
        sockets.insert(consumer, socket.clone());
        Ok(socket)
    }
}

impl Transport for Ws {
    async fn produce(&self, topic: &str, body: Body) -> Result<(), Error> {
        body.produce(&self.client, topic).await
    }

    /// Waits up to `wait_ms` for a first pushed message, then takes what
    /// else is already there, up to `max_messages`.
    async fn pull(
        &self,
        topic: &str,
        sub: &str,
        request: &PullRequest,
    ) -> Result<PullResponse, Error> {
        let socket = self.socket(topic, sub, request).await?;
        let mut stream = socket.lock().await;
        let max = request.max_messages.unwrap_or(1).max(1) as usize;
        let wait = Duration::from_millis(request.wait_ms.unwrap_or(0));
        let mut out = Vec::new();
        // Pushed messages have no batch ack id: each is acked by its own.
        let pulled = |messages| PullResponse {
            messages,
            batch_ack_id: None,
        };
        match tokio::time::timeout(wait, stream.next()).await {
            Err(_) => return Ok(pulled(out)),
            Ok(None) => return Err(Error::Local("the subscription socket closed".into())),
            Ok(Some(first)) => out.push(first?.into_inner()),
        }
        // Batch like a pull: take what keeps arriving, until `max` or a
        // short gap in the push.
        while out.len() < max {
            match stream.next().now_or_never() {
                Some(Some(m)) => out.push(m?.into_inner()),
                Some(None) => break,
                None if self.batch_gap.is_zero() => break,
                None => match tokio::time::timeout(self.batch_gap, stream.next()).await {
                    Ok(Some(m)) => out.push(m?.into_inner()),
                    Ok(None) | Err(_) => break,
                },
            }
        }
        Ok(pulled(out))
    }

    async fn ack(
        &self,
        _topic: &str,
        _sub: &str,
        request: &PullRequest,
        ack_ids: Vec<String>,
    ) -> Result<AckResponse, Error> {
        let acker = self.ackers.lock().await.get(&consumer_of(request)).cloned();
        match acker {
            Some(acker) => acker.ack(ack_ids).await,
            None => Err(Error::Local("no subscription socket is open".into())),
        }
    }
}

/// The consumer a pull is for: one socket each.
fn consumer_of(request: &PullRequest) -> String {
    request
        .consumer
        .clone()
        .unwrap_or_else(|| "bench".to_owned())
}
