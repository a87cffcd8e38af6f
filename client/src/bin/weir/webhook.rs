//! `weir webhook-receive`: a local endpoint for push subscriptions, to see
//! what a subscription pushes and to try a receiver's failure modes.
//!
//! Every `POST` (any path) is checked against the Standard Webhooks
//! signature when `--secret` is given: `webhook-signature: v1,<base64>`
//! (several may be given, space-separated; one valid is enough) is the
//! HMAC-SHA256, keyed with the bytes of the `whsec_<base64>` secret, of
//! `{webhook-id}.{webhook-timestamp}.{body}`, and the timestamp must be
//! within `--tolerance-s` (5 minutes) of now. A bad or missing signature
//! is answered 401 and printed nowhere but stderr. A verified request is
//! printed to stdout as JSON lines — one line per message: the body
//! itself, or each element of a batch `{"messages": [...]}` — and answered
//! 204, unless `--fail-first` / `--status` ask for a failure.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use clap::Args;
use hmac::{Hmac, Mac};
use serde_json::value::RawValue;
use sha2::Sha256;
use tokio::sync::Notify;
use weir_client::Error;

use super::output::{errln, outln, Printer};

/// Largest request body accepted (a full batch of large messages).
const MAX_BODY_BYTES: usize = 64 << 20;
/// Status of a simulated failure when --status is not given.
const DEFAULT_FAILURE_STATUS: u16 = 503;

#[derive(Args)]
pub struct WebhookArgs {
    /// Address to listen on (port 0: any free port); the address is
    /// printed on stderr once listening.
    #[arg(long, default_value = "127.0.0.1:9000", value_name = "ADDR:PORT")]
    listen: SocketAddr,
    /// Signing secret (`whsec_<base64>`, as given to `--push-secret`):
    /// requests without a valid signature are answered 401. Without it,
    /// nothing is verified.
    #[arg(long, value_name = "whsec_...")]
    secret: Option<String>,
    /// A second accepted secret, during a rotation.
    #[arg(long, requires = "secret", value_name = "whsec_...")]
    previous_secret: Option<String>,
    /// Answer the first N verified requests with --status (default 503)
    /// without printing them, to watch the subscription retry.
    #[arg(long, default_value_t = 0, value_name = "N")]
    fail_first: u64,
    /// Status of the simulated failures (100..=599). Without --fail-first,
    /// every verified request is answered with it.
    #[arg(long, value_parser = clap::value_parser!(u16).range(100..=599), value_name = "CODE")]
    status: Option<u16>,
    /// Largest accepted distance between `webhook-timestamp` and now, in
    /// seconds.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    tolerance_s: u64,
    /// Stop after printing this many messages (default: run until Ctrl-C).
    #[arg(long)]
    count: Option<u64>,
}

/// What every request handler shares.
struct Receiver {
    keys: Vec<Vec<u8>>,
    tolerance_s: u64,
    /// Verified requests to fail, and with which status.
    fail_first: u64,
    failure: Option<StatusCode>,
    verified: AtomicU64,
    printed: AtomicU64,
    count: Option<u64>,
    done: Notify,
    json: bool,
}

pub async fn run(args: WebhookArgs, printer: &Printer) -> Result<(), Error> {
    let keys = [&args.secret, &args.previous_secret]
        .into_iter()
        .flatten()
        .map(|s| {
            secret_key(s).ok_or_else(|| {
                Error::Local(format!(
                    "`{}…` is not a signing secret: expected `whsec_` and base64",
                    s.chars().take(10).collect::<String>()
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let failure = match (args.status, args.fail_first) {
        (Some(code), _) => Some(code),
        (None, 0) => None,
        (None, _) => Some(DEFAULT_FAILURE_STATUS),
    }
    .map(|code| {
        StatusCode::from_u16(code).map_err(|e| Error::Local(format!("--status {code}: {e}")))
    })
    .transpose()?;
    let receiver = Arc::new(Receiver {
        keys,
        tolerance_s: args.tolerance_s,
        fail_first: args.fail_first,
        failure,
        verified: AtomicU64::new(0),
        printed: AtomicU64::new(0),
        count: args.count,
        done: Notify::new(),
        json: printer.is_json(),
    });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| Error::Local(format!("cannot listen on {}: {e}", args.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Local(format!("cannot read the listening address: {e}")))?;
    let checked = if receiver.keys.is_empty() {
        "signatures NOT verified: no --secret"
    } else {
        "verifying signatures"
    };
    errln!("weir: listening on http://{addr} ({checked})");
    let app = axum::Router::new()
        .fallback(receive)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(receiver.clone());
    let stop = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = receiver.done.notified() => {}
        }
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
        .map_err(|e| Error::Local(format!("webhook receiver failed: {e}")))
}

async fn receive(
    State(receiver): State<Arc<Receiver>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method != Method::POST {
        return (StatusCode::METHOD_NOT_ALLOWED, "POST only\n").into_response();
    }
    let id = header(&headers, "webhook-id").unwrap_or("-").to_owned();
    if !receiver.keys.is_empty() {
        if let Err(why) = verify(
            &receiver.keys,
            &headers,
            &body,
            now_s(),
            receiver.tolerance_s,
        ) {
            errln!("weir: rejected webhook-id {id}: {why}");
            return (StatusCode::UNAUTHORIZED, format!("{why}\n")).into_response();
        }
    }
    let n = receiver.verified.fetch_add(1, Ordering::Relaxed);
    if let Some(status) = receiver.failure {
        if receiver.fail_first == 0 || n < receiver.fail_first {
            errln!("weir: answered webhook-id {id} with {status} (simulated failure)");
            return (status, "simulated failure\n").into_response();
        }
    }
    let messages = match messages(&body) {
        Ok(messages) => messages,
        Err(why) => {
            errln!("weir: rejected webhook-id {id}: {why}");
            return (StatusCode::BAD_REQUEST, format!("{why}\n")).into_response();
        }
    };
    let mut stop = false;
    for m in &messages {
        let printed = receiver.printed.fetch_add(1, Ordering::Relaxed);
        if receiver.count.is_some_and(|count| printed >= count) {
            break;
        }
        outln!("{m}");
        if receiver.count.is_some_and(|count| printed + 1 >= count) {
            stop = true;
        }
    }
    if !receiver.json {
        errln!(
            "weir: received webhook-id {id}: {} message{}",
            messages.len(),
            if messages.len() == 1 { "" } else { "s" }
        );
    }
    if stop {
        receiver.done.notify_one();
    }
    StatusCode::NO_CONTENT.into_response()
}

/// The messages of a push body: the elements of `{"messages": [...]}`, or
/// the body itself, each as sent (fields in the sender's order) on one line.
fn messages(body: &[u8]) -> Result<Vec<String>, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Batch {
        messages: Vec<Box<RawValue>>,
    }
    let one_line = |raw: &RawValue| -> Result<String, String> {
        let text = raw.get();
        if !text.contains(['\n', '\r']) {
            return Ok(text.to_owned());
        }
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        serde_json::to_string(&value).map_err(|e| e.to_string())
    };
    if let Ok(batch) = serde_json::from_slice::<Batch>(body) {
        return batch.messages.iter().map(|m| one_line(m)).collect();
    }
    let raw: Box<RawValue> =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    Ok(vec![one_line(&raw)?])
}

/// The key bytes of a `whsec_<base64>` secret (the prefix is optional).
pub fn secret_key(secret: &str) -> Option<Vec<u8>> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    STANDARD.decode(encoded).ok().filter(|k| !k.is_empty())
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Checks the Standard Webhooks signature of a request against `keys`.
fn verify(
    keys: &[Vec<u8>],
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
    tolerance_s: u64,
) -> Result<(), String> {
    let required = |name: &str| header(headers, name).ok_or(format!("no `{name}` header"));
    let id = required("webhook-id")?;
    let timestamp = required("webhook-timestamp")?;
    let signatures = required("webhook-signature")?;
    let at: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| format!("`webhook-timestamp` `{timestamp}` is not a number of seconds"))?;
    if now.abs_diff(at) > tolerance_s {
        return Err(format!(
            "`webhook-timestamp` {at} is more than {tolerance_s} s from now ({now})"
        ));
    }
    for key in keys {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
            continue;
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.trim().as_bytes());
        mac.update(b".");
        mac.update(body);
        for signature in signatures.split(' ') {
            let Some(encoded) = signature.strip_prefix("v1,") else {
                continue;
            };
            let Ok(bytes) = STANDARD.decode(encoded) else {
                continue;
            };
            // Constant-time comparison.
            if mac.clone().verify_slice(&bytes).is_ok() {
                return Ok(());
            }
        }
    }
    Err("no valid `v1` signature in `webhook-signature`".into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use axum::http::HeaderValue;

    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const BODY: &[u8] = br#"{"test": 2432232314}"#;

    fn headers(id: &str, timestamp: &str, signature: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("webhook-id", HeaderValue::from_str(id).unwrap());
        h.insert(
            "webhook-timestamp",
            HeaderValue::from_str(timestamp).unwrap(),
        );
        h.insert(
            "webhook-signature",
            HeaderValue::from_str(signature).unwrap(),
        );
        h
    }

    /// The example of the Standard Webhooks specification.
    #[test]
    fn the_specification_example_verifies() {
        let keys = vec![secret_key(SECRET).unwrap()];
        let good = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        let h = headers("msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", good);
        assert_eq!(verify(&keys, &h, BODY, 1_614_265_330, 300), Ok(()));
        // One valid signature among several is enough.
        let several = format!("v1,AAAA v2,xyz {good}");
        let h = headers("msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", &several);
        assert_eq!(verify(&keys, &h, BODY, 1_614_265_330, 300), Ok(()));
    }

    #[test]
    fn tampering_wrong_keys_and_old_timestamps_are_refused() {
        let keys = vec![secret_key(SECRET).unwrap()];
        let good = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        let h = headers("msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", good);
        assert!(verify(&keys, &h, b"{\"test\": 1}", 1_614_265_330, 300).is_err());
        let other = vec![secret_key("whsec_c2Vjb25kLXNlY3JldC1rZXktMTIzNDU2Nzg=").unwrap()];
        assert!(verify(&other, &h, BODY, 1_614_265_330, 300).is_err());
        let late = verify(&keys, &h, BODY, 1_614_265_330 + 301, 300).unwrap_err();
        assert!(late.contains("more than 300 s"), "{late}");
        let early = verify(&keys, &h, BODY, 1_614_265_330 - 301, 300);
        assert!(early.is_err());
        let h = headers(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
            "v1,not base64!",
        );
        assert!(verify(&keys, &h, BODY, 1_614_265_330, 300).is_err());
        let missing = verify(&keys, &HeaderMap::new(), BODY, 0, 300).unwrap_err();
        assert!(missing.contains("webhook-id"), "{missing}");
        assert!(secret_key("whsec_%%%").is_none());
    }

    #[test]
    fn batches_print_one_line_per_message() {
        let batch = br#"{"messages": [{"offset": 1}, {"offset": 2}]}"#;
        assert_eq!(
            messages(batch).unwrap(),
            [r#"{"offset": 1}"#, r#"{"offset": 2}"#]
        );
        let pretty = b"{\n  \"b\": 1,\n  \"a\": 2\n}";
        assert_eq!(messages(pretty).unwrap(), [r#"{"a":2,"b":1}"#]);
        let single = br#"{"offset": 3, "messages": []}"#;
        assert_eq!(messages(single).unwrap().len(), 1);
        assert!(messages(b"not json").is_err());
    }
}
