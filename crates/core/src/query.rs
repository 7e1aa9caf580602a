//! The query Kamailio sends (SPEC §2), parsed leniently and without copying.
//!
//! Every field is optional and unknown fields are ignored, because Kamailio's
//! `jansson_set` silently leaves out a key whose value is `$null`, and script
//! idioms send `"<null>"` instead. Strings borrow from the request body
//! (`Cow`), so the hot path allocates only when a string has JSON escapes.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

/// Largest accepted query body, in bytes (SPEC §2).
pub const MAX_BODY: usize = 64 * 1024;

/// One routing query, as received.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct Query<'a> {
    /// `"sip-routing"`; informative only.
    #[serde(
        borrow,
        default,
        deserialize_with = "opt_str",
        skip_serializing_if = "Option::is_none"
    )]
    pub event: Option<Cow<'a, str>>,
    /// IPv4 or IPv6 address the SIP request came from.
    #[serde(
        borrow,
        default,
        deserialize_with = "opt_str",
        skip_serializing_if = "Option::is_none"
    )]
    pub source_ip: Option<Cow<'a, str>>,
    /// Its port.
    #[serde(
        default,
        deserialize_with = "port",
        skip_serializing_if = "Option::is_none"
    )]
    pub source_port: Option<u16>,
    /// `udp`, `tcp`, `tls`, `ws`, `wss` or `sctp`, any case.
    #[serde(
        borrow,
        default,
        deserialize_with = "opt_str",
        skip_serializing_if = "Option::is_none"
    )]
    pub transport: Option<Cow<'a, str>>,
    /// Whether Kamailio authenticated the caller (absent counts as false).
    #[serde(
        default,
        deserialize_with = "flag",
        skip_serializing_if = "Option::is_none"
    )]
    pub auth: Option<bool>,
    /// Call-ID; also seeds the gateway order.
    #[serde(
        borrow,
        default,
        deserialize_with = "opt_str",
        skip_serializing_if = "Option::is_none"
    )]
    pub call_id: Option<Cow<'a, str>>,
    /// From display name.
    #[serde(
        borrow,
        default,
        deserialize_with = "opt_str",
        skip_serializing_if = "Option::is_none"
    )]
    pub from_name: Option<Cow<'a, str>>,
    /// From URI.
    #[serde(
        borrow,
        default,
        deserialize_with = "opt_str",
        skip_serializing_if = "Option::is_none"
    )]
    pub from_uri: Option<Cow<'a, str>>,
    /// From tag.
    #[serde(
        borrow,
        default,
        deserialize_with = "opt_str",
        skip_serializing_if = "Option::is_none"
    )]
    pub from_tag: Option<Cow<'a, str>>,
    /// To display name.
    #[serde(
        borrow,
        default,
        deserialize_with = "opt_str",
        skip_serializing_if = "Option::is_none"
    )]
    pub to_name: Option<Cow<'a, str>>,
    /// To URI.
    #[serde(
        borrow,
        default,
        deserialize_with = "opt_str",
        skip_serializing_if = "Option::is_none"
    )]
    pub to_uri: Option<Cow<'a, str>>,
    /// To tag.
    #[serde(
        borrow,
        default,
        deserialize_with = "opt_str",
        skip_serializing_if = "Option::is_none"
    )]
    pub to_tag: Option<Cow<'a, str>>,
    /// The Request-URI.
    #[serde(
        borrow,
        default,
        deserialize_with = "opt_str",
        skip_serializing_if = "Option::is_none"
    )]
    pub ruri: Option<Cow<'a, str>>,
    /// SIP method.
    #[serde(
        borrow,
        default,
        deserialize_with = "opt_str",
        skip_serializing_if = "Option::is_none"
    )]
    pub method: Option<Cow<'a, str>>,
}

/// Why a query body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// Larger than [`MAX_BODY`].
    #[error("query body is {0} bytes; at most {MAX_BODY} are accepted")]
    TooLarge(usize),
    /// Not a JSON object with the expected field types.
    #[error("invalid JSON query: {0}")]
    Json(String),
    /// Not valid form data.
    #[error("invalid form query: {0}")]
    Form(String),
}

/// Whether a POST body is form data (`application/x-www-form-urlencoded`)
/// rather than JSON: its content type says form, and it is not plainly a
/// JSON object. libcurl labels any POST without a Content-Type as form
/// data, so a Kamailio script that forgets the header sends JSON labelled
/// as a form; a body opening with `{` is never meaningful form data. The
/// rule for every body `c4route serve` reads (queries and reports alike).
pub fn is_form_body(body: &[u8], content_type: Option<&str>) -> bool {
    let is_form = content_type.is_some_and(|ct| {
        ct.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    });
    let looks_json = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    is_form && !looks_json
}

impl<'a> Query<'a> {
    /// Parses a body by content type: `application/x-www-form-urlencoded` as
    /// form data (unless the body is plainly a JSON object), anything else
    /// (or none) as JSON (SPEC §2).
    ///
    /// # Errors
    /// [`QueryError`] when the body is too large or malformed.
    pub fn parse(body: &'a [u8], content_type: Option<&str>) -> Result<Self, QueryError> {
        if is_form_body(body, content_type) {
            Self::from_form(body)
        } else {
            Self::from_json(body)
        }
    }

    /// Parses a JSON object.
    ///
    /// # Errors
    /// [`QueryError`] when the body is too large, not a JSON object, has a
    /// field of the wrong type, or a duplicate field.
    pub fn from_json(body: &'a [u8]) -> Result<Self, QueryError> {
        if body.len() > MAX_BODY {
            return Err(QueryError::TooLarge(body.len()));
        }
        let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
        // serde would also read a struct from a JSON array; a query is an object.
        if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(QueryError::Json("expected a JSON object".into()));
        }
        let mut q: Query<'a> =
            serde_json::from_slice(body).map_err(|e| QueryError::Json(e.to_string()))?;
        q.clean();
        Ok(q)
    }

    /// Parses `key=value&…` form data with the same keys as the JSON object.
    ///
    /// # Errors
    /// [`QueryError`] when the body is too large, not UTF-8, or a port or
    /// `auth` value is not a number.
    pub fn from_form(body: &'a [u8]) -> Result<Self, QueryError> {
        if body.len() > MAX_BODY {
            return Err(QueryError::TooLarge(body.len()));
        }
        let text =
            std::str::from_utf8(body).map_err(|e| QueryError::Form(format!("not UTF-8: {e}")))?;
        let mut q = Query::default();
        // `+` is a space, `%XX` decoded, invalid UTF-8 replaced; a pair
        // without `=` has an empty value; values borrow when not encoded.
        let pairs = form_urlencoded::parse(text.trim_end_matches(['\r', '\n']).as_bytes());
        for (k, v) in pairs {
            let slot = match &*k {
                "event" => &mut q.event,
                "source_ip" => &mut q.source_ip,
                "transport" => &mut q.transport,
                "call_id" => &mut q.call_id,
                "from_name" => &mut q.from_name,
                "from_uri" => &mut q.from_uri,
                "from_tag" => &mut q.from_tag,
                "to_name" => &mut q.to_name,
                "to_uri" => &mut q.to_uri,
                "to_tag" => &mut q.to_tag,
                "ruri" => &mut q.ruri,
                "method" => &mut q.method,
                "source_port" => {
                    q.source_port =
                        parse_port_str(&v).map_err(|e| QueryError::Form(e.to_string()))?;
                    continue;
                }
                "auth" => {
                    q.auth = parse_flag_str(&v).map_err(|e| QueryError::Form(e.to_string()))?;
                    continue;
                }
                _ => continue,
            };
            *slot = Some(v);
        }
        q.clean();
        Ok(q)
    }

    /// Turns `"<null>"` and empty strings into absent fields.
    fn clean(&mut self) {
        for f in [
            &mut self.event,
            &mut self.source_ip,
            &mut self.transport,
            &mut self.call_id,
            &mut self.from_name,
            &mut self.from_uri,
            &mut self.from_tag,
            &mut self.to_name,
            &mut self.to_uri,
            &mut self.to_tag,
            &mut self.ruri,
            &mut self.method,
        ] {
            if f.as_deref().is_some_and(|s| s.is_empty() || s == "<null>") {
                *f = None;
            }
        }
    }

    /// An owned copy, independent of the body it was parsed from.
    pub fn into_owned(self) -> Query<'static> {
        fn own(c: Option<Cow<'_, str>>) -> Option<Cow<'static, str>> {
            c.map(|c| Cow::Owned(c.into_owned()))
        }
        Query {
            event: own(self.event),
            source_ip: own(self.source_ip),
            source_port: self.source_port,
            transport: own(self.transport),
            auth: self.auth,
            call_id: own(self.call_id),
            from_name: own(self.from_name),
            from_uri: own(self.from_uri),
            from_tag: own(self.from_tag),
            to_name: own(self.to_name),
            to_uri: own(self.to_uri),
            to_tag: own(self.to_tag),
            ruri: own(self.ruri),
            method: own(self.method),
        }
    }
}

/// A query field of the wrong shape.
#[derive(Debug, thiserror::Error)]
enum FieldError {
    #[error("source_port: expected a port number 0..=65535, found {0:?}")]
    Port(String),
    #[error("source_port {0} is out of range 0..=65535")]
    PortRange(i128),
    #[error("auth: expected 0, 1, true or false, found {0:?}")]
    Auth(String),
    #[error("auth: expected 0 or 1, found {0}")]
    AuthInt(i128),
}

fn parse_port_str(s: &str) -> Result<Option<u16>, FieldError> {
    let s = s.trim();
    if s.is_empty() || s == "<null>" {
        return Ok(None);
    }
    s.parse::<u16>()
        .map(Some)
        .map_err(|_| FieldError::Port(s.to_owned()))
}

fn parse_flag_str(s: &str) -> Result<Option<bool>, FieldError> {
    match s.trim() {
        "" | "<null>" => Ok(None),
        "1" | "true" => Ok(Some(true)),
        "0" | "false" => Ok(Some(false)),
        other => Err(FieldError::Auth(other.to_owned())),
    }
}

/// Borrows the string from the body when it has no escapes (serde's own
/// `Option<Cow<str>>` always copies).
fn opt_str<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'a, str>>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(v)))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_owned())))
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v)))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_str(self)
        }
    }
    d.deserialize_option(V)
}

/// A field that may arrive as a JSON integer, a decimal string, or (for
/// `auth`) a boolean; `null` means absent.
struct Lenient<T> {
    expecting: &'static str,
    from_int: fn(i128) -> Result<Option<T>, FieldError>,
    from_str: fn(&str) -> Result<Option<T>, FieldError>,
    from_bool: Option<fn(bool) -> T>,
}

impl<'de, T> Visitor<'de> for Lenient<T> {
    type Value = Option<T>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        match self.from_bool {
            Some(f) => Ok(Some(f(v))),
            None => Err(E::invalid_type(de::Unexpected::Bool(v), &self)),
        }
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        (self.from_int)(i128::from(v)).map_err(E::custom)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        (self.from_int)(i128::from(v)).map_err(E::custom)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        (self.from_str)(v).map_err(E::custom)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

fn port<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    d.deserialize_any(Lenient {
        expecting: "a port number 0..=65535 (integer or decimal string)",
        from_int: |v| {
            u16::try_from(v)
                .map(Some)
                .map_err(|_| FieldError::PortRange(v))
        },
        from_str: parse_port_str,
        from_bool: None,
    })
}

fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    d.deserialize_any(Lenient {
        expecting: "0, 1, true or false",
        from_int: |v| match v {
            0 => Ok(Some(false)),
            1 => Ok(Some(true)),
            _ => Err(FieldError::AuthInt(v)),
        },
        from_str: parse_flag_str,
        from_bool: Some(|b| b),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_with_strings_for_integers_and_nulls() {
        let q = Query::from_json(
            br#"{"source_ip":"10.0.0.1","source_port":"5060","auth":"1","from_name":"<null>","to_tag":null,"x":[1]}"#,
        )
        .unwrap();
        assert_eq!(q.source_port, Some(5060));
        assert_eq!(q.auth, Some(true));
        assert_eq!(q.from_name, None);
        assert_eq!(q.to_tag, None);
        assert!(matches!(q.source_ip, Some(Cow::Borrowed("10.0.0.1"))));
    }

    #[test]
    fn bad_json_is_an_error_not_a_panic() {
        for body in [
            &b""[..],
            b"[]",
            b"42",
            b"{",
            b"{\"source_port\":70000}",
            b"{\"source_port\":\"x\"}",
            b"{\"auth\":2}",
            b"{\"from_uri\":5}",
            b"{\"call_id\":\"a\",\"call_id\":\"b\"}",
            b"\xff\xfe",
        ] {
            assert!(Query::from_json(body).is_err(), "{body:?}");
        }
        let big = vec![b' '; MAX_BODY + 1];
        assert_eq!(
            Query::from_json(&big),
            Err(QueryError::TooLarge(MAX_BODY + 1))
        );
    }

    #[test]
    fn form_bodies_decode_like_json() {
        let q = Query::parse(
            b"from_uri=sip%3Aalice%40example.com&from_name=Alice+Smith&source_port=5080&auth=0&unknown=1",
            Some("application/x-www-form-urlencoded; charset=utf-8"),
        )
        .unwrap();
        assert_eq!(q.from_uri.as_deref(), Some("sip:alice@example.com"));
        assert_eq!(q.from_name.as_deref(), Some("Alice Smith"));
        assert_eq!(q.source_port, Some(5080));
        assert_eq!(q.auth, Some(false));
        assert!(Query::from_form(b"source_port=abc").is_err());
        assert!(Query::parse(b"{}", Some("text/plain")).is_ok());
        let q = Query::parse(
            br#" {"source_port":5062}"#,
            Some("application/x-www-form-urlencoded"),
        )
        .unwrap();
        assert_eq!(q.source_port, Some(5062));
    }

    #[test]
    fn form_or_json_by_content_type_and_first_byte() {
        let form = Some("application/x-www-form-urlencoded");
        assert!(is_form_body(b"a=1", form));
        assert!(is_form_body(
            b"a=1",
            Some(" Application/X-WWW-Form-Urlencoded ; charset=utf-8")
        ));
        assert!(!is_form_body(b" \n{\"a\":1}", form));
        assert!(!is_form_body(b"a=1", Some("application/json")));
        assert!(!is_form_body(b"a=1", None));
        assert!(is_form_body(b"", form));
    }

    #[test]
    fn form_decoding_edge_cases() {
        let q = Query::from_form(
            b"from_uri=a%zz%2B+b%&to_uri=%ff%41&call_id=x=y&&method&from%5Fname=A+%22B%22&ruri=%e2%82%ac\r\n",
        )
        .unwrap();
        assert_eq!(q.from_uri.as_deref(), Some("a%zz+ b%"));
        assert_eq!(q.to_uri.as_deref(), Some("\u{fffd}A"));
        assert_eq!(q.call_id.as_deref(), Some("x=y"));
        assert_eq!(q.method, None);
        assert_eq!(q.from_name.as_deref(), Some("A \"B\""));
        assert_eq!(q.ruri.as_deref(), Some("\u{20ac}"));
        assert!(matches!(
            Query::from_form(b"call_id=plain").unwrap().call_id,
            Some(Cow::Borrowed("plain"))
        ));
        assert!(Query::from_form(b"call_id=\xff").is_err());
    }
}
