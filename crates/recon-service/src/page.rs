//! Pages of the list endpoints: `?limit=N&after=CURSOR`.
//!
//! Lists are in creation order (`created`, then id; see
//! [`crate::durable::sort_by_creation`]). A page is the first `limit` items
//! after a cursor, and the cursor names the last item's place in that order
//! (`CREATED_ID`), not its position: items stored or deleted between two
//! requests never shift a later page, and a cursor stays valid after its
//! item is deleted. Without `limit` a list is whole, as before pages.

use crate::durable::stamp_order;
use crate::error::ApiError;
use crate::upload;

/// The largest `limit`.
pub const MAX_LIMIT: usize = 1000;

/// A requested page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Page {
    limit: Option<usize>,
    after: Option<(String, String)>,
}

impl Page {
    /// The page a query asks for.
    ///
    /// # Errors
    /// [`ApiError::BadRequest`] for a `limit` outside 1..=[`MAX_LIMIT`] or a
    /// cursor no `next` link gave.
    pub(crate) fn from_query(query: Option<&str>) -> Result<Self, ApiError> {
        let limit = match upload::query_value(query, "limit") {
            None => None,
            Some(text) => match text.parse::<usize>() {
                Ok(n @ 1..=MAX_LIMIT) => Some(n),
                _ => {
                    return Err(ApiError::BadRequest(format!(
                        "limit must be a whole number from 1 to {MAX_LIMIT}, not {text:?}"
                    )));
                }
            },
        };
        let after = match upload::query_value(query, "after") {
            None => None,
            Some(cursor) => Some(parse_cursor(&cursor).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "after must be a cursor from a previous page's `next` link, not {cursor:?}"
                ))
            })?),
        };
        Ok(Self { limit, after })
    }

    /// The page of `sorted` (in creation order; `key` gives an item's
    /// `created` and id), and the cursor after its last item when more
    /// items follow.
    pub(crate) fn take<T>(
        &self,
        sorted: Vec<T>,
        key: impl Fn(&T) -> (&str, &str),
    ) -> (Vec<T>, Option<String>) {
        let mut items: Vec<T> = match &self.after {
            None => sorted,
            Some((created, id)) => {
                let after = (stamp_order(created), id.as_str());
                sorted
                    .into_iter()
                    .filter(|t| {
                        let (c, i) = key(t);
                        (stamp_order(c), i) > after
                    })
                    .collect()
            }
        };
        let Some(limit) = self.limit else {
            return (items, None);
        };
        if items.len() <= limit {
            return (items, None);
        }
        items.truncate(limit);
        let next = items.last().map(|t| {
            let (created, id) = key(t);
            format!("{created}_{id}")
        });
        (items, next)
    }

    /// The `next` link for `cursor` on `path`, keeping the page's limit and
    /// `keep` (other parameters, already encoded, e.g. `state=failed`).
    pub(crate) fn next_link(&self, path: &str, cursor: &str, keep: &[String]) -> String {
        let mut link = format!(
            "{path}?limit={}&after={cursor}",
            self.limit.unwrap_or(MAX_LIMIT)
        );
        for k in keep {
            link.push('&');
            link.push_str(k);
        }
        link
    }
}

/// `CREATED_ID` as a `next` link writes it: a creation stamp
/// (`2026-11-27T14:20:00.123456Z`, which holds no `_`) and an id.
fn parse_cursor(cursor: &str) -> Option<(String, String)> {
    let (created, id) = cursor.split_once('_')?;
    (is_stamp(created) && crate::ids::is_valid(id)).then(|| (created.to_owned(), id.to_owned()))
}

/// Whether `text` has the shape of a creation stamp: `YYYY-MM-DDTHH:MM:SS`,
/// an optional fraction, `Z`.
fn is_stamp(text: &str) -> bool {
    let b = text.as_bytes();
    let shape = b"dddd-dd-ddTdd:dd:dd";
    if b.len() < shape.len() + 1 || b.last() != Some(&b'Z') {
        return false;
    }
    let fixed = b.iter().zip(shape).all(|(c, s)| {
        if *s == b'd' {
            c.is_ascii_digit()
        } else {
            c == s
        }
    });
    let rest = &b[shape.len()..b.len() - 1];
    fixed
        && (rest.is_empty()
            || (rest[0] == b'.' && rest.len() > 1 && rest[1..].iter().all(u8::is_ascii_digit)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(t: &(String, String)) -> (&str, &str) {
        (&t.0, &t.1)
    }

    fn item(created: &str, id: &str) -> (String, String) {
        (created.to_owned(), id.to_owned())
    }

    #[test]
    fn limits_and_cursors_are_checked() {
        for bad in [
            "limit=0",
            "limit=1001",
            "limit=x",
            "limit=",
            "after=x",
            "after=2026_x",
            "after=zzz_00000000-0000-0000-0000-000000000000",
            "after=0_00000000-0000-0000-0000-000000000000",
            "after=2026-01-01T00:00:00._00000000-0000-0000-0000-000000000000",
        ] {
            assert!(Page::from_query(Some(bad)).is_err(), "{bad}");
        }
        for good in ["2026-01-01T00:00:00.000001Z", "2026-01-01T00:00:00Z"] {
            let cursor = format!("after={good}_00000000-0000-0000-0000-000000000000");
            assert!(Page::from_query(Some(&cursor)).is_ok(), "{cursor}");
        }
        assert_eq!(
            Page::from_query(None).unwrap(),
            Page {
                limit: None,
                after: None
            }
        );
    }

    #[test]
    fn pages_follow_creation_order_past_a_deleted_cursor() {
        let id = |n: u8| format!("00000000-0000-0000-0000-{n:012x}");
        let all = vec![
            item("2026-01-01T00:00:00.000001Z", &id(1)),
            item("2026-01-01T00:00:00.000002Z", &id(2)),
            item("2026-01-01T00:00:00.000002Z", &id(3)),
            item("2026-01-01T00:00:01Z", &id(4)),
        ];
        let page = Page::from_query(Some("limit=2")).unwrap();
        let (first, next) = page.take(all.clone(), key);
        assert_eq!(first, all[..2]);
        let cursor = next.expect("more follow");
        assert_eq!(cursor, format!("2026-01-01T00:00:00.000002Z_{}", id(2)));
        // The cursor's item deleted meanwhile: the next page is the same.
        let remaining: Vec<_> = all.iter().filter(|t| t.1 != id(2)).cloned().collect();
        let page = Page::from_query(Some(&format!("limit=2&after={cursor}"))).unwrap();
        let (second, next) = page.take(remaining, key);
        assert_eq!(second, all[2..]);
        assert_eq!(next, None);
    }
}
