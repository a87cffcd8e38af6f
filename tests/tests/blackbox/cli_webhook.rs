//! `weir webhook-receive` as a process: Standard Webhooks signatures
//! checked (a correctly signed request printed and answered 2xx, a wrongly
//! signed or stale one answered 401 and not printed), batches printed one
//! message per line, simulated failures; and a push subscription made with
//! `weir subs create --push-url` delivering to it through a real server.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::cli::{cli_bin, weir};
use crate::harness::TestServer;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OTHER_SECRET: &str = "whsec_c2Vjb25kLXNlY3JldC1rZXktMTIzNDU2Nzg=";

/// HMAC-SHA256 (RFC 2104), written out: the tests have `sha2` only.
fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|k| k ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

/// The `webhook-signature` of `body` with `secret`.
fn sign(secret: &str, id: &str, timestamp: u64, body: &str) -> String {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mac = hmac_sha256(&key, format!("{id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", STANDARD.encode(mac))
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A running `weir webhook-receive` and the address it listens on.
struct Receiver {
    child: Child,
    addr: String,
    stderr: mpsc::Receiver<String>,
}

impl Receiver {
    fn start(args: &[&str]) -> Receiver {
        let mut child = Command::new(cli_bin())
            .args(["webhook-receive", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start weir webhook-receive");
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        let addr = loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("webhook-receive prints its address");
            if let Some(rest) = line.split("listening on http://").nth(1) {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
        };
        Receiver {
            child,
            addr,
            stderr: rx,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Waits (bounded) for the process to exit by itself; its stdout and
    /// what it said on stderr since.
    fn finish(mut self) -> (String, String) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("webhook-receive did not stop after --count");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "webhook-receive exited with {status}");
        let mut stdout = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        let stderr: Vec<String> = self.stderr.try_iter().collect();
        (stdout, stderr.join("\n"))
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn post(url: &str, body: &str, id: &str, timestamp: u64, signature: &str) -> u16 {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn cli_webhook_receive_verifies_signatures() {
    let receiver = Receiver::start(&["--secret", SECRET, "--count", "3"]);
    let url = receiver.url();
    let now = now_s();

    // Wrongly signed, tampered, stale, unsigned: 401, nothing printed.
    let body = r#"{"topic":"orders","offset":1,"value":{"n":1}}"#;
    let wrong = sign(OTHER_SECRET, "msg_1", now, body);
    assert_eq!(post(&url, body, "msg_1", now, &wrong).await, 401);
    let tampered = sign(SECRET, "msg_1", now, r#"{"offset":2}"#);
    assert_eq!(post(&url, body, "msg_1", now, &tampered).await, 401);
    let stale = now - 600;
    let old = sign(SECRET, "msg_1", stale, body);
    assert_eq!(post(&url, body, "msg_1", stale, &old).await, 401);
    let unsigned = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(&url)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status().as_u16(), 401);

    // Correctly signed (among other signatures, as during a rotation): 2xx.
    let good = sign(SECRET, "msg_1", now, body);
    let rotated = format!("{wrong} {good}");
    let status = post(&url, body, "msg_1", now, &rotated).await;
    assert!((200..300).contains(&status), "{status}");
    // A batch: one line per message.
    let batch = r#"{"messages":[{"offset":2},{"offset":3}]}"#;
    let signed = sign(SECRET, "msg_2", now, batch);
    let status = post(&url, batch, "msg_2", now, &signed).await;
    assert!((200..300).contains(&status), "{status}");

    let (stdout, stderr) = receiver.finish();
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert_eq!(lines[0]["value"]["n"], 1);
    assert_eq!(
        (lines[1]["offset"].as_u64(), lines[2]["offset"].as_u64()),
        (Some(2), Some(3))
    );
    assert!(stderr.contains("rejected"), "{stderr}");
}

#[tokio::test]
async fn cli_webhook_receive_simulates_failures() {
    let receiver = Receiver::start(&["--fail-first", "2", "--status", "500", "--count", "1"]);
    let url = receiver.url();
    let body = r#"{"offset":1}"#;
    assert_eq!(post(&url, body, "a", now_s(), "unsigned").await, 500);
    assert_eq!(post(&url, body, "a", now_s(), "unsigned").await, 500);
    assert_eq!(post(&url, body, "a", now_s(), "unsigned").await, 204);
    let (stdout, _) = receiver.finish();
    assert_eq!(stdout.trim(), body);
}

/// A push subscription made with the CLI delivers, signed, to the CLI's
/// receiver, and a simulated failure is retried.
#[test]
fn cli_push_subscription_delivers_to_webhook_receive() {
    let s = TestServer::start_with(&["--push-allow-networks", "127.0.0.0/8"]);
    let receiver = Receiver::start(&["--secret", SECRET, "--fail-first", "1", "--count", "3"]);
    weir(&s, &["topics", "create", "hooks"], "").ok();
    weir(
        &s,
        &[
            "subs",
            "create",
            "hooks",
            "pushed",
            "--start",
            "earliest",
            "--backoff-initial-ms",
            "100",
            "--push-url",
            &receiver.url(),
            "--push-secret",
            SECRET,
        ],
        "",
    )
    .ok();
    weir(&s, &["produce", "hooks", "a", "b", "c"], "").ok();
    let (stdout, stderr) = receiver.finish();
    let mut values: Vec<String> = stdout
        .lines()
        .map(|l| {
            let m: Value = serde_json::from_str(l).unwrap();
            m["value"].as_str().unwrap().to_owned()
        })
        .collect();
    values.sort();
    assert_eq!(values, ["a", "b", "c"], "{stdout}");
    assert!(stderr.contains("simulated failure"), "{stderr}");
}
