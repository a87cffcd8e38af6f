//! Producing over one socket ([`Client::publisher_ws`]): each `publish`
//! is a request with its own id, so many may be in flight at once. A
//! binary client sends binary publish frames; a [`BinaryBatch`] goes out
//! as one whatever the client's encoding.

use std::sync::Arc;

use tokio_tungstenite::tungstenite::Message as WsMessage;
use weir_protocol::{ProduceMessage, ProduceResult};

use super::connect;
use super::connection::{Connection, Push};
use super::frames;
use crate::client::topic_path;
use crate::observe::{Operation, Target};
use crate::{BinaryBatch, Client, Error};

/// A publish socket on one topic. Cheap to clone; the clones share the
/// socket, and [`publish`](WsPublisher::publish) may be called from many
/// tasks at once: requests are pipelined, each answered by its own reply.
/// The socket closes when the last clone is dropped, or on
/// [`close`](WsPublisher::close).
///
/// ```no_run
/// # async fn demo(client: weir_client::Client) -> Result<(), weir_client::Error> {
/// use weir_client::{ProduceMessage, ProduceMessageExt};
/// let publisher = client.publisher_ws("orders").await?;
/// let (a, b) = tokio::join!(
///     publisher.publish(vec![ProduceMessage::json(&1)?]),
///     publisher.publish(vec![ProduceMessage::json(&2)?]),
/// );
/// println!("offsets {} and {}", a?[0].offset, b?[0].offset);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct WsPublisher {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    connection: Connection,
    /// For the metrics hook and spans.
    client: Client,
    topic: String,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.connection.start_close();
    }
}

impl Client {
    /// Opens a publish socket on `topic`
    /// (`GET /v1/topics/{topic}/ws/publish`). An unknown topic fails here
    /// with `topic_not_found`.
    ///
    /// ```no_run
    /// # async fn demo(client: weir_client::Client) -> Result<(), weir_client::Error> {
    /// use weir_client::{ProduceMessage, ProduceMessageExt};
    /// let publisher = client.publisher_ws("orders").await?;
    /// let results = publisher
    ///     .publish(vec![ProduceMessage::json(&serde_json::json!({"order": 1}))?])
    ///     .await?;
    /// println!("partition {} offset {}", results[0].partition, results[0].offset);
    /// # Ok(()) }
    /// ```
    pub async fn publisher_ws(&self, topic: &str) -> Result<WsPublisher, Error> {
        let path = format!("{}/ws/publish", topic_path(topic));
        let socket = connect::open(self, &path, &[]).await?;
        let keepalive = self.keepalive();
        let connection =
            Connection::start(socket, frames::decode, None, Push::Nothing, None, keepalive);
        Ok(WsPublisher {
            inner: Arc::new(Inner {
                connection,
                client: self.clone(),
                topic: topic.to_owned(),
            }),
        })
    }
}

impl WsPublisher {
    /// Appends `messages` atomically, as `POST /v1/topics/{topic}/messages`
    /// does, and returns their results in request order once every one is
    /// durable. A refused request fails with the code the HTTP produce
    /// would answer (`invalid_request`, `message_too_large`,
    /// `topic_not_found`, ...) and the socket stays usable. The request is
    /// a binary frame when the client's encoding is
    /// [`Encoding::Binary`](crate::Encoding::Binary).
    ///
    /// ```no_run
    /// # async fn demo(publisher: weir_client::WsPublisher) -> Result<(), weir_client::Error> {
    /// use weir_client::{ProduceMessage, ProduceMessageExt};
    /// let mut message = ProduceMessage::json(&"hello")?;
    /// message.key = Some("customer-7".into());
    /// let results = publisher.publish(vec![message]).await?;
    /// assert!(!results[0].duplicate);
    /// # Ok(()) }
    /// ```
    pub async fn publish(
        &self,
        messages: Vec<ProduceMessage>,
    ) -> Result<Vec<ProduceResult>, Error> {
        let sent = messages.len();
        let encoding = self.inner.client.encoding();
        self.request(sent, |id| frames::publish(id, messages, encoding))
            .await
    }

    /// Appends a batch encoded beforehand, as one binary frame whatever
    /// the client's encoding (see [`BinaryBatch`]); otherwise as
    /// [`publish`](Self::publish).
    ///
    /// ```no_run
    /// # async fn demo(publisher: weir_client::WsPublisher) -> Result<(), weir_client::Error> {
    /// use weir_client::{BinaryBatch, ProduceMessage, ProduceMessageExt};
    /// let batch = BinaryBatch::new(vec![ProduceMessage::bytes(b"tick"); 50])?;
    /// let (a, b) = tokio::join!(publisher.publish_batch(&batch), publisher.publish_batch(&batch));
    /// assert_eq!(a?.len() + b?.len(), 100);
    /// # Ok(()) }
    /// ```
    pub async fn publish_batch(&self, batch: &BinaryBatch) -> Result<Vec<ProduceResult>, Error> {
        self.request(batch.len(), |id| Ok(batch.publish_frame(&id)))
            .await
    }

    /// Sends the publish frame `frame(request_id)` of `sent` messages and
    /// waits for its results.
    async fn request<F: Into<WsMessage>>(
        &self,
        sent: usize,
        frame: impl FnOnce(String) -> Result<F, Error>,
    ) -> Result<Vec<ProduceResult>, Error> {
        let inner = &self.inner;
        let call = async {
            let reply = inner.connection.request(frame).await?;
            frames::published(reply, sent)
        };
        let target = Target {
            operation: Operation::Publish,
            topic: &inner.topic,
            subscription: None,
        };
        inner.client.observe(target, sent, Vec::len, call).await
    }

    /// Closes the socket for every clone, once the server has answered
    /// what it already read (waits a few seconds at most). Like every
    /// `close` of this crate it consumes the handle; other clones then
    /// fail with [`Error::SocketClosed`].
    ///
    /// ```no_run
    /// # async fn demo(publisher: weir_client::WsPublisher) {
    /// publisher.close().await;
    /// # }
    /// ```
    pub async fn close(self) {
        self.inner.connection.close().await;
    }
}
