//! [`TokenProvider`]: where the bearer token of each request and socket
//! upgrade comes from. A fixed token is the common case; a provider lets a
//! long-lived client follow a token that rotates (a JWT refreshed by
//! another task, a file re-read on change) without being rebuilt.

use std::sync::Arc;

/// Supplies the bearer token, asked once per HTTP request and once per
/// WebSocket upgrade (so a reconnecting socket picks up a rotated token).
///
/// It is called on the request path and must not block: keep the current
/// token in memory and refresh it elsewhere. Closures
/// `Fn() -> Option<String>` are providers.
///
/// ```no_run
/// # fn demo() -> Result<(), weir_client::Error> {
/// use std::sync::{Arc, RwLock};
/// let current = Arc::new(RwLock::new(String::from("weir_first")));
/// let token = current.clone();
/// let client = weir_client::Client::builder("https://weir.internal:8443")
///     .token_provider(move || token.read().ok().map(|t| t.clone()))
///     .build()?;
/// // Later, from the task that refreshes it:
/// *current.write().unwrap() = "weir_second".into();
/// # Ok(()) }
/// ```
pub trait TokenProvider: Send + Sync + 'static {
    /// The token to send now; `None` sends no `Authorization` header.
    fn token(&self) -> Option<String>;
}

impl<F> TokenProvider for F
where
    F: Fn() -> Option<String> + Send + Sync + 'static,
{
    fn token(&self) -> Option<String> {
        self()
    }
}

/// A token that never changes.
pub(crate) struct StaticToken(pub String);

impl TokenProvider for StaticToken {
    fn token(&self) -> Option<String> {
        Some(self.0.clone())
    }
}

/// The provider of a fixed token, `None` for anonymous.
pub(crate) fn fixed(token: Option<String>) -> Option<Arc<dyn TokenProvider>> {
    token.map(|t| Arc::new(StaticToken(t)) as Arc<dyn TokenProvider>)
}
