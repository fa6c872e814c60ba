//! Harbor's list conventions: `page`/`page_size` with `X-Total-Count` and
//! `Link`, the `q` filter language and `sort`.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Uri};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, Result};

pub const DEFAULT_PAGE_SIZE: i64 = 10;
pub const MAX_PAGE_SIZE: i64 = 100;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListQuery {
    pub page: Option<i64>,
    pub page_size: Option<i64>,
    pub q: Option<String>,
    pub sort: Option<String>,
}

#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub page: i64,
    pub size: i64,
}

impl Page {
    pub fn limit(&self) -> i64 {
        self.size
    }
    pub fn offset(&self) -> i64 {
        (self.page - 1) * self.size
    }
}

impl ListQuery {
    pub fn page(&self) -> Result<Page> {
        let page = self.page.unwrap_or(1);
        let size = self.page_size.unwrap_or(DEFAULT_PAGE_SIZE);
        if page < 1 {
            return Err(ApiError::BadRequest("page must be 1 or more".into()));
        }
        if !(1..=MAX_PAGE_SIZE).contains(&size) {
            return Err(ApiError::BadRequest(format!(
                "page_size must be between 1 and {MAX_PAGE_SIZE}"
            )));
        }
        Ok(Page { page, size })
    }

    pub fn filters(&self) -> Result<Vec<(String, Filter)>> {
        match &self.q {
            Some(q) if !q.trim().is_empty() => parse_q(q),
            _ => Ok(vec![]),
        }
    }

    /// `sort=name,-creation_time` as (column, descending), each checked against `allowed`.
    pub fn sort(&self, allowed: &[&str]) -> Result<Vec<(String, bool)>> {
        let Some(s) = &self.sort else {
            return Ok(vec![]);
        };
        s.split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|p| {
                let p = p.trim();
                let (desc, key) = match p.strip_prefix('-') {
                    Some(k) => (true, k),
                    None => (false, p),
                };
                if allowed.contains(&key) {
                    Ok((key.to_owned(), desc))
                } else {
                    Err(ApiError::BadRequest(format!(
                        "cannot sort by {key:?}; allowed: {}",
                        allowed.join(", ")
                    )))
                }
            })
            .collect()
    }
}

/// One condition of the `q` language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// `k=v`
    Exact(String),
    /// `k=~v`
    Fuzzy(String),
    /// `k=[min~max]`, either end may be empty.
    Range(Option<String>, Option<String>),
    /// `k={a b c}`
    AnyOf(Vec<String>),
    /// `k=(a b c)`
    AllOf(Vec<String>),
}

/// Parses `q`: comma-separated `key<op>value` terms.
pub fn parse_q(q: &str) -> Result<Vec<(String, Filter)>> {
    let bad = |t: &str| {
        ApiError::BadRequest(format!("invalid q term {t:?}: expected key=value, key=~value, key=[a~b], key={{a b}} or key=(a b)"))
    };
    let mut out = Vec::new();
    for term in split_terms(q) {
        let term = term.trim();
        if term.is_empty() {
            continue;
        }
        let (k, v) = term.split_once('=').ok_or_else(|| bad(term))?;
        let k = k.trim();
        if k.is_empty() {
            return Err(bad(term));
        }
        let f = if let Some(v) = v.strip_prefix('~') {
            Filter::Fuzzy(v.to_owned())
        } else if let Some(inner) = v.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
            let (a, b) = inner.split_once('~').ok_or_else(|| bad(term))?;
            let opt = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
            Filter::Range(opt(a), opt(b))
        } else if let Some(inner) = v.strip_prefix('{').and_then(|v| v.strip_suffix('}')) {
            Filter::AnyOf(inner.split_whitespace().map(str::to_owned).collect())
        } else if let Some(inner) = v.strip_prefix('(').and_then(|v| v.strip_suffix(')')) {
            Filter::AllOf(inner.split_whitespace().map(str::to_owned).collect())
        } else {
            Filter::Exact(v.to_owned())
        };
        out.push((k.to_owned(), f));
    }
    Ok(out)
}

/// Splits on commas that are not inside brackets.
fn split_terms(q: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in q.char_indices() {
        match c {
            '[' | '{' | '(' => depth += 1,
            ']' | '}' | ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&q[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&q[start..]);
    out
}

/// A page of results with `X-Total-Count` and `Link` (`prev`/`next`), as Harbor answers lists.
pub fn paged<T: Serialize>(items: Vec<T>, total: i64, page: Page, uri: &Uri) -> Response {
    let mut resp = axum::Json(items).into_response();
    let h = resp.headers_mut();
    h.insert("x-total-count", HeaderValue::from(total));
    let link_to = |p: i64| {
        let mut pairs: Vec<(String, String)> =
            url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
                .into_owned()
                .filter(|(k, _)| k != "page" && k != "page_size")
                .collect();
        pairs.push(("page".into(), p.to_string()));
        pairs.push(("page_size".into(), page.size.to_string()));
        let q: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        format!("<{}?{q}>", uri.path())
    };
    let mut links = Vec::new();
    if page.page > 1 {
        links.push(format!("{}; rel=\"prev\"", link_to(page.page - 1)));
    }
    if page.offset() + page.size < total {
        links.push(format!("{}; rel=\"next\"", link_to(page.page + 1)));
    }
    if !links.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&links.join(" , ")) {
            h.insert(http::header::LINK, v);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q_language() {
        let f = parse_q(
            "name=~foo,public=true,creation_time=[2020-01-01~2021-01-01],id={1 2 3},tags=(a b)",
        )
        .unwrap();
        assert_eq!(f[0], ("name".into(), Filter::Fuzzy("foo".into())));
        assert_eq!(f[1], ("public".into(), Filter::Exact("true".into())));
        assert_eq!(
            f[2],
            (
                "creation_time".into(),
                Filter::Range(Some("2020-01-01".into()), Some("2021-01-01".into()))
            )
        );
        assert_eq!(
            f[3],
            (
                "id".into(),
                Filter::AnyOf(vec!["1".into(), "2".into(), "3".into()])
            )
        );
        assert_eq!(
            f[4],
            ("tags".into(), Filter::AllOf(vec!["a".into(), "b".into()]))
        );
        assert!(parse_q("novalue").is_err());
        assert!(parse_q("=x").is_err());
    }

    #[test]
    fn page_bounds() {
        let q = ListQuery {
            page: Some(0),
            ..Default::default()
        };
        assert!(q.page().is_err());
        let q = ListQuery {
            page_size: Some(101),
            ..Default::default()
        };
        assert!(q.page().is_err());
        let p = ListQuery {
            page: Some(3),
            page_size: Some(20),
            ..Default::default()
        }
        .page()
        .unwrap();
        assert_eq!(p.offset(), 40);
    }
}
