//! The live tail of a topic ([`Client::tail_ws`]): every partition's new
//! messages as one `Stream`, no state kept on the server.

use std::fmt;
use std::pin::Pin;
use std::str::FromStr;
use std::task::{Context, Poll};

use futures_util::Stream;
use tokio::sync::mpsc;
use weir_protocol::Message;

use super::connect;
use super::connection::{Connection, Push};
use super::frames;
use crate::client::topic_path;
use crate::{Client, Error};

/// Messages read ahead of the consumer; beyond, the socket is not read and
/// the server holds back (and disconnects a tail that stays stuck).
const TAIL_BUFFER: usize = 256;

/// Where a tail starts in every partition.
///
/// Not named `From`: that would shadow the prelude's `From` trait wherever
/// it is imported.
///
/// ```no_run
/// use weir_client::TailFrom;
/// let from: TailFrom = "earliest".parse().unwrap();
/// assert_eq!(from, TailFrom::Earliest);
/// assert_eq!("1764300000000".parse::<TailFrom>().unwrap(), TailFrom::Timestamp(1_764_300_000_000));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TailFrom {
    /// Only messages produced after the socket opened.
    #[default]
    Latest,
    /// Everything stored, then new messages.
    Earliest,
    /// The first message at or after this timestamp (ms since the epoch).
    Timestamp(u64),
}

impl fmt::Display for TailFrom {
    /// The `from` query value: `latest`, `earliest` or the timestamp.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TailFrom::Latest => f.write_str("latest"),
            TailFrom::Earliest => f.write_str("earliest"),
            TailFrom::Timestamp(t) => write!(f, "{t}"),
        }
    }
}

impl FromStr for TailFrom {
    type Err = Error;

    /// `latest`, `earliest` or a timestamp in milliseconds.
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "latest" => Ok(TailFrom::Latest),
            "earliest" => Ok(TailFrom::Earliest),
            _ => s.parse().map(TailFrom::Timestamp).map_err(|_| {
                Error::Local(format!(
                    "`{s}` is not `latest`, `earliest` or a timestamp in milliseconds"
                ))
            }),
        }
    }
}

/// A live tail of a topic: a `Stream` of its messages, in offset order
/// within each partition, each as soon as it is durable.
///
/// The stream yields an `Err` and ends when the topic is deleted
/// (`topic_not_found`) or the server closes the socket (e.g.
/// [`Error::SocketClosed`] with code 1001 at shutdown, 1008 for a tail that
/// was not read for too long). Dropping it closes the socket.
///
/// ```no_run
/// # async fn demo(client: weir_client::Client) -> Result<(), weir_client::Error> {
/// use futures_util::StreamExt;
/// use weir_client::TailFrom;
/// let mut tail = client.tail_ws("orders", TailFrom::Latest).await?;
/// while let Some(message) = tail.next().await {
///     let message = message?;
///     println!("{}:{}", message.partition, message.offset);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct WsTail {
    messages: mpsc::Receiver<Result<Message, Error>>,
    connection: Connection,
}

impl Client {
    /// Tails every partition of `topic` live over a WebSocket
    /// (`GET /v1/topics/{topic}/ws?from=...`), starting `from` there.
    /// Messages produced once this returns are in the tail.
    ///
    /// ```no_run
    /// # async fn demo(client: weir_client::Client) -> Result<(), weir_client::Error> {
    /// use futures_util::StreamExt;
    /// use weir_client::TailFrom;
    /// let tail = client.tail_ws("orders", TailFrom::Earliest).await?;
    /// let first_ten: Vec<_> = tail.take(10).collect().await;
    /// # Ok(()) }
    /// ```
    pub async fn tail_ws(&self, topic: &str, from: TailFrom) -> Result<WsTail, Error> {
        let path = format!("{}/ws", topic_path(topic));
        let from = from.to_string();
        let socket = connect::open(self, &path, &[("from", &from)]).await?;
        let (tx, messages) = mpsc::channel(TAIL_BUFFER);
        let connection = Connection::start(
            socket,
            frames::decode_tail,
            None,
            Push::Backpressure(tx),
            None,
            self.keepalive(),
        );
        Ok(WsTail {
            messages,
            connection,
        })
    }
}

impl WsTail {
    /// Closes the socket and waits (a few seconds at most) for the server
    /// to close its side.
    ///
    /// ```no_run
    /// # async fn demo(tail: weir_client::WsTail) {
    /// tail.close().await;
    /// # }
    /// ```
    pub async fn close(mut self) {
        self.messages.close();
        self.connection.close().await;
    }
}

impl Drop for WsTail {
    fn drop(&mut self) {
        self.connection.start_close();
    }
}

impl Stream for WsTail {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().messages.poll_recv(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn from_parses_and_prints_the_query_value() {
        for text in ["latest", "earliest", "1764300000000"] {
            assert_eq!(text.parse::<TailFrom>().unwrap().to_string(), text);
        }
        assert_eq!("0".parse::<TailFrom>().unwrap(), TailFrom::Timestamp(0));
        assert!(matches!(
            "yesterday".parse::<TailFrom>(),
            Err(Error::Local(_))
        ));
        assert!("-5".parse::<TailFrom>().is_err());
    }
}
