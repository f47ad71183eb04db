//! The two Avro files an Iceberg snapshot needs, a manifest and a manifest list, written as
//! Avro object container files (the Avro 1.11 specification: header with the schema and a
//! 16-byte sync marker, then blocks of binary-encoded records, uncompressed).
//!
//! Only what these two fixed schemas use is encoded: `int` and `long` (zig-zag varints),
//! `string` and `bytes`, unions with `null`, arrays (Iceberg's `map` with `int` keys is an
//! array of key-value records) and records. The schemas carry Iceberg's `field-id`s, by
//! which readers resolve the fields. Read back by pyiceberg and DuckDB's iceberg extension
//! in the tests (`tests/it`), two readers this project did not write.

/// A value of one field, in schema order.
#[derive(Debug, Clone)]
pub(crate) enum Datum {
    Int(i32),
    Long(i64),
    Str(String),
    /// `null` of a `["null", T]` union (the first branch).
    Null,
    /// The value of a `["null", T]` union (the second branch).
    Some(Box<Datum>),
    /// Length-prefixed bytes (Avro `bytes`).
    Bytes(Vec<u8>),
    /// An array: its items, in one block.
    Array(Vec<Datum>),
    /// A record: its fields in schema order.
    Record(Vec<Datum>),
}

/// Appends `n` zig-zag encoded as a variable-length integer.
fn put_long(out: &mut Vec<u8>, n: i64) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    loop {
        let byte = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Appends length-prefixed bytes (Avro `bytes` and `string`).
fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_long(out, b.len() as i64);
    out.extend_from_slice(b);
}

fn put_datum(out: &mut Vec<u8>, d: &Datum) {
    match d {
        Datum::Int(n) => put_long(out, i64::from(*n)),
        Datum::Long(n) => put_long(out, *n),
        Datum::Str(s) => put_bytes(out, s.as_bytes()),
        Datum::Null => put_long(out, 0),
        Datum::Some(d) => {
            put_long(out, 1);
            put_datum(out, d);
        }
        Datum::Bytes(b) => put_bytes(out, b),
        Datum::Array(items) => {
            if !items.is_empty() {
                put_long(out, items.len() as i64);
                for i in items {
                    put_datum(out, i);
                }
            }
            put_long(out, 0);
        }
        Datum::Record(fields) => {
            for f in fields {
                put_datum(out, f);
            }
        }
    }
}

/// An object container file with `schema`, file `metadata` (besides `avro.schema` and
/// `avro.codec`), the given sync marker (deterministic, so that a file written again after
/// a crash is byte for byte the same) and `records` in one block.
pub(crate) fn container(
    schema: &str,
    metadata: &[(&str, String)],
    sync: [u8; 16],
    records: &[Datum],
) -> Vec<u8> {
    let mut out = b"Obj\x01".to_vec();
    let mut meta: Vec<(&str, &[u8])> = vec![("avro.schema", schema.as_bytes())];
    meta.push(("avro.codec", b"null"));
    for (k, v) in metadata {
        meta.push((k, v.as_bytes()));
    }
    put_long(&mut out, meta.len() as i64);
    for (k, v) in meta {
        put_bytes(&mut out, k.as_bytes());
        put_bytes(&mut out, v);
    }
    put_long(&mut out, 0);
    out.extend_from_slice(&sync);
    if !records.is_empty() {
        let mut block = Vec::new();
        for r in records {
            put_datum(&mut block, r);
        }
        put_long(&mut out, records.len() as i64);
        put_long(&mut out, block.len() as i64);
        out.extend_from_slice(&block);
        out.extend_from_slice(&sync);
    }
    out
}

/// The Avro schema of a manifest entry (Iceberg format 2), with the `data_file` fields this
/// sink writes; `partition` is the empty record of an unpartitioned table, and the column
/// metrics are Iceberg maps from field id (arrays of key-value records).
pub(crate) const MANIFEST_ENTRY_SCHEMA: &str = r#"{"type":"record","name":"manifest_entry","fields":[
{"name":"status","type":"int","field-id":0},
{"name":"snapshot_id","type":["null","long"],"default":null,"field-id":1},
{"name":"sequence_number","type":["null","long"],"default":null,"field-id":3},
{"name":"file_sequence_number","type":["null","long"],"default":null,"field-id":4},
{"name":"data_file","type":{"type":"record","name":"r2","fields":[
 {"name":"content","type":"int","field-id":134},
 {"name":"file_path","type":"string","field-id":100},
 {"name":"file_format","type":"string","field-id":101},
 {"name":"partition","type":{"type":"record","name":"r102","fields":[]},"field-id":102},
 {"name":"record_count","type":"long","field-id":103},
 {"name":"file_size_in_bytes","type":"long","field-id":104},
 {"name":"value_counts","type":["null",{"type":"array","logicalType":"map","items":{"type":"record","name":"k119_v120","fields":[{"name":"key","type":"int","field-id":119},{"name":"value","type":"long","field-id":120}]}}],"default":null,"field-id":109},
 {"name":"null_value_counts","type":["null",{"type":"array","logicalType":"map","items":{"type":"record","name":"k121_v122","fields":[{"name":"key","type":"int","field-id":121},{"name":"value","type":"long","field-id":122}]}}],"default":null,"field-id":110},
 {"name":"lower_bounds","type":["null",{"type":"array","logicalType":"map","items":{"type":"record","name":"k126_v127","fields":[{"name":"key","type":"int","field-id":126},{"name":"value","type":"bytes","field-id":127}]}}],"default":null,"field-id":125},
 {"name":"upper_bounds","type":["null",{"type":"array","logicalType":"map","items":{"type":"record","name":"k129_v130","fields":[{"name":"key","type":"int","field-id":129},{"name":"value","type":"bytes","field-id":130}]}}],"default":null,"field-id":128}
]},"field-id":2}
]}"#;

/// The Avro schema of a manifest list entry (Iceberg format 2).
pub(crate) const MANIFEST_FILE_SCHEMA: &str = r#"{"type":"record","name":"manifest_file","fields":[
{"name":"manifest_path","type":"string","field-id":500},
{"name":"manifest_length","type":"long","field-id":501},
{"name":"partition_spec_id","type":"int","field-id":502},
{"name":"content","type":"int","field-id":517},
{"name":"sequence_number","type":"long","field-id":515},
{"name":"min_sequence_number","type":"long","field-id":516},
{"name":"added_snapshot_id","type":"long","field-id":503},
{"name":"added_files_count","type":"int","field-id":504},
{"name":"existing_files_count","type":"int","field-id":505},
{"name":"deleted_files_count","type":"int","field-id":506},
{"name":"added_rows_count","type":"long","field-id":512},
{"name":"existing_rows_count","type":"long","field-id":513},
{"name":"deleted_rows_count","type":"long","field-id":514}
]}"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longs_are_zig_zag_varints() {
        // Known answers from the Avro specification's table.
        for (n, bytes) in [
            (0i64, vec![0x00u8]),
            (-1, vec![0x01]),
            (1, vec![0x02]),
            (-2, vec![0x03]),
            (2, vec![0x04]),
            (-64, vec![0x7f]),
            (64, vec![0x80, 0x01]),
        ] {
            let mut out = Vec::new();
            put_long(&mut out, n);
            assert_eq!(out, bytes, "{n}");
        }
        let mut out = Vec::new();
        put_long(&mut out, i64::MIN);
        assert_eq!(out.len(), 10);
    }

    #[test]
    fn the_schemas_are_json() {
        for s in [MANIFEST_ENTRY_SCHEMA, MANIFEST_FILE_SCHEMA] {
            let v: serde_json::Value = serde_json::from_str(s).expect("valid JSON");
            assert_eq!(v["type"], "record");
        }
    }

    #[test]
    fn unions_bytes_and_arrays_are_encoded_as_the_specification_says() {
        let mut out = Vec::new();
        put_datum(&mut out, &Datum::Some(Box::new(Datum::Long(3))));
        // Branch 1, then the long.
        assert_eq!(out, [0x02, 0x06]);
        out.clear();
        put_datum(&mut out, &Datum::Bytes(vec![7, 8]));
        assert_eq!(out, [0x04, 7, 8]);
        out.clear();
        let pair = |k, v| Datum::Record(vec![Datum::Int(k), Datum::Long(v)]);
        put_datum(&mut out, &Datum::Array(vec![pair(1, 5), pair(2, 0)]));
        // One block of 2 items, then the empty block that ends the array.
        assert_eq!(out, [0x04, 0x02, 0x0a, 0x04, 0x00, 0x00]);
        out.clear();
        put_datum(&mut out, &Datum::Array(Vec::new()));
        assert_eq!(out, [0x00]);
    }

    #[test]
    fn a_container_has_magic_metadata_and_one_block() {
        let recs = [Datum::Record(vec![
            Datum::Int(1),
            Datum::Null,
            Datum::Long(7),
            Datum::Str("x".into()),
        ])];
        let f = container(r#"{"type":"null"}"#, &[("k", "v".into())], [9; 16], &recs);
        assert_eq!(&f[..4], b"Obj\x01");
        // One block of one record: count 1 (02), size 5 (0a), then int 1, the null
        // branch, long 7 and "x" (02 00 0e 02 78), then the marker.
        assert_eq!(&f[f.len() - 16..], &[9; 16]);
        let block = &f[f.len() - 16 - 5 - 2..f.len() - 16];
        assert_eq!(block, &[0x02, 0x0a, 0x02, 0x00, 0x0e, 0x02, b'x']);
    }
}
