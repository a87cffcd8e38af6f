//! Observability of the client's calls: a [`MetricsHook`] that receives one
//! [`OperationEvent`] (count, latency, outcome) per produce, publish, pull,
//! ack, nack and extend, and — with the `tracing` feature — a `tracing`
//! span around each of them (`weir.produce`, `weir.publish`, `weir.pull`,
//! `weir.ack`, `weir.nack`, `weir.extend`).
//!
//! Both are off by default and then cost one branch per call: no clock is
//! read and, without the feature, no tracing code is compiled in.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::Error;

/// What a client call did, for [`MetricsHook`]s and span names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// `POST /v1/topics/{topic}/messages` (also every [`Producer`](crate::Producer) batch).
    Produce,
    /// A publish request on a publish socket.
    Publish,
    /// `POST .../pull`.
    Pull,
    /// An ack request (HTTP, or a frame on a subscription socket).
    Ack,
    /// A nack request.
    Nack,
    /// An extend request (lease renewal).
    Extend,
}

impl Operation {
    /// The operation's name: `produce`, `publish`, `pull`, `ack`, `nack`, `extend`.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Produce => "produce",
            Operation::Publish => "publish",
            Operation::Pull => "pull",
            Operation::Ack => "ack",
            Operation::Nack => "nack",
            Operation::Extend => "extend",
        }
    }
}

/// One finished call, as a [`MetricsHook`] sees it.
#[derive(Debug)]
#[non_exhaustive]
pub struct OperationEvent<'a> {
    /// Which call.
    pub operation: Operation,
    /// The topic it was about.
    pub topic: &'a str,
    /// The subscription, for pull, ack, nack and extend.
    pub subscription: Option<&'a str>,
    /// Messages it carried: produced or published, pulled, or ack ids
    /// settled or renewed (those sent, when the call failed).
    pub messages: usize,
    /// From the start of the call to its answer.
    pub elapsed: Duration,
    /// Why it failed, when it did.
    pub error: Option<&'a Error>,
}

/// Receives an [`OperationEvent`] for every call the client makes, e.g. to
/// feed counters and latency histograms. Set with
/// [`ClientBuilder::metrics`](crate::ClientBuilder::metrics). Called on the
/// task that made the call: it must be quick and must not block.
///
/// ```no_run
/// # fn demo() -> Result<(), weir_client::Error> {
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use weir_client::{MetricsHook, Operation, OperationEvent};
///
/// #[derive(Default)]
/// struct Counts { pulled: AtomicU64, failures: AtomicU64 }
///
/// impl MetricsHook for Counts {
///     fn record(&self, event: &OperationEvent<'_>) {
///         if event.operation == Operation::Pull {
///             self.pulled.fetch_add(event.messages as u64, Ordering::Relaxed);
///         }
///         if event.error.is_some() {
///             self.failures.fetch_add(1, Ordering::Relaxed);
///         }
///     }
/// }
///
/// let client = weir_client::Client::builder("http://127.0.0.1:8080")
///     .metrics(Counts::default())
///     .build()?;
/// # Ok(()) }
/// ```
pub trait MetricsHook: Send + Sync + 'static {
    /// Called once per finished call.
    fn record(&self, event: &OperationEvent<'_>);
}

/// A shared hook is a hook: keep an `Arc` to read what it gathered.
impl<H: MetricsHook> MetricsHook for Arc<H> {
    fn record(&self, event: &OperationEvent<'_>) {
        (**self).record(event);
    }
}

/// What a call is about, for its event and span.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    pub operation: Operation,
    pub topic: &'a str,
    pub subscription: Option<&'a str>,
}

/// The client's observers: the hook, if any (and spans with `tracing`).
#[derive(Clone, Default)]
pub(crate) struct Observer {
    hook: Option<Arc<dyn MetricsHook>>,
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer")
            .field("hook", &self.hook.is_some())
            .finish()
    }
}

impl Observer {
    pub fn new(hook: Option<Arc<dyn MetricsHook>>) -> Self {
        Observer { hook }
    }

    /// Runs `call`, reporting it: `sent` messages go out, and on success
    /// `counted` says how many the answer carries (pulled messages).
    pub async fn observe<T, F>(
        &self,
        target: Target<'_>,
        sent: usize,
        counted: impl FnOnce(&T) -> usize,
        call: F,
    ) -> Result<T, Error>
    where
        F: Future<Output = Result<T, Error>>,
    {
        #[cfg(feature = "tracing")]
        let call = {
            use tracing::Instrument;
            call.instrument(span(target, sent))
        };
        let Some(hook) = &self.hook else {
            return call.await;
        };
        let started = Instant::now();
        let result = call.await;
        let messages = match &result {
            Ok(value) => counted(value),
            Err(_) => sent,
        };
        hook.record(&OperationEvent {
            operation: target.operation,
            topic: target.topic,
            subscription: target.subscription,
            messages,
            elapsed: started.elapsed(),
            error: result.as_ref().err(),
        });
        result
    }
}

/// The span of one call; span names are static, hence one arm each.
#[cfg(feature = "tracing")]
fn span(target: Target<'_>, messages: usize) -> tracing::Span {
    let subscription = target.subscription.unwrap_or("");
    macro_rules! span {
        ($name:literal) => {
            tracing::debug_span!($name, topic = target.topic, subscription, messages)
        };
    }
    match target.operation {
        Operation::Produce => span!("weir.produce"),
        Operation::Publish => span!("weir.publish"),
        Operation::Pull => span!("weir.pull"),
        Operation::Ack => span!("weir.ack"),
        Operation::Nack => span!("weir.nack"),
        Operation::Extend => span!("weir.extend"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct Recorded(Mutex<Vec<(Operation, usize, bool)>>);

    impl MetricsHook for Recorded {
        fn record(&self, event: &OperationEvent<'_>) {
            let failed = event.error.is_some();
            let mut seen = self.0.lock().unwrap();
            seen.push((event.operation, event.messages, failed));
        }
    }

    #[tokio::test]
    async fn the_hook_sees_counts_and_failures() {
        let recorded = Arc::new(Recorded::default());
        let observer = Observer::new(Some(recorded.clone()));
        let target = |operation| Target {
            operation,
            topic: "t",
            subscription: Some("s"),
        };
        let pulled = observer
            .observe(target(Operation::Pull), 0, |v: &Vec<u8>| v.len(), async {
                Ok(vec![1, 2, 3])
            })
            .await
            .unwrap();
        assert_eq!(pulled.len(), 3);
        let failed = observer
            .observe(target(Operation::Ack), 2, |_: &()| 0, async {
                Err(Error::Local("x".into()))
            })
            .await;
        assert!(failed.is_err());
        assert_eq!(
            *recorded.0.lock().unwrap(),
            vec![(Operation::Pull, 3, false), (Operation::Ack, 2, true)]
        );
        // Without a hook the call just runs.
        let none = Observer::default()
            .observe(target(Operation::Produce), 1, |_: &u8| 1, async { Ok(7u8) })
            .await;
        assert_eq!(none.unwrap(), 7);
    }

    /// Span names seen by a minimal subscriber.
    #[cfg(feature = "tracing")]
    #[derive(Default)]
    struct Spans(Mutex<Vec<&'static str>>);

    #[cfg(feature = "tracing")]
    impl tracing::Subscriber for Spans {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            let mut names = self.0.lock().unwrap();
            names.push(span.metadata().name());
            tracing::span::Id::from_u64(names.len() as u64)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, _: &tracing::Event<'_>) {}
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    #[cfg(feature = "tracing")]
    #[tokio::test]
    async fn every_call_gets_a_span_named_after_its_operation() {
        let spans = Arc::new(Spans::default());
        let _default = tracing::subscriber::set_default(spans.clone());
        let observer = Observer::default();
        for operation in [Operation::Produce, Operation::Pull, Operation::Ack] {
            let target = Target {
                operation,
                topic: "t",
                subscription: None,
            };
            let done = observer.observe(target, 1, |_: &()| 1, async { Ok(()) });
            done.await.unwrap();
        }
        let names = spans.0.lock().unwrap().clone();
        assert_eq!(names, vec!["weir.produce", "weir.pull", "weir.ack"]);
    }
}
