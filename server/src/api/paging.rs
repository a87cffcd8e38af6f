//! Pages of list responses: `limit` items after `cursor` (the last name of
//! the previous page), in name order, with `next` set when more remain.

use serde::Deserialize;
use utoipa::IntoParams;

use super::error::ApiError;

/// Largest and default page.
pub const MAX_PAGE: usize = 1000;

/// Query of the list endpoints.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1..=1000 (default 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// The `next` value of the previous page.
    pub cursor: Option<String>,
}

impl PageQuery {
    /// Takes one page from `names` (sorted, already filtered): the items
    /// and the cursor of the next page.
    pub fn page<T>(
        &self,
        items: impl Iterator<Item = T>,
        name: impl Fn(&T) -> &str,
    ) -> Result<(Vec<T>, Option<String>), ApiError> {
        let limit = self.limit.unwrap_or(MAX_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(ApiError::invalid(
                "limit",
                format!("`limit` must be between 1 and {MAX_PAGE}, got {limit}"),
            ));
        }
        let mut after = items.skip_while(|item| {
            self.cursor
                .as_deref()
                .is_some_and(|cursor| name(item) <= cursor)
        });
        let page: Vec<T> = after.by_ref().take(limit).collect();
        let next = match after.next() {
            Some(_) => page.last().map(|item| name(item).to_owned()),
            None => None,
        };
        Ok((page, next))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn pages_follow_the_cursor_to_the_end() {
        let names = ["a", "b", "c", "d", "e"];
        let mut q = PageQuery {
            limit: Some(2),
            cursor: None,
        };
        let mut seen = Vec::new();
        loop {
            let (page, next) = q.page(names.iter().copied(), |n| n).unwrap();
            seen.extend(page);
            match next {
                Some(n) => q.cursor = Some(n),
                None => break,
            }
        }
        assert_eq!(seen, names);
        let exact = PageQuery {
            limit: Some(5),
            cursor: None,
        };
        assert_eq!(exact.page(names.iter().copied(), |n| n).unwrap().1, None);
        let zero = PageQuery {
            limit: Some(0),
            cursor: None,
        };
        assert!(zero.page(names.iter().copied(), |n| n).is_err());
    }
}
