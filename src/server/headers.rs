//! The request headers `POST /dispatch` reads: `Content-Type` and
//! `Content-Encoding` (415 unless plain JSON), `Idempotency-Key` and
//! `X-Request-Timeout-Ms` (400 when present and malformed).

use http::header::{HeaderMap, CONTENT_ENCODING, CONTENT_TYPE};

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
pub const REQUEST_TIMEOUT_MS: &str = "x-request-timeout-ms";
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

/// The longest idempotency key.
pub const MAX_KEY_LEN: usize = 255;

/// A malformed header; the message goes into the problem's `detail`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadHeader {
    #[error("Idempotency-Key must be 1 to 255 characters in 0x21-0x7E (or that, quoted as a structured-field string)")]
    IdempotencyKey,
    #[error("Idempotency-Key may be given once")]
    IdempotencyKeyRepeated,
    #[error("X-Request-Timeout-Ms must be an integer from 1 to {max}")]
    Timeout { max: u64 },
    #[error("X-Request-Timeout-Ms may be given once")]
    TimeoutRepeated,
}

/// Whether the body is declared as JSON: `application/json`, in any case,
/// with or without parameters (such as `charset=utf-8`).
pub fn is_json(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(CONTENT_TYPE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return false;
    };
    let Ok(text) = value.to_str() else {
        return false;
    };
    let essence = text.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// Whether the body is sent as it is: no `Content-Encoding`, or only
/// `identity`. The server decodes no content coding (RFC 9110 §8.4: a
/// coding it does not accept is a 415).
pub fn is_unencoded(headers: &HeaderMap) -> bool {
    headers.get_all(CONTENT_ENCODING).iter().all(|value| {
        value.to_str().is_ok_and(|text| {
            text.split(',')
                .map(str::trim)
                .all(|coding| coding.is_empty() || coding.eq_ignore_ascii_case("identity"))
        })
    })
}

/// The idempotency key, if one was sent. The quoted structured-field string
/// form (`"abc"`, with `\"` and `\\` escapes) names the same key as `abc`.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, BadHeader> {
    let Some(value) = single(headers, IDEMPOTENCY_KEY, BadHeader::IdempotencyKeyRepeated)? else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| BadHeader::IdempotencyKey)?;
    let key = match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(inner) if text.len() >= 2 => unquote(inner).ok_or(BadHeader::IdempotencyKey)?,
        _ => text.to_owned(),
    };
    let printable = key.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if key.is_empty() || key.len() > MAX_KEY_LEN || !printable {
        return Err(BadHeader::IdempotencyKey);
    }
    Ok(Some(key))
}

/// The inside of an RFC 8941 string: only `\"` and `\\` are escapes, and a
/// bare `"` cannot appear.
fn unquote(inner: &str) -> Option<String> {
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next()? {
                e @ ('"' | '\\') => out.push(e),
                _ => return None,
            },
            '"' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

/// The client's deadline in milliseconds, if it sent one.
pub fn request_timeout_ms(headers: &HeaderMap, max: u64) -> Result<Option<u64>, BadHeader> {
    let Some(value) = single(headers, REQUEST_TIMEOUT_MS, BadHeader::TimeoutRepeated)? else {
        return Ok(None);
    };
    let bad = BadHeader::Timeout { max };
    let text = value.to_str().map_err(|_| bad.clone())?.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad);
    }
    match text.parse::<u64>() {
        Ok(ms) if (1..=max).contains(&ms) => Ok(Some(ms)),
        _ => Err(bad),
    }
}

fn single<'a>(
    headers: &'a HeaderMap,
    name: &str,
    repeated: BadHeader,
) -> Result<Option<&'a http::HeaderValue>, BadHeader> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(v), None) => Ok(Some(v)),
        (Some(_), Some(_)) => Err(repeated),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with(name: &'static str, values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(name, HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    fn key(value: &[u8]) -> Result<Option<String>, BadHeader> {
        idempotency_key(&with(IDEMPOTENCY_KEY, &[value]))
    }

    #[test]
    fn content_encoding_may_only_be_identity() {
        assert!(is_unencoded(&HeaderMap::new()));
        for ok in [&b"identity"[..], b"Identity", b"identity, identity", b""] {
            assert!(is_unencoded(&with("content-encoding", &[ok])), "{ok:?}");
        }
        for bad in [&b"gzip"[..], b"identity, gzip", b"br", b"\xff"] {
            assert!(!is_unencoded(&with("content-encoding", &[bad])), "{bad:?}");
        }
        assert!(!is_unencoded(&with(
            "content-encoding",
            &[b"identity", b"deflate"]
        )));
    }

    #[test]
    fn content_type_must_be_json() {
        for ok in [
            &b"application/json"[..],
            b"Application/JSON",
            b"application/json; charset=utf-8",
            b" application/json ;charset=UTF-8",
        ] {
            assert!(is_json(&with("content-type", &[ok])), "{ok:?}");
        }
        for bad in [
            &b"text/plain"[..],
            b"application/jsonx",
            b"application/problem+json",
            b"",
        ] {
            assert!(!is_json(&with("content-type", &[bad])), "{bad:?}");
        }
        assert!(!is_json(&HeaderMap::new()));
        assert!(!is_json(&with(
            "content-type",
            &[b"application/json", b"application/json"]
        )));
    }

    #[test]
    fn keys_plain_and_quoted() {
        assert_eq!(idempotency_key(&HeaderMap::new()), Ok(None));
        assert_eq!(key(b"abc"), Ok(Some("abc".into())));
        assert_eq!(key(b"\"abc\""), Ok(Some("abc".into())));
        assert_eq!(key(br#""a\"b\\c""#), Ok(Some(r#"a"b\c"#.into())));
        assert_eq!(key(b"\""), Ok(Some("\"".into())));
        assert_eq!(key(b"a\"b"), Ok(Some("a\"b".into())));
        let longest = "k".repeat(255);
        assert_eq!(key(longest.as_bytes()), Ok(Some(longest.clone())));
        assert_eq!(key(format!("\"{longest}\"").as_bytes()), Ok(Some(longest)));
    }

    #[test]
    fn bad_keys() {
        for bad in [
            &b""[..],
            b"\"\"",
            b"has space",
            b"tab\there",
            "caf\u{e9}".as_bytes(),
            b"\"a\\x\"",
            b"\"a\"b\"",
            b"\"a b\"",
        ] {
            assert_eq!(key(bad), Err(BadHeader::IdempotencyKey), "{bad:?}");
        }
        assert_eq!(
            key("k".repeat(256).as_bytes()),
            Err(BadHeader::IdempotencyKey)
        );
        assert_eq!(
            idempotency_key(&with(IDEMPOTENCY_KEY, &[b"a", b"b"])),
            Err(BadHeader::IdempotencyKeyRepeated)
        );
    }

    #[test]
    fn timeouts() {
        let t = |v: &[u8]| request_timeout_ms(&with(REQUEST_TIMEOUT_MS, &[v]), 30_000);
        assert_eq!(request_timeout_ms(&HeaderMap::new(), 10), Ok(None));
        assert_eq!(t(b"1"), Ok(Some(1)));
        assert_eq!(t(b"30000"), Ok(Some(30_000)));
        for bad in [
            &b"0"[..],
            b"30001",
            b"-1",
            b"+5",
            b"1.5",
            b"1e3",
            b"abc",
            b"",
            b"99999999999999999999999",
        ] {
            assert!(t(bad).is_err(), "{bad:?}");
        }
    }
}
