//! [`Doc`]: a response body parsed into a borrowed JSON DOM (`serde_json_borrow::Value`),
//! with one exact-size allocation per object and array.
//!
//! `serde_json_borrow`'s own deserializer pushes each object's fields into a vector that
//! starts empty (serde_json gives no size hint), so a 20-field object reallocates four
//! times; in the throughput benchmark that growth was about a third of all JSON parsing.
//! [`Doc::parse`] instead collects the fields and elements of every object and array being
//! parsed on one scratch stack per document, and moves each into a vector of exactly its
//! size when it ends. The crate is built without its `cowkeys` feature, so object keys are
//! plain `&str` borrowed from the body and a finished object is moved as it is, with no
//! per-key conversion.
//!
//! A key with escape sequences (`"caf\u00e9"`) cannot borrow from the body. When a body has
//! such keys, it is parsed twice: a first pass unescapes them, in document order, into the
//! [`Body`] that owns the text; the second pass borrows each of them from there as it meets
//! it. Bodies without such keys (all of Lever's) are parsed once.

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json_borrow::{Number, ObjectAsVec, Value};
use std::borrow::Cow;
use std::fmt;

/// What a [`Doc`] owns: the body's text, and the object keys of the body that have escape
/// sequences, unescaped, in the order the parser meets them (usually none).
#[derive(Debug)]
pub(crate) struct Body {
    text: String,
    escaped_keys: Vec<String>,
}

self_cell::self_cell!(
    /// A parsed response body: its text and the DOM whose strings borrow from it.
    pub(crate) struct Doc {
        owner: Body,
        #[covariant]
        dependent: Value,
    }
    impl {Debug}
);

impl Doc {
    /// Parses a body (UTF-8 JSON); the error says why it is not JSON.
    pub(crate) fn parse(body: &[u8]) -> Result<Doc, String> {
        let text = std::str::from_utf8(body).map_err(|e| format!("not UTF-8: {e}"))?;
        Doc::parse_text(text.to_owned())
    }

    /// [`Doc::parse`] of a response body, taking its buffer when no one else holds it (a
    /// body read in several chunks is one such buffer) instead of copying it.
    pub(crate) fn parse_bytes(body: bytes::Bytes) -> Result<Doc, String> {
        let text = String::from_utf8(Vec::from(body))
            .map_err(|e| format!("not UTF-8: {}", e.utf8_error()))?;
        Doc::parse_text(text)
    }

    fn parse_text(text: String) -> Result<Doc, String> {
        let owner = Body {
            text,
            escaped_keys: Vec::new(),
        };
        let first = Doc::try_new_or_recover(owner, |b| parse_stacked(&b.text, &b.escaped_keys));
        let (mut owner, err) = match first {
            Ok(doc) => return Ok(doc),
            Err(recovered) => recovered,
        };
        // Either not JSON, or a key with escape sequences: the first pass tells which.
        owner.escaped_keys = escaped_keys(&owner.text).map_err(|e| e.to_string())?;
        if owner.escaped_keys.is_empty() {
            return Err(err.to_string());
        }
        Doc::try_new(owner, |b| parse_stacked(&b.text, &b.escaped_keys)).map_err(|e| e.to_string())
    }

    /// The parsed value.
    pub(crate) fn value(&self) -> &Value<'_> {
        self.borrow_dependent()
    }
}

/// Parses `text` with the scratch-stack visitor; keys with escape sequences are taken, in
/// order, from `escaped_keys` (an error when there are more of them than that).
fn parse_stacked<'de>(
    text: &'de str,
    escaped_keys: &'de [String],
) -> Result<Value<'de>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let mut scratch = Scratch {
        fields: Vec::new(),
        elements: Vec::new(),
        escaped_keys,
        next_escaped: 0,
    };
    let value = Node {
        scratch: &mut scratch,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// The first pass over a body with escaped keys: validates it as JSON and returns those keys,
/// unescaped, in document order.
fn escaped_keys(text: &str) -> Result<Vec<String>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let mut keys = Vec::new();
    CollectKeys { keys: &mut keys }.deserialize(&mut de)?;
    de.end()?;
    Ok(keys)
}

/// Fields and elements of the objects and arrays still open, innermost last.
struct Scratch<'de> {
    fields: Vec<(&'de str, Value<'de>)>,
    elements: Vec<Value<'de>>,
    /// Unescaped keys (see [`escaped_keys`]), and how many of them were used so far.
    escaped_keys: &'de [String],
    next_escaped: usize,
}

/// The elements of `stack` from `start` on, moved into a vector of exactly their number.
fn take_from<T>(stack: &mut Vec<T>, start: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(stack.len() - start);
    out.extend(stack.drain(start..));
    out
}

/// Deserializes one JSON value, using the document's scratch stack.
struct Node<'s, 'de> {
    scratch: &'s mut Scratch<'de>,
}

impl<'de> DeserializeSeed<'de> for Node<'_, 'de> {
    type Value = Value<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_, 'de> {
    type Value = Value<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value<'de>, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value<'de>, E> {
        Ok(Value::Number(Number::from(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value<'de>, E> {
        Ok(Value::Number(Number::from(v)))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value<'de>, E> {
        Ok(Value::Number(Number::from(v)))
    }

    fn visit_unit<E>(self) -> Result<Value<'de>, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value<'de>, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value<'de>, D::Error> {
        self.deserialize(d)
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Value<'de>, E> {
        Ok(Value::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value<'de>, E> {
        Ok(Value::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Value<'de>, E> {
        Ok(Value::Str(Cow::Owned(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value<'de>, A::Error> {
        let scratch = self.scratch;
        let start = scratch.elements.len();
        while let Some(v) = seq.next_element_seed(Node {
            scratch: &mut *scratch,
        })? {
            scratch.elements.push(v);
        }
        Ok(Value::Array(take_from(&mut scratch.elements, start)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value<'de>, A::Error> {
        let scratch = self.scratch;
        let start = scratch.fields.len();
        while let Some(key) = map.next_key_seed(Key {
            escaped_keys: scratch.escaped_keys,
            next: &mut scratch.next_escaped,
        })? {
            let v = map.next_value_seed(Node {
                scratch: &mut *scratch,
            })?;
            scratch.fields.push((key, v));
        }
        Ok(Value::Object(ObjectAsVec::from(take_from(
            &mut scratch.fields,
            start,
        ))))
    }
}

/// Deserializes an object key as a `&str` of the body's lifetime: borrowed from the text, or,
/// when it has escape sequences, the next of the unescaped keys.
struct Key<'s, 'de> {
    escaped_keys: &'de [String],
    next: &'s mut usize,
}

impl<'de> DeserializeSeed<'de> for Key<'_, 'de> {
    type Value = &'de str;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<&'de str, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_, 'de> {
    type Value = &'de str;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<&'de str, E> {
        Ok(v)
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<&'de str, E> {
        match self.escaped_keys.get(*self.next) {
            Some(k) if k == v => {
                *self.next += 1;
                Ok(k.as_str())
            }
            _ => Err(E::custom("object key with escape sequences")),
        }
    }
}

/// The first pass of a body with escaped keys: walks every value, keeping those keys.
struct CollectKeys<'k> {
    keys: &'k mut Vec<String>,
}

impl<'de> DeserializeSeed<'de> for CollectKeys<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for CollectKeys<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(CollectKeys {
                keys: &mut *self.keys,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map
            .next_key_seed(EscapedKey {
                keys: &mut *self.keys,
            })?
            .is_some()
        {
            map.next_value_seed(CollectKeys {
                keys: &mut *self.keys,
            })?;
        }
        Ok(())
    }
}

/// An object key in the first pass: kept when it had escape sequences (not borrowable).
struct EscapedKey<'k> {
    keys: &'k mut Vec<String>,
}

impl<'de> DeserializeSeed<'de> for EscapedKey<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for EscapedKey<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, _: &'de str) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.keys.push(v.to_owned());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(text: &str) -> Result<Value<'_>, serde_json::Error> {
        serde_json::from_str::<Value<'_>>(text)
    }

    #[test]
    fn same_tree_as_serde_json_borrow() {
        let docs = [
            r#"{"data": [{"id": "a", "n": -3, "big": 18446744073709551615, "f": 1.5e3,
                "t": true, "f2": false, "z": null, "arr": [[], {}, [1, [2, {"k": "v"}]]],
                "esc": "line\nbreak \"quoted\" \u00e9", "uni": "été"}],
                "hasNext": false}"#,
            "[]",
            "{}",
            "\"just a string\"",
            "42",
            r#"[{"a": 1, "b": {"c": [true, null, "x"], "d": {}}, "e": []}, {"a": 2}]"#,
            r#"{"dup": 1, "dup": 2}"#,
        ];
        for text in docs {
            let stacked = parse_stacked(text, &[]).unwrap();
            assert_eq!(stacked, reference(text).unwrap(), "{text}");
            let doc = Doc::parse(text.as_bytes()).unwrap();
            assert_eq!(doc.value(), &reference(text).unwrap(), "{text}");
            let doc = Doc::parse_bytes(bytes::Bytes::copy_from_slice(text.as_bytes())).unwrap();
            assert_eq!(doc.value(), &reference(text).unwrap(), "{text}");
        }
    }

    #[test]
    fn escaped_keys_are_unescaped_in_a_second_pass() {
        let text = r#"{"plain": 1, "quo\"ted": {"inner\u00e9": [1, {"a\\b": 2, "c": 3}]},
            "x": [{"caf\u00e9": "v"}, {"caf\u00e9": "w"}]}"#;
        assert!(parse_stacked(text, &[]).is_err());
        assert_eq!(
            escaped_keys(text).unwrap(),
            ["quo\"ted", "inner\u{e9}", "a\\b", "caf\u{e9}", "caf\u{e9}"]
        );
        let doc = Doc::parse(text.as_bytes()).unwrap();
        let expected: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(serde_json::Value::from(doc.value()), expected);
        let obj = doc.value().as_object().unwrap();
        assert!(obj.get("quo\"ted").is_some());
        // A key list that does not match the body is an error, never a wrong key.
        let wrong = ["other".to_owned()];
        assert!(parse_stacked(text, &wrong).is_err());
    }

    #[test]
    fn invalid_bodies_are_errors() {
        for bad in [
            &b"{\"data\": [1, 2"[..],
            b"{\"a\": 1} trailing",
            b"",
            b"not json",
            b"\xff\xfe",
            b"{\"a\": \"\xff\"}",
            b"{\"\xc3\": 1}",
            b"{\"k\\u00e9\": [1, 2",
            b"{\"k\\u00e9\": 1} trailing",
        ] {
            assert!(Doc::parse(bad).is_err(), "{bad:?}");
            let owned = Doc::parse_bytes(bytes::Bytes::copy_from_slice(bad));
            assert_eq!(owned.unwrap_err(), Doc::parse(bad).unwrap_err(), "{bad:?}");
        }
    }
}
