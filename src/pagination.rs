//! Pagination: where a page announces the next one, and the pages of a collection joined into
//! one document.
//!
//! A page is first scanned in one pass that builds nothing ([`scan`]): its item count and its
//! next link. A collection that fits one page is then stored exactly as the server sent it;
//! only one that spans pages is parsed into a document ([`Collection`]) to take the items of
//! the pages after it. The joined document is the first page's, with the item array holding
//! the items of every page in order and the next link set to `null` (or, when `max_pages`
//! cut the collection short, to the first page not fetched): what the server would have sent
//! had it put the whole collection on one page. docs/pagination.md says why.

use crate::config::Paginate;
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::borrow::Cow;
use std::fmt;

/// The style a next link was found in: where the items are and where the link lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `{"data": [...], "links": {"next": ...}}`
    JsonApi,
    /// `{"count", "next", "previous", "results": [...]}`
    Drf,
    /// A `Link: <...>; rel="next"` header; the body is an array (or has `results`/`data`).
    Link,
}

/// Why a page cannot be scanned or joined.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// The body is not JSON.
    #[error(transparent)]
    NotJson(#[from] serde_json::Error),
    /// A page of a collection being joined has no item array where its style keeps one.
    #[error("{}", .style.missing_items())]
    NoItems { style: Style },
}

/// What one page says about itself.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// An array's length, or `results`' (DRF), or `data`'s (JSON:API), or a `count` number.
    pub items: Option<i64>,
    /// The next page's link as written (not yet resolved against the page's URL).
    pub next: Option<(Style, String)>,
}

/// Scans a page: item count and, unless `mode` is `none`, the next link (`link_header`: the
/// response's `Link` header, if any). Err: the body is not JSON.
pub fn scan(body: &[u8], link_header: Option<&str>, mode: Paginate) -> Result<Scan, PageError> {
    let top: Top = serde_json::from_slice(body)?;
    let header_next = || link_header.and_then(next_from_link_header);
    let drf = || {
        top.results_array
            .then(|| top.next.clone())
            .flatten()
            .map(|n| (Style::Drf, n))
    };
    let jsonapi = || {
        top.data_array
            .then(|| top.links_next.clone())
            .flatten()
            .map(|n| (Style::JsonApi, n))
    };
    let next = match mode {
        Paginate::None => None,
        Paginate::Link => header_next().map(|n| (Style::Link, n)),
        Paginate::Drf => drf(),
        Paginate::Jsonapi => jsonapi(),
        Paginate::Auto => header_next()
            .map(|n| (Style::Link, n))
            .or_else(jsonapi)
            .or_else(drf),
    };
    Ok(Scan {
        items: top.items,
        next,
    })
}

/// The `rel="next"` target of an RFC 8288 `Link` header value, e.g.
/// `<https://h/x?page=2>; rel="next", <https://h/x?page=9>; rel="last"`.
///
/// Hand-written rather than a dependency: only `rel` matters here, and the crates that parse
/// the whole grammar bring a regex engine with them.
pub fn next_from_link_header(value: &str) -> Option<String> {
    let mut rest = value;
    loop {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
        let after_lt = rest.strip_prefix('<')?;
        let end = after_lt.find('>')?;
        let target = &after_lt[..end];
        rest = &after_lt[end + 1..];
        // Parameters up to the next link-value: `; name=value` or `; name="quoted, value"`.
        let mut is_next = false;
        loop {
            rest = rest.trim_start();
            let Some(params) = rest.strip_prefix(';') else {
                break;
            };
            let params = params.trim_start();
            let name_end = params.find(['=', ';', ',']).unwrap_or(params.len());
            let name = params[..name_end].trim();
            rest = &params[name_end..];
            let mut value = String::new();
            if let Some(v) = rest.strip_prefix('=') {
                let v = v.trim_start();
                if let Some(q) = v.strip_prefix('"') {
                    let mut chars = q.char_indices();
                    let mut close = q.len();
                    while let Some((i, c)) = chars.next() {
                        match c {
                            '\\' => {
                                if let Some((_, c)) = chars.next() {
                                    value.push(c);
                                }
                            }
                            '"' => {
                                close = i + 1;
                                break;
                            }
                            c => value.push(c),
                        }
                    }
                    rest = &q[close.min(q.len())..];
                } else {
                    let end = v.find([';', ',']).unwrap_or(v.len());
                    value.push_str(v[..end].trim());
                    rest = &v[end..];
                }
            }
            // `rel` holds space-separated relation types, compared case-insensitively; only
            // the first `rel` of a link counts (RFC 8288 3.3).
            if name.eq_ignore_ascii_case("rel") && !is_next {
                is_next = value
                    .split_ascii_whitespace()
                    .any(|r| r.eq_ignore_ascii_case("next"));
            }
        }
        if is_next {
            return Some(target.trim().to_string());
        }
        if rest.is_empty() {
            return None;
        }
    }
}

impl Style {
    /// What a page of this style lacks when it has no item array.
    fn missing_items(self) -> &'static str {
        match self {
            Style::Drf => "no `results` array to join",
            Style::JsonApi => "no `data` array to join",
            Style::Link => "no item array to join (a JSON array, or `results` or `data`)",
        }
    }
}

/// A collection being joined from its pages.
pub struct Collection {
    doc: Value,
    style: Style,
}

impl Collection {
    /// Starts from the first page, whose next link was found in `style`.
    pub fn first(body: &[u8], style: Style) -> Result<Collection, PageError> {
        let doc: Value = serde_json::from_slice(body)?;
        let mut c = Collection { doc, style };
        c.items_mut()?;
        Ok(c)
    }

    /// Adds the items of a later page (and, for JSON:API, its `included` resources).
    pub fn push(&mut self, body: &[u8]) -> Result<(), PageError> {
        let mut page: Value = serde_json::from_slice(body)?;
        let style = self.style;
        let items = match items_of(&mut page, style) {
            Some(items) => std::mem::take(items),
            None => return Err(PageError::NoItems { style }),
        };
        self.items_mut()?.extend(items);
        if self.style == Style::JsonApi {
            if let Some(Value::Array(more)) = page.get_mut("included").map(Value::take) {
                self.add_included(more);
            }
        }
        Ok(())
    }

    /// How many items the collection holds so far.
    pub fn item_count(&self) -> usize {
        let items = match &self.doc {
            Value::Array(a) => Some(a),
            doc => doc
                .get(items_key(doc, self.style))
                .and_then(Value::as_array),
        };
        items.map_or(0, Vec::len)
    }

    /// The joined document. `next`: the first page not fetched (a partial collection), written
    /// where the style keeps its next link; `None` writes `null` there (the whole collection).
    pub fn finish(mut self, next: Option<&str>) -> Vec<u8> {
        let next = next.map_or(Value::Null, |n| Value::String(n.to_string()));
        match self.style {
            Style::Drf => {
                if let Some(o) = self.doc.as_object_mut() {
                    o.insert("next".into(), next);
                }
            }
            Style::JsonApi => {
                if let Some(links) = self.doc.get_mut("links").and_then(Value::as_object_mut) {
                    links.insert("next".into(), next);
                }
            }
            Style::Link => {}
        }
        serde_json::to_vec(&self.doc).unwrap_or_default()
    }

    fn items_mut(&mut self) -> Result<&mut Vec<Value>, PageError> {
        let style = self.style;
        items_of(&mut self.doc, style).ok_or(PageError::NoItems { style })
    }

    /// JSON:API lists a related resource once per document: keep the first of each type + id.
    fn add_included(&mut self, more: Vec<Value>) {
        let Some(obj) = self.doc.as_object_mut() else {
            return;
        };
        let included = obj
            .entry("included")
            .or_insert_with(|| Value::Array(Vec::new()));
        let Value::Array(have) = included else {
            return;
        };
        let key = |v: &Value| (v.get("type").cloned(), v.get("id").cloned());
        let mut seen: std::collections::HashSet<String> =
            have.iter().map(|v| format!("{:?}", key(v))).collect();
        for r in more {
            if seen.insert(format!("{:?}", key(&r))) {
                have.push(r);
            }
        }
    }
}

/// Where a page of `style` keeps its items.
fn items_of(doc: &mut Value, style: Style) -> Option<&mut Vec<Value>> {
    if doc.is_array() {
        return doc.as_array_mut();
    }
    let key = items_key(doc, style);
    doc.get_mut(key).and_then(Value::as_array_mut)
}

/// The key of the item array in an object page of `style`.
fn items_key(doc: &Value, style: Style) -> &'static str {
    match style {
        Style::Drf => "results",
        Style::JsonApi => "data",
        Style::Link if doc.get("results").is_some_and(Value::is_array) => "results",
        Style::Link => "data",
    }
}

// ---- the one-pass scan ----------------------------------------------------------------------

/// The top level of a page: what [`scan`] needs, everything else skipped unbuilt.
#[derive(Default)]
struct Top {
    items: Option<i64>,
    results_array: bool,
    data_array: bool,
    /// DRF's top-level `next`.
    next: Option<String>,
    /// JSON:API's `links.next` (a string, or a link object's `href`).
    links_next: Option<String>,
}

impl<'de> de::Deserialize<'de> for Top {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TopVisitor)
    }
}

struct TopVisitor;

impl<'de> Visitor<'de> for TopVisitor {
    type Value = Top;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("JSON")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Top, A::Error> {
        Ok(Top {
            items: Some(count_seq(seq)?),
            ..Top::default()
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top, A::Error> {
        let mut top = Top::default();
        let (mut results, mut data, mut count) = (None, None, None);
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match key.as_ref() {
                "results" => {
                    results = map.next_value::<Count>()?.0;
                    top.results_array = results.is_some();
                }
                "data" => {
                    data = map.next_value::<Count>()?.0;
                    top.data_array = data.is_some();
                }
                "count" => count = map.next_value::<Value>()?.as_i64(),
                "next" => top.next = map.next_value::<Link>()?.0,
                "links" => top.links_next = map.next_value::<Links>()?.0,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        top.items = results.or(data).or(count);
        Ok(top)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Top, E> {
        Ok(Top::default())
    }
    fn visit_i64<E>(self, _: i64) -> Result<Top, E> {
        Ok(Top::default())
    }
    fn visit_u64<E>(self, _: u64) -> Result<Top, E> {
        Ok(Top::default())
    }
    fn visit_f64<E>(self, _: f64) -> Result<Top, E> {
        Ok(Top::default())
    }
    fn visit_str<E>(self, _: &str) -> Result<Top, E> {
        Ok(Top::default())
    }
    fn visit_unit<E>(self) -> Result<Top, E> {
        Ok(Top::default())
    }
}

fn count_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<i64, A::Error> {
    let mut n = 0;
    while seq.next_element::<IgnoredAny>()?.is_some() {
        n += 1;
    }
    Ok(n)
}

/// An array's length; anything else is `None`.
struct Count(Option<i64>);

impl<'de> de::Deserialize<'de> for Count {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Count, A::Error> {
                Ok(Count(Some(count_seq(seq)?)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Count, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Count(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Count, E> {
                Ok(Count(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Count, E> {
                Ok(Count(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Count, E> {
                Ok(Count(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Count, E> {
                Ok(Count(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<Count, E> {
                Ok(Count(None))
            }
            fn visit_unit<E>(self) -> Result<Count, E> {
                Ok(Count(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// A link: a string, or a JSON:API link object's `href`; anything else is no link.
struct Link(Option<String>);

impl<'de> de::Deserialize<'de> for Link {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Link(match Value::deserialize(d)? {
            Value::String(s) if !s.is_empty() => Some(s),
            Value::Object(mut o) => match o.remove("href") {
                Some(Value::String(s)) if !s.is_empty() => Some(s),
                _ => None,
            },
            _ => None,
        }))
    }
}

/// JSON:API's top-level `links` object: its `next`.
struct Links(Option<String>);

impl<'de> de::Deserialize<'de> for Links {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Links(match Value::deserialize(d)? {
            Value::Object(mut o) => match o.remove("next") {
                Some(v) => serde_json::from_value::<Link>(v)
                    .map(|l| l.0)
                    .unwrap_or(None),
                None => None,
            },
            _ => None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_counted_as_before() {
        let items = |b: &[u8]| scan(b, None, Paginate::Auto).ok().and_then(|s| s.items);
        assert_eq!(items(b"[1,2,3]"), Some(3));
        assert_eq!(items(br#"{"count":10,"results":[1]}"#), Some(1));
        assert_eq!(items(br#"{"count":10}"#), Some(10));
        assert!(scan(b"<html>", None, Paginate::Auto).is_err());
        assert_eq!(
            items(br#"{"data":[{"id":1,"attributes":{"name":"a"}},{"id":2}]}"#),
            Some(2)
        );
        assert_eq!(
            items(br#"{"results":null,"count":"7","next":{"deep":[1,[2]]}}"#),
            None
        );
        assert_eq!(items(br#"{"results":null,"count":5}"#), Some(5));
        assert_eq!(items(br#""text""#), None);
        assert!(scan(b"[1,2", None, Paginate::Auto).is_err());
    }

    #[test]
    fn next_links_by_style() {
        let drf = br#"{"count":25,"next":"http://h/x?page=2","previous":null,"results":[1]}"#;
        let api = br#"{"data":[{"id":"1"}],"links":{"self":"s","next":"/x?page%5Bnumber%5D=2"}}"#;
        let next = |b: &[u8], h: Option<&str>, m| scan(b, h, m).unwrap().next;
        assert_eq!(
            next(drf, None, Paginate::Auto),
            Some((Style::Drf, "http://h/x?page=2".into()))
        );
        assert_eq!(next(drf, None, Paginate::Jsonapi), None);
        assert_eq!(next(drf, None, Paginate::None), None);
        assert_eq!(
            next(api, None, Paginate::Auto),
            Some((Style::JsonApi, "/x?page%5Bnumber%5D=2".into()))
        );
        assert_eq!(next(api, None, Paginate::Drf), None);
        let h = Some(r#"<http://h/x?page=2>; rel="next""#);
        assert_eq!(
            next(b"[1]", h, Paginate::Auto),
            Some((Style::Link, "http://h/x?page=2".into()))
        );
        assert_eq!(next(b"[1]", h, Paginate::Drf), None);
        // A `next` that is not beside an item array is some other field, not a page link.
        assert_eq!(
            next(br#"{"next":"x","items":[1]}"#, None, Paginate::Auto),
            None
        );
        assert_eq!(
            next(
                br#"{"data":[],"links":{"next":{"href":"/p2"}}}"#,
                None,
                Paginate::Auto
            ),
            Some((Style::JsonApi, "/p2".into()))
        );
        assert_eq!(
            next(
                br#"{"data":[],"links":{"next":null}}"#,
                None,
                Paginate::Auto
            ),
            None
        );
    }

    #[test]
    fn link_headers() {
        let n = next_from_link_header;
        assert_eq!(
            n(r#"<https://a/x?page=2>; rel="next", <https://a/x?page=9>; rel="last""#),
            Some("https://a/x?page=2".into())
        );
        assert_eq!(
            n(r#"<https://a/x?page=1>; rel="prev first", <https://a/x?page=3>; REL=Next"#),
            Some("https://a/x?page=3".into())
        );
        assert_eq!(
            n(r#"<https://a/x?a=1,2>; title="a, b; c"; rel="next""#),
            Some("https://a/x?a=1,2".into())
        );
        assert_eq!(n(r#"<https://a/x>; rel="nextish""#), None);
        assert_eq!(n(r#"<https://a/x>; rel=last"#), None);
        assert_eq!(n(""), None);
        assert_eq!(n("garbage"), None);
        assert_eq!(n("<unterminated"), None);
    }

    #[test]
    fn pages_join_into_the_first_pages_document() {
        let mut c = Collection::first(
            br#"{"count":3,"next":"http://h/?page=2","previous":null,"results":[{"id":1},{"id":2}]}"#,
            Style::Drf,
        )
        .unwrap();
        c.push(br#"{"count":3,"next":null,"previous":"http://h/","results":[{"id":3}]}"#)
            .unwrap();
        assert_eq!(c.item_count(), 3);
        let v: Value = serde_json::from_slice(&c.finish(None)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"count":3,"next":null,"previous":null,"results":[{"id":1},{"id":2},{"id":3}]})
        );

        let mut c = Collection::first(
            br#"{"data":[{"type":"p","id":"1"}],"included":[{"type":"u","id":"9"}],"links":{"next":"/2"}}"#,
            Style::JsonApi,
        )
        .unwrap();
        c.push(br#"{"data":[{"type":"p","id":"2"}],"included":[{"type":"u","id":"9"},{"type":"u","id":"8"}],"links":{"next":"/3"}}"#)
            .unwrap();
        let v: Value = serde_json::from_slice(&c.finish(Some("/3"))).unwrap();
        assert_eq!(v["data"].as_array().unwrap().len(), 2);
        assert_eq!(v["included"].as_array().unwrap().len(), 2);
        assert_eq!(v["links"]["next"], "/3");

        let mut c = Collection::first(b"[1,2]", Style::Link).unwrap();
        c.push(b"[3]").unwrap();
        assert_eq!(c.finish(None), b"[1,2,3]");

        let mut c = Collection::first(b"[1]", Style::Link).unwrap();
        assert_eq!(
            c.push(br#"{"other":1}"#).unwrap_err().to_string(),
            "no item array to join (a JSON array, or `results` or `data`)"
        );
        let mut c = Collection::first(br#"{"results":[1]}"#, Style::Drf).unwrap();
        assert_eq!(
            c.push(br#"{"data":[2]}"#).unwrap_err().to_string(),
            "no `results` array to join"
        );
        assert_eq!(
            Collection::first(br#"{"results":[1]}"#, Style::JsonApi)
                .err()
                .map(|e| e.to_string()),
            Some("no `data` array to join".to_owned())
        );
        assert_eq!(
            c.push(b"[3").unwrap_err().to_string(),
            serde_json::from_slice::<Value>(b"[3")
                .unwrap_err()
                .to_string()
        );
    }
}
