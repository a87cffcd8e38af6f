//! Push delivery (webhooks): where a subscription POSTs its messages, how
//! they are signed (Standard Webhooks) and how much may be in flight.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Messages per POST and how long to wait to fill a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushBatch {
    /// Messages per request, 1..=1000 (1: the body is the message itself).
    #[schema(minimum = 1, maximum = 1000)]
    pub max_messages: u32,
    /// Longest wait for a batch to fill, 0..=60000 ms.
    #[schema(maximum = 60000)]
    pub max_wait_ms: u64,
}

/// Push settings in a request. `url` is required; the rest default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushSpec {
    /// `https://` (or `http://`) endpoint that receives `POST`s. Loopback,
    /// private, link-local and metadata addresses are refused unless the
    /// server's `push_allow_networks` allows them; redirects are not followed.
    pub url: String,
    /// Extra request headers (e.g. an `Authorization` for the endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    /// Per-request timeout, 100..=300000 ms (default 10000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 100, maximum = 300000)]
    pub timeout_ms: Option<u64>,
    /// Requests in flight at once, 1..=1024 (default 16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1024)]
    pub max_in_flight: Option<u32>,
    /// Most requests per second (default unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub rate_per_s: Option<u32>,
    /// Signing secret, `whsec_<base64>` (Standard Webhooks); absent = unsigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// A second secret that also signs, for rotation: receivers accept
    /// either signature while they switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret: Option<String>,
    /// Batching (default one message per request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<PushBatch>,
}

/// The effective push settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PushConfig {
    /// Endpoint.
    pub url: String,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Per-request timeout in milliseconds.
    pub timeout_ms: u64,
    /// Requests in flight at once.
    pub max_in_flight: u32,
    /// Most requests per second, if limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_s: Option<u32>,
    /// Signing secret (shown as `"(set)"` in responses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Second signing secret, for rotation (shown as `"(set)"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret: Option<String>,
    /// Batching.
    pub batch: PushBatch,
}

impl PushConfig {
    /// The same settings with secrets replaced by `"(set)"`, for responses.
    pub fn redacted(&self) -> PushConfig {
        let hide = |s: &Option<String>| s.as_ref().map(|_| "(set)".to_owned());
        PushConfig {
            secret: hide(&self.secret),
            previous_secret: hide(&self.previous_secret),
            headers: self
                .headers
                .keys()
                .map(|k| (k.clone(), "(set)".to_owned()))
                .collect(),
            ..self.clone()
        }
    }
}
