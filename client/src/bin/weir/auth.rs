//! `weir auth`: bearer tokens for the server's tokens file, made and hashed
//! offline (no server is contacted). The server stores only the SHA-256 of
//! a token, so `hash-token` must hash exactly as it does: the token's bytes,
//! lowercase hex.

use std::io::Read;

use base64::Engine;
use clap::Subcommand;
use serde_json::json;
use sha2::{Digest, Sha256};
use weir_client::Error;

use crate::output::{outln, Printer};

/// Random bytes in a new token: 256 bits, beyond guessing.
const TOKEN_BYTES: usize = 32;

/// Marks a string as a Weir token, so it stands out in logs and secret
/// scanners.
const TOKEN_PREFIX: &str = "weir_";

#[derive(Subcommand)]
pub enum AuthCommand {
    /// Print the lowercase hex SHA-256 of a token (the `sha256` of a
    /// tokens-file entry).
    HashToken {
        /// The token; read from stdin (one trailing newline dropped) when
        /// omitted or `-`, which keeps it out of the shell history.
        token: Option<String>,
    },
    /// Generate a random token and print it, then a tokens-file entry for it.
    NewToken {
        /// The principal the entry names.
        #[arg(long, default_value = "client")]
        principal: String,
    },
}

pub fn run(command: AuthCommand, printer: &Printer) -> Result<(), Error> {
    match command {
        AuthCommand::HashToken { token } => {
            let token = match token.as_deref() {
                None | Some("-") => read_stdin_token()?,
                Some(token) => token.to_owned(),
            };
            let sha256 = hash_token(&token);
            if printer.is_json() {
                printer.json(&json!({ "sha256": sha256 }));
            } else {
                outln!("{sha256}");
            }
        }
        AuthCommand::NewToken { principal } => {
            let token = new_token()?;
            let sha256 = hash_token(&token);
            let entry = tokens_file_entry(&principal, &sha256);
            if printer.is_json() {
                printer.json(&json!({
                    "token": token,
                    "principal": principal,
                    "sha256": sha256,
                    "tokens_file_entry": entry,
                }));
            } else {
                outln!("{token}");
                outln!("");
                outln!("{entry}");
            }
        }
    }
    Ok(())
}

/// The lowercase hex SHA-256 of the token's UTF-8 bytes.
pub fn hash_token(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `weir_` and 32 random bytes, base64url without padding (43 characters):
/// safe in headers, environment variables and TOML without quoting.
pub fn new_token() -> Result<String, Error> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::Local(format!("no randomness from the OS: {e}")))?;
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    Ok(format!("{TOKEN_PREFIX}{encoded}"))
}

/// A `[[tokens]]` entry granting produce and consume on every topic: a
/// starting point to narrow, ready to paste into the tokens file.
pub fn tokens_file_entry(principal: &str, sha256: &str) -> String {
    format!(
        "[[tokens]]\nprincipal = {}\nsha256 = \"{sha256}\"\ngrants = [{{ actions = [\"produce\", \"consume\"], topics = \"*\" }}]",
        toml_string(principal)
    )
}

/// A TOML basic string: quotes, backslashes and control characters escaped,
/// so any principal name pastes as valid TOML.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The token on stdin, without the newline `echo` or a terminal adds (one
/// `\n` or `\r\n`); any other whitespace is part of the token.
fn read_stdin_token() -> Result<String, Error> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|e| Error::Local(format!("cannot read the token from stdin: {e}")))?;
    Ok(strip_newline(input))
}

fn strip_newline(mut s: String) -> String {
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn hashes_are_lowercase_hex_sha256() {
        assert_eq!(
            hash_token("test"),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
        assert_eq!(
            hash_token(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn only_one_trailing_newline_is_dropped() {
        assert_eq!(strip_newline("test\n".into()), "test");
        assert_eq!(strip_newline("test\r\n".into()), "test");
        assert_eq!(strip_newline("test".into()), "test");
        assert_eq!(strip_newline("test\n\n".into()), "test\n");
        assert_eq!(strip_newline(" test \n".into()), " test ");
    }

    #[test]
    fn new_tokens_are_prefixed_unpadded_base64url_and_distinct() {
        let token = new_token().unwrap();
        let encoded = token.strip_prefix("weir_").unwrap();
        assert_eq!(encoded.len(), 43);
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(encoded)
            .unwrap();
        assert_eq!(bytes.len(), TOKEN_BYTES);
        assert_ne!(token, new_token().unwrap());
    }

    #[test]
    fn the_entry_is_the_documented_toml() {
        assert_eq!(
            tokens_file_entry("orders-producer", "abc"),
            "[[tokens]]\n\
             principal = \"orders-producer\"\n\
             sha256 = \"abc\"\n\
             grants = [{ actions = [\"produce\", \"consume\"], topics = \"*\" }]"
        );
        assert_eq!(toml_string("a\"b\\c\u{7f}"), "\"a\\\"b\\\\c\\u007F\"");
    }
}
