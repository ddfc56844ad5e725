//! A record's header fields: kept as the proxy captured them (the `HeaderMap` itself) and
//! turned into `[name, value]` pairs, credentials redacted, only when somebody reads or writes
//! the record — the traffic log's writer, the console's `/exchanges` and `/events`. Building
//! the pairs on every exchange cost ~9,000 instructions a request whether or not anybody ever
//! looked (issue 15). A record read back from a log holds the pairs it was written with.

use super::{header_pairs, CREDENTIAL_FIELDS, REDACTED};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;

/// The header fields of a request or a response in a [`super::TrafficRecord`].
#[derive(Clone, Debug)]
pub struct HeaderList(Repr);

#[derive(Clone, Debug)]
enum Repr {
    /// As the proxy saw them; `redact` says whether credentials are masked when shown.
    Captured { map: http::HeaderMap, redact: bool },
    /// As read back from a log (already redacted when it was written).
    Pairs(Vec<(String, String)>),
}

impl HeaderList {
    /// Fields the proxy captured, shown with credential values masked when `redact`.
    pub fn captured(map: http::HeaderMap, redact: bool) -> Self {
        HeaderList(Repr::Captured { map, redact })
    }

    pub fn is_empty(&self) -> bool {
        match &self.0 {
            Repr::Captured { map, .. } => map.is_empty(),
            Repr::Pairs(pairs) => pairs.is_empty(),
        }
    }

    /// The fields as `[name, value]` pairs in wire order, redacted (see [`header_pairs`]).
    pub fn pairs(&self) -> Cow<'_, [(String, String)]> {
        match &self.0 {
            Repr::Captured { map, redact } => Cow::Owned(header_pairs(map, *redact)),
            Repr::Pairs(pairs) => Cow::Borrowed(pairs),
        }
    }

    /// The first value of the field `name` (case-insensitive, RFC 9110 §5.1), as shown.
    pub fn get(&self, name: &str) -> Option<Cow<'_, str>> {
        match &self.0 {
            Repr::Captured { map, redact } => {
                let (name, value) = map
                    .iter()
                    .find(|(n, _)| n.as_str().eq_ignore_ascii_case(name))?;
                Some(shown(name, value, *redact))
            }
            Repr::Pairs(pairs) => pairs
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| Cow::Borrowed(v.as_str())),
        }
    }
}

/// A captured value as a record shows it: masked when it is a credential and `redact`, lossy
/// UTF-8 otherwise (a record is for reading).
pub(super) fn shown<'a>(
    name: &http::HeaderName,
    value: &'a http::HeaderValue,
    redact: bool,
) -> Cow<'a, str> {
    if redact && CREDENTIAL_FIELDS.contains(name) {
        Cow::Borrowed(REDACTED)
    } else {
        String::from_utf8_lossy(value.as_bytes())
    }
}

impl Default for HeaderList {
    fn default() -> Self {
        HeaderList(Repr::Pairs(Vec::new()))
    }
}

impl From<Vec<(String, String)>> for HeaderList {
    fn from(pairs: Vec<(String, String)>) -> Self {
        HeaderList(Repr::Pairs(pairs))
    }
}

/// Two lists are equal when they show the same pairs, however they are held.
impl PartialEq for HeaderList {
    fn eq(&self, other: &Self) -> bool {
        self.pairs() == other.pairs()
    }
}

/// Written as a JSON array of `[name, value]` arrays, straight from the map when captured.
impl Serialize for HeaderList {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Repr::Captured { map, redact } => {
                let mut seq = serializer.serialize_seq(Some(map.len()))?;
                for (name, value) in map {
                    seq.serialize_element(&(name.as_str(), shown(name, value, *redact)))?;
                }
                seq.end()
            }
            Repr::Pairs(pairs) => pairs.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for HeaderList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<(String, String)>::deserialize(deserializer).map(HeaderList::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{HeaderMap, HeaderValue};

    fn map() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.append("host", HeaderValue::from_static("a.test"));
        h.append("authorization", HeaderValue::from_static("Bearer s3cret"));
        h.append("set-cookie", HeaderValue::from_static("a=1"));
        h.append("set-cookie", HeaderValue::from_static("b=2"));
        h.append("x-bytes", HeaderValue::from_bytes(b"caf\xe9").unwrap());
        h
    }

    #[test]
    fn captured_fields_serialize_as_the_pairs_would() {
        for redact in [true, false] {
            let list = HeaderList::captured(map(), redact);
            let direct = serde_json::to_value(&list).unwrap();
            let via_pairs = serde_json::to_value(header_pairs(&map(), redact)).unwrap();
            assert_eq!(direct, via_pairs, "redact={redact}");
            assert_eq!(
                list.pairs().as_ref(),
                header_pairs(&map(), redact).as_slice()
            );
        }
    }

    #[test]
    fn a_written_list_reads_back_equal() {
        let list = HeaderList::captured(map(), true);
        let text = serde_json::to_string(&list).unwrap();
        let back: HeaderList = serde_json::from_str(&text).unwrap();
        assert_eq!(back, list);
        assert!(matches!(back.0, Repr::Pairs(_)));
    }

    #[test]
    fn get_finds_the_first_value_case_insensitively_and_redacts() {
        let captured = HeaderList::captured(map(), true);
        let read: HeaderList = header_pairs(&map(), true).into();
        for list in [&captured, &read] {
            assert_eq!(list.get("HOST").as_deref(), Some("a.test"));
            assert_eq!(list.get("Authorization").as_deref(), Some(REDACTED));
            assert_eq!(list.get("set-cookie").as_deref(), Some(REDACTED));
            assert_eq!(list.get("x-bytes").as_deref(), Some("caf\u{fffd}"));
            assert_eq!(list.get("location"), None);
        }
        let open = HeaderList::captured(map(), false);
        assert_eq!(open.get("set-cookie").as_deref(), Some("a=1"));
    }

    #[test]
    fn empty_lists() {
        assert!(HeaderList::default().is_empty());
        assert!(HeaderList::captured(HeaderMap::new(), true).is_empty());
        assert!(!HeaderList::captured(map(), true).is_empty());
        assert_eq!(serde_json::to_string(&HeaderList::default()).unwrap(), "[]");
    }
}
