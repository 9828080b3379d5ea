//! The binary COPY codec on hand-built byte strings: every decoder, the stream framing, chunk
//! splits, bad rows, and the encoder read back by the decoder.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Date32Array, Date64Array, Decimal128Array,
    FixedSizeBinaryArray, Float32Array, Float64Array, Int16Array, Int32Array, Int64Array,
    IntervalMonthDayNanoArray, ListArray, RecordBatch, StringArray, Time64MicrosecondArray,
    TimestampMicrosecondArray, TimestampNanosecondArray,
};
use arrow::datatypes::{DataType, Date32Type, Field, Int32Type, IntervalMonthDayNano, Schema};
use bytes::BytesMut;

use super::super::copy_in::CopyInEncoder;
use super::super::copy_out::{CopyOutDecoder, SIGNATURE};
use super::super::types::{PgType, arrow_type};
use crate::error::Error;

const CONTEXT: &str = "Connection \"wh\", table \"public.t\"";

fn pg(name: &str) -> PgType {
    PgType::builtin(name).unwrap_or_else(|| panic!("{name} is built in"))
}

fn cols(spec: &[(&str, &str)]) -> Vec<(String, PgType)> {
    spec.iter().map(|(n, t)| (n.to_string(), pg(t))).collect()
}

/// A binary COPY stream of rows of fields (None for NULL).
fn stream(rows: &[Vec<Option<Vec<u8>>>]) -> Vec<u8> {
    let mut s = SIGNATURE.to_vec();
    s.extend_from_slice(&0i32.to_be_bytes());
    s.extend_from_slice(&0i32.to_be_bytes());
    for row in rows {
        s.extend_from_slice(&(row.len() as i16).to_be_bytes());
        for f in row {
            put_field(&mut s, f.as_deref());
        }
    }
    s.extend_from_slice(&(-1i16).to_be_bytes());
    s
}

/// A field as binary COPY and array elements write it: its length (-1 for NULL), its bytes.
fn put_field(out: &mut Vec<u8>, field: Option<&[u8]>) {
    match field {
        Some(v) => {
            out.extend_from_slice(&(v.len() as i32).to_be_bytes());
            out.extend_from_slice(v);
        }
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
    }
}

fn decode_with(
    columns: &[(String, PgType)],
    chunks: &[&[u8]],
    batch_bytes: usize,
) -> Result<Vec<RecordBatch>, Error> {
    let mut d = CopyOutDecoder::new(columns, batch_bytes, CONTEXT.into())?;
    let mut out = Vec::new();
    for c in chunks {
        d.push(c, &mut out)?;
    }
    out.extend(d.finish()?);
    Ok(out)
}

fn decode(columns: &[(String, PgType)], bytes: &[u8]) -> Result<RecordBatch, Error> {
    let batches = decode_with(columns, &[bytes], 1 << 30)?;
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|(n, t)| super::super::types::arrow_field(n, t, true).unwrap())
            .collect::<Vec<_>>(),
    ));
    Ok(arrow::compute::concat_batches(&schema, &batches).unwrap())
}

fn numeric(ndigits: i16, weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Vec<u8> {
    let mut v = Vec::new();
    for x in [ndigits as u16, weight as u16, sign, dscale]
        .iter()
        .chain(digits)
    {
        v.extend_from_slice(&x.to_be_bytes());
    }
    v
}

/// A one-dimensional binary array of int4 elements.
fn int4_array(items: &[Option<i32>]) -> Vec<u8> {
    let mut v = Vec::new();
    let has_null = items.iter().any(Option::is_none);
    v.extend_from_slice(&i32::from(!items.is_empty()).to_be_bytes());
    v.extend_from_slice(&i32::from(has_null).to_be_bytes());
    v.extend_from_slice(&23u32.to_be_bytes());
    if !items.is_empty() {
        v.extend_from_slice(&(items.len() as i32).to_be_bytes());
        v.extend_from_slice(&1i32.to_be_bytes());
    }
    for item in items {
        match item {
            Some(i) => {
                v.extend_from_slice(&4i32.to_be_bytes());
                v.extend_from_slice(&i.to_be_bytes());
            }
            None => v.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    v
}

fn be<const N: usize>(b: [u8; N]) -> Option<Vec<u8>> {
    Some(b.to_vec())
}

#[test]
fn every_scalar_decoder_reads_postgres_bytes() {
    let columns = cols(&[
        ("i2", "smallint"),
        ("i4", "integer"),
        ("i8", "bigint"),
        ("f4", "real"),
        ("f8", "double precision"),
        ("n", "numeric(12,2)"),
        ("nt", "numeric"),
        ("t", "text"),
        ("c", "character(3)"),
        ("b", "boolean"),
        ("d", "date"),
        ("tm", "time"),
        ("ts", "timestamp"),
        ("tz", "timestamptz"),
        ("iv", "interval"),
        ("u", "uuid"),
        ("j", "json"),
        ("jb", "jsonb"),
        ("by", "bytea"),
        ("a", "integer[]"),
    ]);
    let mut interval = Vec::new();
    interval.extend_from_slice(&3_000_001i64.to_be_bytes());
    interval.extend_from_slice(&2i32.to_be_bytes());
    interval.extend_from_slice(&(-14i32).to_be_bytes());
    let uuid: Vec<u8> = (0u8..16).collect();
    let values = vec![
        be(i16::MIN.to_be_bytes()),
        be(i32::MAX.to_be_bytes()),
        be(i64::MIN.to_be_bytes()),
        be(f32::NAN.to_be_bytes()),
        be(f64::NEG_INFINITY.to_be_bytes()),
        Some(numeric(3, 1, 0x4000, 2, &[1, 2345, 6700])),
        Some(numeric(2, 0, 0, 5, &[7, 1200])),
        Some("héllo\u{1F600}".as_bytes().to_vec()),
        Some(b"a  ".to_vec()),
        Some(vec![1]),
        be((-1i32).to_be_bytes()),
        be(45_296_000_001i64.to_be_bytes()),
        be(1i64.to_be_bytes()),
        be((-1i64).to_be_bytes()),
        Some(interval),
        Some(uuid.clone()),
        Some(br#"{"a": 1}"#.to_vec()),
        Some(b"\x01{\"b\": [true]}".to_vec()),
        Some(b"\x00\x01\x00".to_vec()),
        Some(int4_array(&[Some(1), None, Some(-3)])),
    ];
    let nulls = vec![None; values.len()];
    let empty = {
        let mut r = nulls.clone();
        r[7] = Some(vec![]);
        r[18] = Some(vec![]);
        r[19] = Some(int4_array(&[]));
        r
    };
    let batch = decode(&columns, &stream(&[values, nulls, empty])).unwrap();
    assert_eq!(batch.num_rows(), 3);
    let col = |name: &str| batch.column_by_name(name).unwrap().clone();
    macro_rules! get {
        ($name:expr, $t:ty) => {
            col($name).as_any().downcast_ref::<$t>().unwrap().clone()
        };
    }
    assert_eq!(get!("i2", Int16Array).value(0), i16::MIN);
    assert_eq!(get!("i4", Int32Array).value(0), i32::MAX);
    assert_eq!(get!("i8", Int64Array).value(0), i64::MIN);
    assert!(get!("f4", Float32Array).value(0).is_nan());
    assert_eq!(get!("f8", Float64Array).value(0), f64::NEG_INFINITY);
    let n = get!("n", Decimal128Array);
    assert_eq!((n.value(0), n.precision(), n.scale()), (-1_234_567, 12, 2));
    assert_eq!(get!("nt", StringArray).value(0), "7.12000");
    assert_eq!(get!("t", StringArray).value(0), "héllo\u{1F600}");
    assert_eq!(get!("c", StringArray).value(0), "a  ");
    assert!(get!("b", BooleanArray).value(0));
    // 1999-12-31 is day 10956 of the Unix epoch.
    assert_eq!(get!("d", Date32Array).value(0), 10_956);
    assert_eq!(get!("tm", Time64MicrosecondArray).value(0), 45_296_000_001);
    assert_eq!(
        get!("ts", TimestampMicrosecondArray).value(0),
        946_684_800_000_001
    );
    let tz = get!("tz", TimestampMicrosecondArray);
    assert_eq!(tz.value(0), 946_684_799_999_999);
    assert_eq!(tz.timezone(), Some("+00:00"));
    assert_eq!(
        get!("iv", IntervalMonthDayNanoArray).value(0),
        IntervalMonthDayNano::new(-14, 2, 3_000_001_000)
    );
    assert_eq!(get!("u", FixedSizeBinaryArray).value(0), uuid.as_slice());
    assert_eq!(get!("j", StringArray).value(0), r#"{"a": 1}"#);
    assert_eq!(get!("jb", StringArray).value(0), r#"{"b": [true]}"#);
    assert_eq!(get!("by", BinaryArray).value(0), b"\x00\x01\x00");
    let a = get!("a", ListArray);
    let items = a.value(0);
    let items = items.as_primitive::<Int32Type>();
    assert_eq!(
        items.iter().collect::<Vec<_>>(),
        vec![Some(1), None, Some(-3)]
    );
    for c in batch.columns() {
        assert!(c.is_null(1), "{:?}", c.data_type());
    }
    assert_eq!(get!("t", StringArray).value(2), "");
    assert_eq!(get!("by", BinaryArray).value(2), b"");
    assert!(a.is_valid(2) && a.value(2).is_empty());
    assert_eq!(batch.schema().field(15).metadata().len(), 1);
}

#[test]
fn header_and_trailer_frame_the_stream() {
    let mut buf = BytesMut::new();
    CopyInEncoder::header(&mut buf);
    assert_eq!(buf.len(), 19);
    assert_eq!(&buf[..11], b"PGCOPY\n\xff\r\n\0");
    assert_eq!(&buf[11..], &[0u8; 8]);
    CopyInEncoder::trailer(&mut buf);
    assert_eq!(&buf[19..], &[0xff, 0xff]);
    // Header and trailer alone are an empty table.
    let batches = decode_with(&cols(&[("a", "bigint")]), &[&buf], 1024).unwrap();
    assert!(batches.is_empty());
    // A header extension is skipped.
    let mut ext = SIGNATURE.to_vec();
    ext.extend_from_slice(&0i32.to_be_bytes());
    ext.extend_from_slice(&3i32.to_be_bytes());
    ext.extend_from_slice(b"xyz");
    ext.extend_from_slice(&1i16.to_be_bytes());
    ext.extend_from_slice(&8i32.to_be_bytes());
    ext.extend_from_slice(&5i64.to_be_bytes());
    ext.extend_from_slice(&(-1i16).to_be_bytes());
    let b = decode(&cols(&[("a", "bigint")]), &ext).unwrap();
    assert_eq!(
        b.column(0)
            .as_primitive::<arrow::datatypes::Int64Type>()
            .value(0),
        5
    );
}

#[test]
fn chunks_split_at_every_offset_decode_alike() {
    let columns = cols(&[("id", "bigint"), ("name", "text"), ("a", "integer[]")]);
    let rows: Vec<_> = (0..4i64)
        .map(|i| {
            vec![
                be(i.to_be_bytes()),
                (i != 2).then(|| "x".repeat(i as usize).into_bytes()),
                Some(int4_array(&[Some(i as i32), None])),
            ]
        })
        .collect();
    let bytes = stream(&rows);
    let whole = decode(&columns, &bytes).unwrap();
    for cut in 0..=bytes.len() {
        let batches = decode_with(&columns, &[&bytes[..cut], &bytes[cut..]], 1 << 20).unwrap();
        assert_eq!(batches, vec![whole.clone()], "cut at {cut}");
        for cut2 in (cut..=bytes.len()).step_by(7) {
            let parts = [&bytes[..cut], &bytes[cut..cut2], &bytes[cut2..]];
            let batches = decode_with(&columns, &parts, 1 << 20).unwrap();
            assert_eq!(batches, vec![whole.clone()], "cuts at {cut} and {cut2}");
        }
    }
    let singles: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(
        decode_with(&columns, &singles, 1 << 20).unwrap(),
        vec![whole]
    );
}

#[test]
fn streams_cut_short_or_garbled_are_errors() {
    let columns = cols(&[("id", "bigint")]);
    let bytes = stream(&[vec![be(1i64.to_be_bytes())]]);
    let err = |chunks: &[&[u8]]| decode_with(&columns, chunks, 1024).unwrap_err().to_string();
    let e = err(&[&bytes[..bytes.len() - 2]]);
    assert!(
        e.contains("without the binary COPY trailer") && e.contains("after 1 rows"),
        "{e}"
    );
    assert!(e.starts_with(CONTEXT), "{e}");
    assert!(err(&[&bytes[..bytes.len() - 5]]).contains("middle of a row"));
    assert!(err(&[&bytes[..5]]).contains("before the binary COPY header"));
    assert!(err(&[b"id\n1\n"]).contains("FORMAT binary"));
    let mut extra = bytes.clone();
    extra.push(0);
    assert!(err(&[&extra]).contains("follow the COPY trailer"));
    let two = stream(&[vec![be(1i64.to_be_bytes()), None]]);
    assert!(err(&[&two]).contains("row 1 has 2 fields, but the COPY lists 1 columns"));
}

#[test]
fn values_arrow_cannot_hold_are_bad_rows_naming_column_row_and_value() {
    let check = |ty: &str, value: Vec<u8>, expect: &[&str]| {
        let columns = cols(&[("id", "integer"), ("v", ty)]);
        let ok = vec![be(1i32.to_be_bytes()), None];
        let bad = vec![be(2i32.to_be_bytes()), Some(value)];
        let e = decode(&columns, &stream(&[ok, bad])).unwrap_err();
        let (shown, kept) = shown_and_kept(&e);
        assert!(shown.starts_with(CONTEXT), "{shown}");
        assert!(shown.contains("row 2, column \"v\""), "{shown}");
        for x in expect {
            assert!(
                shown.contains(x) || kept.contains(x),
                "{shown} / {kept} lack {x}"
            );
        }
    };
    check(
        "date",
        i32::MAX.to_be_bytes().to_vec(),
        &["infinity", "as date"],
    );
    check("timestamp", i64::MIN.to_be_bytes().to_vec(), &["-infinity"]);
    check("numeric(10,2)", numeric(0, 0, 0xC000, 0, &[]), &["NaN"]);
    check(
        "numeric(4,0)",
        numeric(1, 10, 0, 0, &[1]),
        &["too many digits"],
    );
    check("integer", vec![1, 2], &["4 bytes, not 2", "0x0102"]);
    check("text", vec![0x66, 0xff], &["invalid UTF-8"]);
    check("jsonb", b"{}".to_vec(), &["version byte"]);
    let mut two_dim = Vec::new();
    for x in [2i32, 0, 23, 1, 1, 1, 1] {
        two_dim.extend_from_slice(&x.to_be_bytes());
    }
    check("integer[]", two_dim, &["2-dimensional"]);
    let mut wrong = int4_array(&[Some(1)]);
    wrong[8..12].copy_from_slice(&20u32.to_be_bytes());
    check("integer[]", wrong, &["oid 20"]);
    // NaN stays text when the column is unconstrained numeric.
    let columns = cols(&[("v", "numeric")]);
    let b = decode(
        &columns,
        &stream(&[vec![Some(numeric(0, 0, 0xC000, 0, &[]))]]),
    )
    .unwrap();
    assert_eq!(b.column(0).as_string::<i32>().value(0), "NaN");
}

/// A one-dimensional `text[]` value of `items` (None for NULL), as PostgreSQL sends it.
fn text_array(items: &[Option<&[u8]>]) -> Vec<u8> {
    let mut v = Vec::new();
    for word in [1, i32::from(items.iter().any(Option::is_none)), 25] {
        v.extend_from_slice(&word.to_be_bytes());
    }
    v.extend_from_slice(&(items.len() as i32).to_be_bytes());
    v.extend_from_slice(&1i32.to_be_bytes());
    for item in items {
        put_field(&mut v, *item);
    }
    v
}

#[test]
fn text_that_is_not_utf8_names_its_row_whatever_the_batches() {
    let columns = cols(&[("id", "integer"), ("v", "text"), ("tags", "text[]")]);
    let row = |id: i32, v: &[u8], tags: &[Option<&[u8]>]| {
        vec![
            be(id.to_be_bytes()),
            Some(v.to_vec()),
            Some(text_array(tags)),
        ]
    };
    let good: &[Option<&[u8]>] = &[Some(b"a"), None, Some("é".as_bytes())];
    let first_error = |rows: &[Vec<Option<Vec<u8>>>], batch_bytes: usize| {
        let e = decode_with(&columns, &[&stream(rows)], batch_bytes).unwrap_err();
        shown_and_kept(&e)
    };
    // The valid rows decode as they were sent.
    let fine = [row(1, "Grüße".as_bytes(), good), row(2, b"", &[])];
    let batch = decode(&columns, &stream(&fine)).unwrap();
    let text = batch
        .column(1)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    assert_eq!((text.value(0), text.value(1)), ("Grüße", ""));
    for batch_bytes in [1, 64, 1 << 20] {
        // A bad byte in row 4 of 5, one batch per row or all in one.
        let mut rows: Vec<_> = (1..=5).map(|id| row(id, b"fine", good)).collect();
        rows[3][1] = Some(b"ab\xff".to_vec());
        let (shown, kept) = first_error(&rows, batch_bytes);
        assert!(shown.contains("row 4, column \"v\""), "{shown}");
        assert!(
            shown.contains("invalid UTF-8") && kept.contains("ab"),
            "{shown} / {kept}"
        );
        // A character cut between two values is valid only joined: row 2's value is not.
        let mut rows: Vec<_> = (1..=3).map(|id| row(id, b"fine", good)).collect();
        rows[1][1] = Some(b"caf\xc3".to_vec());
        rows[2][1] = Some(b"\xa9".to_vec());
        let (shown, _) = first_error(&rows, batch_bytes);
        assert!(shown.contains("row 2, column \"v\""), "{shown}");
        // The second element of row 3's array, after an empty array in row 2.
        let mut rows: Vec<_> = (1..=4).map(|id| row(id, b"fine", good)).collect();
        rows[1][2] = Some(text_array(&[]));
        rows[2][2] = Some(text_array(&[Some(b"ok"), Some(b"\xfe")]));
        let (shown, _) = first_error(&rows, batch_bytes);
        assert!(shown.contains("row 3, column \"tags\""), "{shown}");
        assert!(shown.contains("element 2: invalid UTF-8"), "{shown}");
        // Bad text in two columns: the earlier row is named, whichever column comes first.
        let mut rows: Vec<_> = (1..=4).map(|id| row(id, b"fine", good)).collect();
        rows[2][1] = Some(b"\xff".to_vec());
        rows[1][2] = Some(text_array(&[Some(b"\xfe")]));
        let (shown, _) = first_error(&rows, batch_bytes);
        assert!(shown.contains("row 2, column \"tags\""), "{shown}");
    }
}

#[test]
fn columns_without_a_binary_mapping_are_config_errors() {
    let inet = PgType {
        oid: 869,
        typmod: -1,
        element: None,
        name: "inet".into(),
    };
    let e = CopyOutDecoder::new(&[("addr".into(), inet)], 1024, CONTEXT.into())
        .err()
        .unwrap();
    assert!(matches!(e, Error::Config(_)));
    assert!(
        e.to_string().contains("column \"addr\" has type inet"),
        "{e}"
    );
    let schema = Schema::new(vec![Field::new("a", DataType::Int64, true)]);
    let e = CopyInEncoder::new(&schema, &cols(&[("b", "bigint")]), CONTEXT.into())
        .err()
        .unwrap();
    assert!(matches!(e, Error::Config(_)));
    assert!(e.to_string().contains("no column \"b\""), "{e}");
}

#[test]
fn batches_are_cut_by_arrow_bytes() {
    let columns = cols(&[("id", "bigint"), ("t", "text")]);
    let rows: Vec<_> = (0..1000i64)
        .map(|i| vec![be(i.to_be_bytes()), Some(vec![b'x'; 100])])
        .collect();
    let bytes = stream(&rows);
    let chunks: Vec<&[u8]> = bytes.chunks(113).collect();
    let batches = decode_with(&columns, &chunks, 10_000).unwrap();
    // 8 + 4 + 100 bytes a row: a batch closes at the row that reaches 10 000 bytes.
    assert_eq!(batches[0].num_rows(), 90);
    assert_eq!(batches.len(), 12);
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1000);
    let ids: Vec<i64> = batches
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_primitive::<arrow::datatypes::Int64Type>()
                .values()
                .to_vec()
        })
        .collect();
    assert_eq!(ids, (0..1000).collect::<Vec<_>>());
}

/// Encodes `batch` to `target` and decodes the stream again.
fn round_trip(batch: &RecordBatch, target: &[(String, PgType)]) -> Result<RecordBatch, Error> {
    let enc = CopyInEncoder::new(&batch.schema(), target, CONTEXT.into())?;
    let mut buf = BytesMut::new();
    CopyInEncoder::header(&mut buf);
    enc.encode(batch, 1, &mut buf)?;
    CopyInEncoder::trailer(&mut buf);
    decode(target, &buf)
}

fn batch_of(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    RecordBatch::try_from_iter(columns).unwrap()
}

#[test]
fn encoded_batches_decode_to_the_same_values() {
    let columns = cols(&[
        ("i8", "bigint"),
        ("n", "numeric(38,10)"),
        ("nt", "numeric"),
        ("t", "character varying(10)"),
        ("jb", "jsonb"),
        ("u", "uuid"),
        ("d", "date"),
        ("ts", "timestamp with time zone"),
        ("iv", "interval"),
        ("by", "bytea"),
        ("a", "integer[]"),
    ]);
    let list = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
        Some(vec![Some(1), None]),
        Some(vec![]),
        None,
    ]);
    let list_type = arrow_type(&pg("integer[]")).unwrap();
    let batch = batch_of(vec![
        (
            "i8",
            Arc::new(Int64Array::from(vec![Some(i64::MAX), Some(-1), None])),
        ),
        (
            "n",
            Arc::new(
                Decimal128Array::from(vec![Some(i128::MAX / 10), Some(-5), None])
                    .with_precision_and_scale(38, 10)
                    .unwrap(),
            ),
        ),
        (
            "nt",
            Arc::new(StringArray::from(vec![
                Some("-123456789012345678901234567890.000000000000000000001"),
                Some("NaN"),
                None,
            ])),
        ),
        (
            "t",
            Arc::new(StringArray::from(vec![Some("ü"), Some(""), None])),
        ),
        (
            "jb",
            Arc::new(StringArray::from(vec![Some("{\"k\":1}"), Some("[]"), None])),
        ),
        (
            "u",
            Arc::new(
                FixedSizeBinaryArray::try_from_sparse_iter_with_size(
                    vec![Some([7u8; 16]), None, Some([0u8; 16])].into_iter(),
                    16,
                )
                .unwrap(),
            ),
        ),
        (
            "d",
            Arc::new(Date32Array::from(vec![Some(-2_440_588), Some(0), None])),
        ),
        (
            "ts",
            Arc::new(
                TimestampMicrosecondArray::from(vec![
                    Some(9_000_000_000_000_000_000),
                    Some(0),
                    None,
                ])
                .with_timezone("+00:00"),
            ),
        ),
        (
            "iv",
            Arc::new(IntervalMonthDayNanoArray::from(vec![
                Some(IntervalMonthDayNano::new(1, -2, 3_000)),
                None,
                Some(IntervalMonthDayNano::new(0, 0, 0)),
            ])),
        ),
        (
            "by",
            Arc::new(BinaryArray::from_opt_vec(vec![
                Some(b"\0\xff"),
                Some(b""),
                None,
            ])),
        ),
        ("a", Arc::new(list.clone())),
    ]);
    let back = round_trip(&batch, &columns).unwrap();
    for (i, c) in back.columns().iter().enumerate() {
        let name = batch.schema().field(i).name().clone();
        let expected = batch.column(i);
        if name == "a" {
            assert_eq!(c.data_type(), &list_type);
            assert_eq!(
                c.as_list::<i32>().value(0).as_primitive::<Int32Type>(),
                list.value(0).as_primitive::<Int32Type>()
            );
            assert!(c.as_list::<i32>().value(1).is_empty() && c.is_null(2));
        } else {
            assert_eq!(c.as_ref(), expected.as_ref(), "column {name}");
        }
    }
}

#[test]
fn encoder_converts_other_arrow_types_to_the_target() {
    let columns = cols(&[
        ("a", "bigint"),
        ("b", "integer"),
        ("c", "timestamp"),
        ("d", "date"),
        ("e", "uuid"),
        ("f", "numeric(10,2)"),
        ("g", "text"),
    ]);
    let batch = batch_of(vec![
        ("g", Arc::new(Float64Array::from(vec![1.5])) as ArrayRef),
        ("a", Arc::new(Int32Array::from(vec![-7]))),
        ("b", Arc::new(StringArray::from(vec!["42"]))),
        (
            "c",
            Arc::new(TimestampNanosecondArray::from(vec![1_500_000_999])),
        ),
        ("d", Arc::new(Date64Array::from(vec![86_400_000 * 3]))),
        (
            "e",
            Arc::new(StringArray::from(vec![
                "{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11}",
            ])),
        ),
        ("f", Arc::new(StringArray::from(vec!["12.5"]))),
    ]);
    let back = round_trip(&batch, &columns).unwrap();
    let p = |i: usize| back.column(i).clone();
    assert_eq!(
        p(0).as_primitive::<arrow::datatypes::Int64Type>().value(0),
        -7
    );
    assert_eq!(p(1).as_primitive::<Int32Type>().value(0), 42);
    assert_eq!(
        p(2).as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
            .value(0),
        1_500_000
    );
    assert_eq!(p(3).as_primitive::<Date32Type>().value(0), 3);
    assert_eq!(
        p(4).as_fixed_size_binary().value(0),
        &[
            0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38,
            0x0a, 0x11
        ]
    );
    assert_eq!(
        p(5).as_primitive::<arrow::datatypes::Decimal128Type>()
            .value(0),
        1250
    );
    assert_eq!(p(6).as_string::<i32>().value(0), "1.5");
}

#[test]
fn encoder_bytes_are_what_postgres_reads() {
    let batch = batch_of(vec![
        (
            "a",
            Arc::new(Int64Array::from(vec![Some(258), None])) as ArrayRef,
        ),
        (
            "j",
            Arc::new(StringArray::from(vec![Some("{}"), Some("[]")])),
        ),
    ]);
    let enc = CopyInEncoder::new(
        &batch.schema(),
        &cols(&[("a", "bigint"), ("j", "jsonb")]),
        CONTEXT.into(),
    )
    .unwrap();
    let mut buf = BytesMut::new();
    enc.encode(&batch, 1, &mut buf).unwrap();
    let expected: Vec<u8> = [
        &[0, 2][..],
        &[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 1, 2],
        &[0, 0, 0, 3, 1, b'{', b'}'],
        &[0, 2],
        &[0xff, 0xff, 0xff, 0xff],
        &[0, 0, 0, 3, 1, b'[', b']'],
    ]
    .concat();
    assert_eq!(&buf[..], expected.as_slice());
}

#[test]
fn values_the_target_cannot_take_are_bad_rows() {
    let check = |array: ArrayRef, ty: &str, expect: &[&str]| {
        let batch = batch_of(vec![("v", array)]);
        let enc = CopyInEncoder::new(&batch.schema(), &cols(&[("v", ty)]), CONTEXT.into()).unwrap();
        let e = enc.encode(&batch, 101, &mut BytesMut::new()).unwrap_err();
        let (shown, kept) = shown_and_kept(&e);
        assert!(
            shown.starts_with(CONTEXT) && shown.contains("column \"v\""),
            "{shown}"
        );
        for x in expect {
            assert!(
                shown.contains(x) || kept.contains(x),
                "{shown} / {kept} lack {x}"
            );
        }
    };
    check(
        Arc::new(StringArray::from(vec![Some("1"), None, Some("abc")])),
        "integer",
        &["row 103", "\"abc\"", "type integer", "Utf8"],
    );
    check(
        Arc::new(StringArray::from(vec!["not-a-uuid"])),
        "uuid",
        &["row 101", "\"not-a-uuid\"", "type uuid"],
    );
    check(
        Arc::new(StringArray::from(vec!["1.5x"])),
        "numeric",
        &["\"1.5x\"", "not a number"],
    );
    check(
        Arc::new(Date32Array::from(vec![i32::MAX])),
        "date",
        &["date range"],
    );
    check(
        Arc::new(StringArray::from(vec!["ok", "a\0b"])),
        "character varying(5)",
        &["row 102", "NUL character", "in a transform"],
    );
    check(
        Arc::new(StringArray::from(vec!["123456789"])),
        "numeric(5,2)",
        &["\"123456789\"", "numeric(5,2)"],
    );
    let long = "9".repeat(500) + "x";
    check(
        Arc::new(StringArray::from(vec![long.as_str()])),
        "bigint",
        &[long.as_str()],
    );
    let list = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![Some(vec![Some(1)])]);
    let schema = Schema::new(vec![Field::new("v", list.data_type().clone(), true)]);
    let e = CopyInEncoder::new(&schema, &cols(&[("v", "uuid")]), CONTEXT.into())
        .err()
        .unwrap();
    assert!(
        matches!(e, Error::Config(_)) && e.to_string().contains("cannot be converted"),
        "{e}"
    );
}

#[test]
fn timestamps_with_a_time_zone_keep_the_instant() {
    let columns = cols(&[("ts", "timestamp with time zone")]);
    let input = TimestampMicrosecondArray::from(vec![1_000_000]).with_timezone("UTC");
    let batch = batch_of(vec![("ts", Arc::new(input) as ArrayRef)]);
    let back = round_trip(&batch, &columns).unwrap();
    let ts = back
        .column(0)
        .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
    assert_eq!((ts.value(0), ts.timezone()), (1_000_000, Some("+00:00")));
}

#[test]
fn every_arrow_type_a_table_is_created_for_can_be_written_to_it() {
    use arrow::array::new_null_array;
    use arrow::datatypes::{IntervalUnit, TimeUnit};
    let uuid = Field::new("c", DataType::FixedSizeBinary(16), true).with_metadata(
        [(
            super::super::types::EXTENSION_NAME.to_string(),
            super::super::types::UUID_EXTENSION.to_string(),
        )]
        .into(),
    );
    let item = |t: DataType| Arc::new(Field::new("item", t, true));
    let types = [
        DataType::Boolean,
        DataType::Int8,
        DataType::Int16,
        DataType::UInt8,
        DataType::Int32,
        DataType::UInt16,
        DataType::Int64,
        DataType::UInt32,
        DataType::UInt64,
        DataType::Float16,
        DataType::Float32,
        DataType::Float64,
        DataType::Decimal128(10, 2),
        DataType::Decimal256(50, 10),
        DataType::Utf8,
        DataType::LargeUtf8,
        DataType::Utf8View,
        DataType::Binary,
        DataType::LargeBinary,
        DataType::BinaryView,
        DataType::FixedSizeBinary(8),
        DataType::Date32,
        DataType::Date64,
        DataType::Time32(TimeUnit::Millisecond),
        DataType::Time64(TimeUnit::Nanosecond),
        DataType::Timestamp(TimeUnit::Nanosecond, None),
        DataType::Timestamp(TimeUnit::Millisecond, Some("Europe/Berlin".into())),
        DataType::Interval(IntervalUnit::YearMonth),
        DataType::Interval(IntervalUnit::DayTime),
        DataType::Duration(TimeUnit::Millisecond),
        DataType::List(item(DataType::Int64)),
        DataType::LargeList(item(DataType::Utf8)),
        DataType::Null,
    ];
    let fields = types
        .iter()
        .map(|t| Field::new("c", t.clone(), true))
        .chain([uuid]);
    for field in fields {
        let ddl = super::super::types::ddl_type(&field).unwrap();
        let target = PgType::builtin(&ddl).unwrap_or_else(|| panic!("{ddl} is built in"));
        let schema = Arc::new(Schema::new(vec![field.clone()]));
        let batch =
            RecordBatch::try_new(schema.clone(), vec![new_null_array(field.data_type(), 2)])
                .unwrap();
        let back = round_trip(&batch, &[("c".into(), target)])
            .unwrap_or_else(|e| panic!("{} as {ddl}: {e}", field.data_type()));
        assert_eq!(back.column(0).null_count(), 2, "{ddl}");
    }
}

/// The message of a bad row and its record for the rejected file; the value the record holds
/// is not in the message (unless it names a kind of value the problem explains, like NaN).
fn shown_and_kept(e: &Error) -> (String, String) {
    let Error::BadRow(bad) = e else {
        panic!("not a bad row: {e:?}")
    };
    let shown = e.to_string();
    let record = bad.record();
    if let Some(value) = record["value"]
        .as_str()
        .filter(|v| !["NaN", "infinity", "-infinity"].contains(v))
    {
        assert!(!shown.contains(value), "{shown} shows {value}");
    }
    (shown, record.to_string())
}
