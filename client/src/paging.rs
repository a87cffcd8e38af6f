//! Cursor paging shared by the list endpoints (`GET /v1/topics`,
//! `GET /v1/topics/{topic}/subscriptions`): the `limit`/`cursor` query and
//! the rule for following `next`. The endpoints themselves stay in
//! `client.rs` and `subscriptions.rs`.

use crate::Error;

/// The query of one page; absent values are left to the server's defaults.
pub(crate) fn query(limit: Option<u32>, cursor: Option<&str>) -> Vec<(&'static str, String)> {
    let mut query = Vec::with_capacity(2);
    if let Some(limit) = limit {
        query.push(("limit", limit.to_string()));
    }
    if let Some(cursor) = cursor {
        query.push(("cursor", cursor.to_owned()));
    }
    query
}

/// The cursor to ask for next, or `None` when the list is complete. A
/// server that hands back the cursor it was just given would be followed
/// forever: that is an error, not a loop.
pub(crate) fn next_cursor(
    previous: Option<&str>,
    next: Option<String>,
) -> Result<Option<String>, Error> {
    match next {
        Some(next) if Some(next.as_str()) == previous => Err(Error::Protocol(format!(
            "the server returned the same page cursor `{next}` twice"
        ))),
        next => Ok(next),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn only_given_values_are_sent() {
        assert!(query(None, None).is_empty());
        assert_eq!(
            query(Some(10), Some("b")),
            vec![("limit", "10".to_owned()), ("cursor", "b".to_owned())]
        );
    }

    #[test]
    fn following_stops_at_the_last_page_and_on_a_repeated_cursor() {
        assert_eq!(
            next_cursor(None, Some("a".into())).unwrap(),
            Some("a".into())
        );
        assert_eq!(next_cursor(Some("a"), None).unwrap(), None);
        assert!(matches!(
            next_cursor(Some("a"), Some("a".into())),
            Err(Error::Protocol(_))
        ));
    }
}
