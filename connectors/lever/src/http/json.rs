//! [`Doc`]: a response body parsed into a borrowed JSON DOM (`serde_json_borrow::Value`),
//! with one exact-size allocation per object and array.
//!
//! `serde_json_borrow`'s own deserializer pushes each object's fields into a vector that
//! starts empty (serde_json gives no size hint), so a 20-field object reallocates four
//! times; in the throughput benchmark that growth was about a third of all JSON parsing.
//! [`Doc::parse`] instead collects the fields and elements of every object and array being
//! parsed on one scratch stack per document, and moves each into a vector of exactly its
//! size when it ends. The result is the same `Value` tree. Anything this parser does not
//! take (an object key with escape sequences, which cannot borrow from the body) is parsed
//! again by `serde_json_borrow`'s deserializer, so both accept and reject the same input.

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json_borrow::{Number, ObjectAsVec, Value};
use std::borrow::Cow;
use std::fmt;

self_cell::self_cell!(
    /// A parsed response body: its text and the DOM whose strings borrow from it.
    pub(crate) struct Doc {
        owner: String,
        #[covariant]
        dependent: Value,
    }
    impl {Debug}
);

impl Doc {
    /// Parses a body (UTF-8 JSON); the error says why it is not JSON.
    pub(crate) fn parse(body: &[u8]) -> Result<Doc, String> {
        let text = std::str::from_utf8(body)
            .map_err(|e| format!("not UTF-8: {e}"))?
            .to_owned();
        Doc::try_new(text, |text| {
            parse_stacked(text).or_else(|_| serde_json::from_str::<Value<'_>>(text))
        })
        .map_err(|e| e.to_string())
    }

    /// The parsed value.
    pub(crate) fn value(&self) -> &Value<'_> {
        self.borrow_dependent()
    }
}

/// Parses `text` with the scratch-stack visitor.
fn parse_stacked(text: &str) -> Result<Value<'_>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let mut scratch = Scratch::default();
    let value = Node {
        scratch: &mut scratch,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// Fields and elements of the objects and arrays still open, innermost last.
#[derive(Default)]
struct Scratch<'de> {
    fields: Vec<(&'de str, Value<'de>)>,
    elements: Vec<Value<'de>>,
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
        Ok(Value::Array(scratch.elements.drain(start..).collect()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value<'de>, A::Error> {
        let scratch = self.scratch;
        let start = scratch.fields.len();
        // A key with escape sequences cannot be borrowed: an error here, and `Doc::parse`
        // parses the body again with `serde_json_borrow`'s own deserializer.
        while let Some(key) = map.next_key::<&'de str>()? {
            let v = map.next_value_seed(Node {
                scratch: &mut *scratch,
            })?;
            scratch.fields.push((key, v));
        }
        Ok(Value::Object(ObjectAsVec::from_iter(
            scratch.fields.drain(start..),
        )))
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
            let stacked = parse_stacked(text).unwrap();
            assert_eq!(stacked, reference(text).unwrap(), "{text}");
            let doc = Doc::parse(text.as_bytes()).unwrap();
            assert_eq!(doc.value(), &reference(text).unwrap(), "{text}");
        }
    }

    #[test]
    fn escaped_keys_fall_back_to_serde_json_borrow() {
        let text = r#"{"plain": 1, "quo\"ted": {"inner\u00e9": [1, 2]}}"#;
        assert!(parse_stacked(text).is_err());
        let doc = Doc::parse(text.as_bytes()).unwrap();
        assert_eq!(doc.value(), &reference(text).unwrap());
        let obj = doc.value().as_object().unwrap();
        assert!(obj.get("quo\"ted").is_some());
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
        ] {
            assert!(Doc::parse(bad).is_err(), "{bad:?}");
        }
    }
}
