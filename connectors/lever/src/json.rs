//! [`Doc`]: a response body parsed into a flat tape of JSON nodes, and [`Value`], a handle to
//! one node that reads like a JSON value.
//!
//! Parsing is `simd-json`'s tape parser (SIMD structural indexing, chosen at run time for the
//! CPU; no allocation per object or array). Its tape borrows a scratch copy of the body that
//! it unescapes in place, so it cannot outlive the parse; [`Doc::parse`] translates it at once
//! into nodes whose strings borrow from the body itself (strings without escape sequences,
//! nearly all of them) or index a side table of unescaped strings. `self_cell` keeps the body
//! and the nodes borrowing from it together (the workspace forbids `unsafe`). A document is
//! then three allocations, whatever its shape: the body, the nodes, and the (usually empty)
//! side table.
//!
//! The tape lists each container's node before its children and records where it ends, so a
//! reader skips a whole nested value in one step; [`Object::get`] is a linear scan over keys.

use std::cell::RefCell;
use std::fmt;

/// How deep arrays and objects may nest (serde_json's own default limit, kept so that the
/// recursive conversions of a value, such as [`Value::to_serde`], stay bounded).
const MAX_DEPTH: usize = 128;

/// One node of a document's tape.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Node<'a> {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    /// A string without escape sequences, borrowed from the body.
    Str(&'a str),
    /// A string with escape sequences: entry `n` of [`Tape::escaped`].
    Escaped(u32),
    /// An array of `len` elements; its nodes end before node `end`.
    Array {
        len: u32,
        end: u32,
    },
    /// An object of `len` fields (a key node, then the value's nodes, per field); its nodes
    /// end before node `end`.
    Object {
        len: u32,
        end: u32,
    },
}

/// The parsed form of a body: its nodes, and the strings that had escape sequences.
#[derive(Debug)]
struct Tape<'a> {
    nodes: Vec<Node<'a>>,
    /// Strings with escape sequences, unescaped, in document order.
    escaped: Vec<String>,
}

self_cell::self_cell!(
    /// A parsed response body: its bytes and the tape whose strings borrow from them.
    pub(crate) struct Doc {
        owner: Vec<u8>,
        #[covariant]
        dependent: Tape,
    }
);

impl fmt::Debug for Doc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Doc")
            .field("bytes", &self.borrow_owner().len())
            .field("nodes", &self.borrow_dependent().nodes.len())
            .finish()
    }
}

thread_local! {
    /// The parser's scratch copy of the body and its buffers, reused by each parse on the
    /// thread.
    static SCRATCH: RefCell<(Vec<u8>, simd_json::Buffers)> = RefCell::new(Default::default());
}

impl Doc {
    /// Parses a body (UTF-8 JSON); the error says why it is not JSON. Used by tests and the
    /// decode benchmark (`demo` feature).
    #[cfg_attr(not(any(test, feature = "demo")), allow(dead_code))]
    pub(crate) fn parse(body: &[u8]) -> Result<Doc, String> {
        Doc::parse_vec(body.to_vec())
    }

    /// [`Doc::parse`] of a response body, taking its buffer when no one else holds it (a
    /// body read in several chunks is one such buffer) instead of copying it.
    pub(crate) fn parse_bytes(body: bytes::Bytes) -> Result<Doc, String> {
        Doc::parse_vec(Vec::from(body))
    }

    fn parse_vec(body: Vec<u8>) -> Result<Doc, String> {
        if u32::try_from(body.len()).is_err() {
            return Err(format!("body of {} bytes: over 4 GiB", body.len()));
        }
        Doc::try_new(body, |body| {
            // simdutf8: the same check as `std::str::from_utf8`, with SIMD. simd-json checks
            // UTF-8 too, but only this check gives a `&str` to borrow from without `unsafe`.
            let text = simdutf8::basic::from_utf8(body).map_err(|e| format!("not UTF-8: {e}"))?;
            SCRATCH.with(|scratch| {
                let mut scratch = scratch.borrow_mut();
                let (copy, buffers) = &mut *scratch;
                copy.clear();
                copy.extend_from_slice(body);
                let base = copy.as_ptr() as usize;
                let tape =
                    simd_json::to_tape_with_buffers(copy, buffers).map_err(|e| e.to_string())?;
                translate(&tape.0, text, base)
            })
        })
    }

    /// The document's root value.
    pub(crate) fn value(&self) -> Value<'_> {
        Value {
            tape: self.borrow_dependent(),
            at: 0,
        }
    }
}

impl<'a> Tape<'a> {
    /// The text of string node `at` (empty for any other node).
    #[inline]
    fn str_at(&self, at: usize) -> &str {
        match self.nodes[at] {
            Node::Str(s) => s,
            Node::Escaped(n) => self.escaped.get(n as usize).map_or("", String::as_str),
            _ => "",
        }
    }

    /// The node after the value starting at node `at` (skipping a container's children).
    #[inline]
    fn next(&self, at: usize) -> usize {
        match self.nodes[at] {
            Node::Array { end, .. } | Node::Object { end, .. } => end as usize,
            _ => at + 1,
        }
    }
}

/// Translates simd-json's tape into a [`Tape`] borrowing from `text`. `copy_base` is the
/// address of the scratch copy the tape's strings point into: a string whose bytes are those
/// at the same offset of `text` had no escape sequences and is borrowed from there; any other
/// goes to the side table.
fn translate<'a>(
    tape: &[simd_json::Node<'_>],
    text: &'a str,
    copy_base: usize,
) -> Result<Tape<'a>, String> {
    use simd_json::{Node as T, StaticNode as S};
    let mut nodes = Vec::with_capacity(tape.len());
    let mut escaped = Vec::new();
    // Where each open container ends, innermost last (for the depth limit).
    let mut open: Vec<usize> = Vec::new();
    let index = |n: usize| u32::try_from(n).map_err(|_| "JSON body with over 4 billion values");
    // Without a backslash in the body no string was unescaped, so the copy is the text and
    // every string's bytes are the text's at the same offset: the comparison can be skipped.
    let unescaped_somewhere = memchr::memchr(b'\\', text.as_bytes()).is_some();
    for (i, node) in tape.iter().enumerate() {
        while open.last() == Some(&i) {
            open.pop();
        }
        let node = match *node {
            T::Static(S::Null) => Node::Null,
            T::Static(S::Bool(b)) => Node::Bool(b),
            T::Static(S::I64(n)) => Node::Int(n),
            T::Static(S::U64(n)) => Node::UInt(n),
            T::Static(S::F64(f)) => Node::Float(f),
            T::String(s) => {
                let offset = (s.as_ptr() as usize).wrapping_sub(copy_base);
                let borrowed = offset
                    .checked_add(s.len())
                    .and_then(|end| text.get(offset..end))
                    .filter(|t| !unescaped_somewhere || *t == s);
                match borrowed {
                    Some(t) => Node::Str(t),
                    None => {
                        escaped.push(s.to_owned());
                        Node::Escaped(index(escaped.len() - 1)?)
                    }
                }
            }
            T::Array { len, count } | T::Object { len, count } => {
                let end = i + count + 1;
                open.push(end);
                if open.len() > MAX_DEPTH {
                    return Err(format!("arrays and objects nested over {MAX_DEPTH} deep"));
                }
                let (len, end) = (index(len)?, index(end)?);
                if matches!(node, T::Array { .. }) {
                    Node::Array { len, end }
                } else {
                    Node::Object { len, end }
                }
            }
        };
        nodes.push(node);
    }
    Ok(Tape { nodes, escaped })
}

/// A JSON number as parsed: an integer when it has neither fraction nor exponent and fits 64
/// bits, a float otherwise.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Number {
    /// A negative or small integer.
    Int(i64),
    /// An integer over `i64::MAX`.
    UInt(u64),
    /// Any other number.
    Float(f64),
}

impl Number {
    /// The number as an `i64` when it is an integer that fits.
    pub(crate) fn as_i64(self) -> Option<i64> {
        match self {
            Number::Int(n) => Some(n),
            Number::UInt(n) => i64::try_from(n).ok(),
            Number::Float(_) => None,
        }
    }

    /// The number as an `f64` (integers converted).
    pub(crate) fn as_f64(self) -> f64 {
        match self {
            Number::Int(n) => n as f64,
            Number::UInt(n) => n as f64,
            Number::Float(f) => f,
        }
    }

    /// Whether the number was written as an integer.
    pub(crate) fn is_integer(self) -> bool {
        !matches!(self, Number::Float(_))
    }
}

impl fmt::Display for Number {
    /// Rust's own formatting (`1.5`, `2`, `100000000000000000000`), as text columns hold it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Number::Int(n) => write!(f, "{n}"),
            Number::UInt(n) => write!(f, "{n}"),
            Number::Float(x) => write!(f, "{x}"),
        }
    }
}

/// A value of a [`Doc`]: copied freely, borrowing the document.
#[derive(Clone, Copy)]
pub(crate) struct Value<'a> {
    tape: &'a Tape<'a>,
    at: usize,
}

/// What a [`Value`] holds, for `match`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind<'a> {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number.
    Number(Number),
    /// A string.
    Str(&'a str),
    /// An array.
    Array(Array<'a>),
    /// An object.
    Object(Object<'a>),
}

impl<'a> Value<'a> {
    /// What the value holds.
    #[inline]
    pub(crate) fn kind(self) -> Kind<'a> {
        match self.tape.nodes[self.at] {
            Node::Null => Kind::Null,
            Node::Bool(b) => Kind::Bool(b),
            Node::Int(n) => Kind::Number(Number::Int(n)),
            Node::UInt(n) => Kind::Number(Number::UInt(n)),
            Node::Float(f) => Kind::Number(Number::Float(f)),
            Node::Str(_) | Node::Escaped(_) => Kind::Str(self.tape.str_at(self.at)),
            Node::Array { len, .. } => Kind::Array(Array {
                tape: self.tape,
                at: self.at,
                len: len as usize,
            }),
            Node::Object { len, .. } => Kind::Object(Object {
                tape: self.tape,
                at: self.at,
                len: len as usize,
            }),
        }
    }

    /// Whether the value is `null`.
    #[inline]
    pub(crate) fn is_null(self) -> bool {
        matches!(self.tape.nodes[self.at], Node::Null)
    }

    /// The text of a string.
    #[inline]
    pub(crate) fn as_str(self) -> Option<&'a str> {
        match self.tape.nodes[self.at] {
            Node::Str(_) | Node::Escaped(_) => Some(self.tape.str_at(self.at)),
            _ => None,
        }
    }

    /// A boolean.
    #[inline]
    pub(crate) fn as_bool(self) -> Option<bool> {
        match self.tape.nodes[self.at] {
            Node::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// A number.
    #[inline]
    pub(crate) fn as_number(self) -> Option<Number> {
        match self.kind() {
            Kind::Number(n) => Some(n),
            _ => None,
        }
    }

    /// An array.
    #[inline]
    pub(crate) fn as_array(self) -> Option<Array<'a>> {
        match self.kind() {
            Kind::Array(a) => Some(a),
            _ => None,
        }
    }

    /// An object.
    #[inline]
    pub(crate) fn as_object(self) -> Option<Object<'a>> {
        match self.kind() {
            Kind::Object(o) => Some(o),
            _ => None,
        }
    }

    /// Whether the value is an object.
    pub(crate) fn is_object(self) -> bool {
        matches!(self.tape.nodes[self.at], Node::Object { .. })
    }

    /// The field `key` of an object; `None` when absent or when the value is not an object.
    #[inline]
    pub(crate) fn get(self, key: &str) -> Option<Value<'a>> {
        self.as_object().and_then(|o| o.get(key))
    }

    /// The value as a `serde_json::Value` (objects with sorted keys; of repeated keys, the
    /// last one wins).
    pub(crate) fn to_serde(self) -> serde_json::Value {
        use serde_json::Value as J;
        match self.kind() {
            Kind::Null => J::Null,
            Kind::Bool(b) => J::Bool(b),
            Kind::Number(Number::Int(n)) => J::from(n),
            Kind::Number(Number::UInt(n)) => J::from(n),
            Kind::Number(Number::Float(f)) => {
                serde_json::Number::from_f64(f).map_or(J::Null, J::Number)
            }
            Kind::Str(s) => J::String(s.to_owned()),
            Kind::Array(a) => J::Array(a.iter().map(Value::to_serde).collect()),
            Kind::Object(o) => J::Object(
                o.iter()
                    .map(|(k, v)| (k.to_owned(), v.to_serde()))
                    .collect(),
            ),
        }
    }
}

impl fmt::Debug for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_serde())
    }
}

impl fmt::Display for Value<'_> {
    /// Compact JSON text, as serde_json writes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_serde())
    }
}

impl PartialEq<serde_json::Value> for Value<'_> {
    fn eq(&self, other: &serde_json::Value) -> bool {
        self.to_serde() == *other
    }
}

/// An array of a [`Doc`].
#[derive(Clone, Copy)]
pub(crate) struct Array<'a> {
    tape: &'a Tape<'a>,
    at: usize,
    len: usize,
}

impl fmt::Debug for Array<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> Array<'a> {
    /// An array with no elements (of no document).
    pub(crate) fn empty() -> Array<'static> {
        static EMPTY: Tape<'static> = Tape {
            nodes: Vec::new(),
            escaped: Vec::new(),
        };
        Array {
            tape: &EMPTY,
            at: 0,
            len: 0,
        }
    }

    /// The number of elements.
    pub(crate) fn len(self) -> usize {
        self.len
    }

    /// Whether there is no element.
    pub(crate) fn is_empty(self) -> bool {
        self.len == 0
    }

    /// The elements, in order.
    pub(crate) fn iter(self) -> Elements<'a> {
        Elements {
            tape: self.tape,
            next: self.at + 1,
            left: self.len,
        }
    }
}

impl<'a> IntoIterator for Array<'a> {
    type Item = Value<'a>;
    type IntoIter = Elements<'a>;

    fn into_iter(self) -> Elements<'a> {
        self.iter()
    }
}

/// The elements of an [`Array`].
#[derive(Clone)]
pub(crate) struct Elements<'a> {
    tape: &'a Tape<'a>,
    next: usize,
    left: usize,
}

impl<'a> Iterator for Elements<'a> {
    type Item = Value<'a>;

    #[inline]
    fn next(&mut self) -> Option<Value<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let at = self.next;
        self.next = self.tape.next(at);
        Some(Value {
            tape: self.tape,
            at,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Elements<'_> {}

/// An object of a [`Doc`]: its fields in document order.
#[derive(Clone, Copy)]
pub(crate) struct Object<'a> {
    tape: &'a Tape<'a>,
    at: usize,
    len: usize,
}

impl fmt::Debug for Object<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<'a> Object<'a> {
    /// The value of the first field named `key`.
    #[inline]
    pub(crate) fn get(self, key: &str) -> Option<Value<'a>> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The fields, in document order.
    #[inline]
    pub(crate) fn iter(self) -> Fields<'a> {
        Fields {
            tape: self.tape,
            next: self.at + 1,
            left: self.len,
        }
    }

    /// Appends the node positions of each field's key and value to `out` (see
    /// [`Object::field_at`]), for repeated lookups in one object.
    pub(crate) fn positions_into(self, out: &mut Vec<(u32, u32)>) {
        let mut next = self.at + 1;
        for _ in 0..self.len {
            let value = next + 1;
            // Positions fit u32: `translate` checked the tape's length.
            out.push((next as u32, value as u32));
            next = self.tape.next(value);
        }
    }

    /// The key and value of a field whose node positions [`Object::positions_into`] gave.
    #[inline]
    pub(crate) fn field_at(self, (key, value): (u32, u32)) -> (&'a str, Value<'a>) {
        (
            self.tape.str_at(key as usize),
            Value {
                tape: self.tape,
                at: value as usize,
            },
        )
    }
}

/// The fields of an [`Object`].
#[derive(Clone)]
pub(crate) struct Fields<'a> {
    tape: &'a Tape<'a>,
    next: usize,
    left: usize,
}

impl<'a> Iterator for Fields<'a> {
    type Item = (&'a str, Value<'a>);

    #[inline]
    fn next(&mut self) -> Option<(&'a str, Value<'a>)> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let key = self.tape.str_at(self.next);
        let at = self.next + 1;
        self.next = self.tape.next(at);
        Some((
            key,
            Value {
                tape: self.tape,
                at,
            },
        ))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Fields<'_> {}

/// Field access on JSON values and objects.
pub(crate) trait Field<'a> {
    /// The field `key` of an object; `None` when absent or when `self` is not an object.
    fn field(&self, key: &str) -> Option<Value<'a>>;
}

impl<'a> Field<'a> for Object<'a> {
    #[inline]
    fn field(&self, key: &str) -> Option<Value<'a>> {
        self.get(key)
    }
}

impl<'a> Field<'a> for Value<'a> {
    #[inline]
    fn field(&self, key: &str) -> Option<Value<'a>> {
        self.get(key)
    }
}

/// A parsed JSON value of a `serde_json` value, for tests (the document is leaked).
#[cfg(test)]
pub(crate) fn bv(v: serde_json::Value) -> Value<'static> {
    let doc = Doc::parse(v.to_string().as_bytes()).expect("JSON");
    Box::leak(Box::new(doc)).value()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(text: &str) -> serde_json::Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn same_values_as_serde_json() {
        let docs = [
            r#"{"data": [{"id": "a", "n": -3, "big": 18446744073709551615, "f": 1.5e3,
                "t": true, "f2": false, "z": null, "arr": [[], {}, [1, [2, {"k": "v"}]]],
                "esc": "line\nbreak \"quoted\" \u00e9", "uni": "été"}],
                "hasNext": false}"#,
            "[]",
            "{}",
            "\"just a string\"",
            "42",
            "-0.5",
            r#"[{"a": 1, "b": {"c": [true, null, "x"], "d": {}}, "e": []}, {"a": 2}]"#,
            r#"{"dup": 1, "dup": 2}"#,
            r#"{"quo\"ted": {"inner\u00e9": [1, {"a\\b": 2, "c": 3}]}, "x": [{"caf\u00e9": "v\u00e9"}]}"#,
        ];
        for text in docs {
            let doc = Doc::parse(text.as_bytes()).unwrap();
            assert_eq!(doc.value().to_serde(), reference(text), "{text}");
            let doc = Doc::parse_bytes(bytes::Bytes::copy_from_slice(text.as_bytes())).unwrap();
            assert_eq!(doc.value().to_serde(), reference(text), "{text}");
        }
    }

    #[test]
    fn reads_fields_elements_and_kinds() {
        let text = r#"{"a": {"deep": [1, 2, {"x": 3}]}, "b": "s", "k\u00e9y": 2.5,
            "big": 18446744073709551615, "dup": 1, "dup": 2, "t": true, "n": null}"#;
        let doc = Doc::parse(text.as_bytes()).unwrap();
        let root = doc.value();
        let o = root.as_object().unwrap();
        assert_eq!(o.iter().len(), 8);
        let keys: Vec<&str> = o.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["a", "b", "k\u{e9}y", "big", "dup", "dup", "t", "n"]);
        // Fields after a nested value are found: the nested nodes are skipped.
        assert_eq!(root.get("b").and_then(Value::as_str), Some("s"));
        let int = |v: Option<Value<'_>>| v.and_then(Value::as_number).and_then(Number::as_i64);
        assert_eq!(int(root.get("dup")), Some(1), "first wins");
        assert_eq!(
            root.get("k\u{e9}y").and_then(Value::as_number),
            Some(Number::Float(2.5))
        );
        assert_eq!(
            root.get("big").and_then(Value::as_number),
            Some(Number::UInt(u64::MAX))
        );
        assert_eq!(int(root.get("big")), None);
        assert_eq!(root.get("t").and_then(Value::as_bool), Some(true));
        assert!(root.get("n").unwrap().is_null());
        assert!(root.get("missing").is_none());
        assert!(root.get("b").unwrap().get("b").is_none(), "not an object");
        let deep = root
            .get("a")
            .unwrap()
            .get("deep")
            .unwrap()
            .as_array()
            .unwrap();
        assert_eq!(deep.len(), 3);
        let elems: Vec<String> = deep.iter().map(|v| v.to_string()).collect();
        assert_eq!(elems, ["1", "2", r#"{"x":3}"#]);
        let mut positions = Vec::new();
        o.positions_into(&mut positions);
        let fields: Vec<(&str, String)> = positions
            .iter()
            .map(|p| {
                let (k, v) = o.field_at(*p);
                (k, v.to_string())
            })
            .collect();
        let expected: Vec<(&str, String)> = o.iter().map(|(k, v)| (k, v.to_string())).collect();
        assert_eq!(fields, expected);
        assert!(Array::empty().iter().next().is_none());
    }

    #[test]
    fn numbers_print_as_text_columns_hold_them() {
        let doc = Doc::parse(br#"[1, -2, 1.5, 2.0, 1e20, 18446744073709551615]"#).unwrap();
        let printed: Vec<String> = doc
            .value()
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_number().unwrap().to_string())
            .collect();
        assert_eq!(
            printed,
            [
                "1",
                "-2",
                "1.5",
                "2",
                "100000000000000000000",
                "18446744073709551615"
            ]
        );
    }

    #[test]
    fn nesting_is_bounded() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(Doc::parse(ok.as_bytes()).is_ok());
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        let err = Doc::parse(deep.as_bytes()).unwrap_err();
        assert!(err.contains("nested"), "{err}");
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
            b"{\"a\": 1,}",
            b"[1 2]",
            b"{\"a\" 1}",
        ] {
            assert!(Doc::parse(bad).is_err(), "{bad:?}");
            let owned = Doc::parse_bytes(bytes::Bytes::copy_from_slice(bad));
            assert_eq!(owned.unwrap_err(), Doc::parse(bad).unwrap_err(), "{bad:?}");
        }
    }
}
