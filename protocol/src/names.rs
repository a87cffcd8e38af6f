//! The naming rule for topics and subscriptions: `^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$`.

/// The naming rule as a regular expression (for the OpenAPI spec).
pub const NAME_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$";

/// Longest allowed topic or subscription name, in bytes.
pub const MAX_NAME_LEN: usize = 200;

/// Whether `name` is a valid topic or subscription name.
pub fn is_valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let Some(first) = bytes.first() else {
        return false;
    };
    bytes.len() <= MAX_NAME_LEN
        && first.is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_rejects() {
        assert!(is_valid_name("orders"));
        assert!(is_valid_name("orders.billing.dlq"));
        assert!(is_valid_name("A-1_b.c"));
        assert!(is_valid_name(&"a".repeat(200)));
        assert!(!is_valid_name(&"a".repeat(201)));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name(".hidden"));
        assert!(!is_valid_name("-x"));
        assert!(!is_valid_name("a b"));
        assert!(!is_valid_name("a/b"));
        assert!(!is_valid_name("ü"));
    }
}
