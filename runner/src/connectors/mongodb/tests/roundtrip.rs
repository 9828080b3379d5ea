//! The MongoDB source and sink against FerretDB: every BSON type FerretDB stores (not
//! decimal128: FerretDB v1 refuses it; its mapping is unit-tested in `types`) read and written back,
//! each write mode, filter and projection, incremental reads, a failed overwrite that leaves
//! the old collection, bad credentials and an unreachable server.

use std::sync::Arc;

use arrow::array::{Array, AsArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Float64Type, Int32Type, Int64Type, Schema};
use mongodb::bson::{self, Bson, Document, doc};
use synqx_api::pipeline::{Nested, Source as SourceSpec, WriteMode};

use super::support::{check, connection, documents, raw, read, uri, write};
use crate::connectors::tests::field_names;
use crate::engine::CursorFilter;
use crate::engine::cursor::MaxTracker;
use crate::error::Error;
use synqx_testkit::unique_name;

const DB: &str = "synqx_tests";

fn binary(subtype: u8, bytes: Vec<u8>) -> Bson {
    Bson::Binary(bson::Binary {
        subtype: subtype.into(),
        bytes,
    })
}

fn every_type(i: i64) -> Document {
    let uuid = binary(4, (0..16).map(|b| b * 7 + i as u8).collect());
    let id = bson::oid::ObjectId::parse_str(format!("85a1b2c3d4e5f607182930{i:02x}")).unwrap();
    let at = bson::DateTime::from_millis(1_600_000_000_007 + i);
    doc! {
        "_id": bson::oid::ObjectId::parse_str(format!("65a1b2c3d4e5f607182930{i:02x}")).unwrap(),
        "n32": i as i32,
        "n64": (1_i64 << 40) + i,
        "price": i as f64 + 0.25,
        "name": format!("doc {i} ü \"q\""),
        "ok": i % 2 == 0,
        "at": bson::DateTime::from_millis(1_700_000_000_000 + i * 1000),
        "blob": binary(0, vec![i as u8, 255]),
        "sub": {"city": format!("c{i}"), "zip": i as i32, "big": (1_i64 << 40) + i, "uuid": uuid.clone(),
                "owner": id, "seen": at, "md5": binary(5, vec![i as u8; 16]),
                "lines": [{"qty": i as i32 + 1, "sku": binary(0x80, vec![i as u8])}]},
        "tags": ["a", i as i32],
        "maybe": if i == 0 { Bson::Null } else { Bson::String("x".into()) },
        "ref": bson::oid::ObjectId::parse_str(format!("75a1b2c3d4e5f607182930{i:02x}")).unwrap(),
        "uuid": uuid,
        "custom": binary(0x80, vec![i as u8, 1, 2]),
        "ts": Bson::Timestamp(bson::Timestamp { time: 1_700_000_000 + i as u32, increment: 3 }),
    }
}

/// The metadata mark of column `name`.
fn mark<'a>(schema: &'a Schema, name: &str) -> Option<&'a str> {
    schema
        .field_with_name(name)
        .unwrap_or_else(|e| panic!("{e}"))
        .metadata()
        .get(super::super::shape::BSON_TYPE)
        .map(String::as_str)
}

fn strings(batches: &[RecordBatch], column: &str) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            let c = b
                .column_by_name(column)
                .unwrap_or_else(|| panic!("no {column} in {:?}", b.schema()));
            (0..c.len())
                .map(|r| c.as_string::<i32>().value(r).to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn every_type_reads_into_arrow_and_writes_back() {
    let db = raw(DB).await;
    let source_name = unique_name("m_types");
    db.collection::<Document>(&source_name)
        .insert_many((0..3).map(every_type))
        .await
        .unwrap();
    let conn = connection(&uri(), DB);
    let batches = read(&conn, SourceSpec::default(), &source_name, None)
        .await
        .unwrap();
    let schema = batches[0].schema();
    let types: Vec<(&str, DataType)> = schema
        .fields()
        .iter()
        .map(|f| (f.name().as_str(), f.data_type().clone()))
        .collect();
    assert_eq!(
        types[..6],
        [
            ("_id", DataType::Utf8),
            ("n32", DataType::Int32),
            ("n64", DataType::Int64),
            ("price", DataType::Float64),
            ("name", DataType::Utf8),
            ("ok", DataType::Boolean),
        ]
    );
    assert!(
        matches!(&types[6], ("at", DataType::Timestamp(_, Some(_)))),
        "{:?}",
        types[6]
    );
    assert_eq!(
        types[7..],
        [
            ("blob", DataType::Utf8),
            ("sub", DataType::Utf8),
            ("tags", DataType::Utf8),
            ("maybe", DataType::Utf8),
            ("ref", DataType::Utf8),
            ("uuid", DataType::Utf8),
            ("custom", DataType::Utf8),
            ("ts", DataType::Int64),
        ]
    );
    assert_eq!(
        ["_id", "ref", "blob", "uuid", "custom", "ts"].map(|c| mark(&schema, c)),
        [
            Some("objectId"),
            Some("objectId"),
            Some("binData"),
            Some("binData:04"),
            Some("binData:80"),
            Some("timestamp")
        ]
    );
    // What JSON text cannot say about the nested values, recorded for the way back.
    let nested = |c: &str| {
        schema
            .field_with_name(c)
            .unwrap()
            .metadata()
            .get("synqx.bson.nested")
            .map(|t| serde_json::from_str::<serde_json::Value>(t).unwrap())
    };
    assert_eq!(
        nested("sub"),
        Some(serde_json::json!({"fields": {
            "zip": {"int": "int32"}, "uuid": {"str": "binData:04"}, "owner": {"str": "objectId"},
            "seen": {"str": "date"}, "md5": {"str": "binData:05"},
            "lines": {"items": {"fields": {"qty": {"int": "int32"}, "sku": {"str": "binData:80"}}}},
        }}))
    );
    assert_eq!(
        nested("tags"),
        Some(serde_json::json!({"items": {"int": "int32"}}))
    );
    assert_eq!(
        (mark(&schema, "name"), mark(&schema, "maybe")),
        (None, None)
    );
    assert_eq!(
        schema
            .field_with_name("sub")
            .unwrap()
            .metadata()
            .get("ARROW:extension:name")
            .map(String::as_str),
        Some("arrow.json")
    );
    let b = &batches[0];
    assert_eq!(strings(&batches, "_id")[1], "65a1b2c3d4e5f60718293001");
    assert_eq!(
        b.column_by_name("n64")
            .unwrap()
            .as_primitive::<Int64Type>()
            .value(2),
        (1 << 40) + 2
    );
    assert_eq!(
        b.column_by_name("price")
            .unwrap()
            .as_primitive::<Float64Type>()
            .value(1),
        1.25
    );
    assert_eq!(strings(&batches, "name")[2], "doc 2 ü \"q\"");
    assert_eq!(strings(&batches, "blob")[1], "Af8=");
    // Plain JSON for every other destination.
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&strings(&batches, "sub")[2]).unwrap(),
        serde_json::json!({"city": "c2", "zip": 2, "big": (1_i64 << 40) + 2,
            "uuid": "AgkQFx4lLDM6QUhPVl1kaw==", "owner": "85a1b2c3d4e5f60718293002",
            "seen": "2020-09-13T12:26:40.009Z", "md5": "AgICAgICAgICAgICAgICAg==",
            "lines": [{"qty": 3, "sku": "Ag=="}]})
    );
    assert!(b.column_by_name("maybe").unwrap().is_null(0));

    // Written back: every value as it was, in its BSON type (objectIds, binData of each
    // subtype, int32 and timestamps included), inside objects and arrays too.
    let copy = unique_name("m_types_copy");
    let out = write(
        &conn,
        &copy,
        WriteMode::Append,
        &[],
        batches.into_iter().map(Ok).collect(),
    )
    .await
    .unwrap();
    assert_eq!(out.rows, 3);
    let back = documents(&db, &copy, "_id").await;
    assert_eq!(back.len(), 3);
    for (i, got) in back.iter().enumerate() {
        let n = i as i64;
        let mut expected = every_type(n);
        if n == 0 {
            expected.remove("maybe");
        }
        assert_eq!(got, &expected, "document {i}");
        // Document equality ignores neither types nor subtypes; said once more, plainly.
        let sub = got.get_document("sub").unwrap();
        assert!(matches!(got.get("n32"), Some(Bson::Int32(_))), "{got:?}");
        assert!(matches!(sub.get("zip"), Some(Bson::Int32(_))), "{sub:?}");
        assert!(
            matches!(sub.get("uuid"), Some(Bson::Binary(b)) if b.subtype == bson::spec::BinarySubtype::Uuid),
            "{sub:?}"
        );
    }
    assert!(
        back[0].get("maybe").is_none(),
        "nulls are left out: {:?}",
        back[0]
    );
}

#[tokio::test]
async fn filter_projection_and_flatten() {
    let db = raw(DB).await;
    let name = unique_name("m_filter");
    db.collection::<Document>(&name)
        .insert_many((0..6).map(every_type))
        .await
        .unwrap();
    let conn = connection(&uri(), DB);
    let spec = SourceSpec {
        filter: Some(r#"{"ok": true, "n32": {"$gte": 2}}"#.into()),
        projection: Some(r#"{"n32": 1, "sub": 1}"#.into()),
        nested: Some(Nested::Flatten),
        ..Default::default()
    };
    let batches = read(&conn, spec, &name, None).await.unwrap();
    let schema = batches[0].schema();
    assert_eq!(
        field_names(&schema),
        [
            "_id",
            "n32",
            "sub.city",
            "sub.zip",
            "sub.big",
            "sub.uuid",
            "sub.owner",
            "sub.seen",
            "sub.md5",
            "sub.lines"
        ]
    );
    // Flattened fields are typed and marked as top-level ones.
    assert_eq!(
        (
            schema.field_with_name("sub.zip").unwrap().data_type(),
            schema.field_with_name("sub.big").unwrap().data_type(),
            mark(&schema, "sub.uuid"),
            mark(&schema, "sub.owner"),
        ),
        (
            &DataType::Int32,
            &DataType::Int64,
            Some("binData:04"),
            Some("objectId")
        )
    );
    let n: Vec<i32> = batches
        .iter()
        .flat_map(|b| {
            b.column_by_name("n32")
                .unwrap()
                .as_primitive::<Int32Type>()
                .values()
                .to_vec()
        })
        .collect();
    assert_eq!(n, [2, 4]);
    assert_eq!(strings(&batches, "sub.city"), ["c2", "c4"]);
}

fn rows(ids: &[i64], names: &[&str]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(ids.to_vec())),
            Arc::new(StringArray::from(names.to_vec())),
        ],
    )
    .unwrap()
}

/// `(id, name)` rows.
type Pairs = Vec<(i64, String)>;

/// The `(id, name)` of every document of `collection`, by id.
async fn pairs(db: &mongodb::Database, collection: &str) -> Pairs {
    documents(db, collection, "id")
        .await
        .iter()
        .map(|d| {
            (
                d.get_i64("id").unwrap(),
                d.get_str("name").unwrap().to_string(),
            )
        })
        .collect()
}

/// No collection a load staged beside `collection` is left.
async fn nothing_staged(db: &mongodb::Database, collection: &str) {
    let names = db.list_collection_names().await.unwrap();
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with(&format!("{collection}__synqx"))),
        "staged collection left: {names:?}"
    );
}

#[tokio::test]
async fn append_upsert_and_overwrite() {
    let db = raw(DB).await;
    let name = unique_name("m_modes");
    let conn = connection(&uri(), DB);
    let pair = |id: i64, name: &str| (id, name.to_string());
    // Each write, then the whole collection.
    let steps: [(WriteMode, &[&str], RecordBatch, Pairs); 4] = [
        (
            WriteMode::Append,
            &[],
            rows(&[1, 2], &["a", "b"]),
            vec![pair(1, "a"), pair(2, "b")],
        ),
        (
            WriteMode::Append,
            &[],
            rows(&[3], &["c"]),
            vec![pair(1, "a"), pair(2, "b"), pair(3, "c")],
        ),
        (
            WriteMode::Upsert,
            &["id"],
            rows(&[2, 4], &["B", "d"]),
            vec![pair(1, "a"), pair(2, "B"), pair(3, "c"), pair(4, "d")],
        ),
        (
            WriteMode::Overwrite,
            &[],
            rows(&[9], &["z"]),
            vec![pair(9, "z")],
        ),
    ];
    for (mode, key, batch, expected) in steps {
        let sent = batch.num_rows() as u64;
        let out = write(&conn, &name, mode, key, vec![Ok(batch)])
            .await
            .unwrap();
        assert_eq!(out.rows, sent, "{mode:?}");
        assert_eq!(pairs(&db, &name).await, expected, "after {mode:?}");
    }
    nothing_staged(&db, &name).await;
}

#[tokio::test]
async fn a_failed_overwrite_leaves_the_old_collection() {
    let db = raw(DB).await;
    let name = unique_name("m_killed");
    let conn = connection(&uri(), DB);
    write(
        &conn,
        &name,
        WriteMode::Append,
        &[],
        vec![Ok(rows(&[1, 2], &["a", "b"]))],
    )
    .await
    .unwrap();
    let failed = write(
        &conn,
        &name,
        WriteMode::Overwrite,
        &[],
        vec![
            Ok(rows(&[7, 8], &["x", "y"])),
            Err(Error::Config("source died".into())),
        ],
    )
    .await;
    assert!(failed.is_err());
    assert_eq!(pairs(&db, &name).await, [(1, "a".into()), (2, "b".into())]);
    nothing_staged(&db, &name).await;
}

#[tokio::test]
async fn incremental_reads_push_the_cursor_down_in_its_type() {
    let db = raw(DB).await;
    let name = unique_name("m_incr");
    let coll = db.collection::<Document>(&name);
    coll.insert_many((0..5).map(every_type)).await.unwrap();
    let conn = connection(&uri(), DB);
    let mut watermark = None;
    for (run, expected) in [(1, vec![0, 1, 2, 3, 4]), (2, vec![5, 6]), (3, vec![])] {
        if run == 2 {
            coll.insert_many((5..7).map(every_type)).await.unwrap();
        }
        let filter = watermark.clone().map(|after| CursorFilter {
            column: "at".into(),
            after,
        });
        let batches = read(&conn, SourceSpec::default(), &name, filter)
            .await
            .unwrap();
        let mut tracker = MaxTracker::new("at");
        let mut n = Vec::new();
        for b in &batches {
            tracker.observe(b).unwrap();
            n.extend(
                b.column_by_name("n32")
                    .unwrap()
                    .as_primitive::<Int32Type>()
                    .values()
                    .iter()
                    .copied(),
            );
        }
        assert_eq!(n, expected, "run {run}");
        if let Some(v) = tracker.value().unwrap() {
            watermark = Some(v);
        }
    }
    assert_eq!(watermark.as_deref(), Some("2023-11-14T22:13:26Z"));
}

#[tokio::test]
async fn bad_credentials_and_unreachable_servers_are_clear_and_redacted() {
    let _ = raw(DB).await;
    let wrong = uri().replace("synqx:synqx@", "synqx:Wr0ngPassw0rd@");
    assert_ne!(wrong, uri(), "the test URI has the synqx:synqx credentials");
    let conn = connection(&wrong, DB);
    let e = read(&conn, SourceSpec::default(), "anything", None)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.starts_with("Connection \"docs\", collection \"synqx_tests.anything\": reading MongoDB:"),
        "{e}"
    );
    assert!(e.contains("check the user and password"), "{e}");
    assert!(!e.contains("Wr0ngPassw0rd"), "{e}");
    let report = check(&conn).await;
    assert_eq!(report.reason.as_str(), "Unauthorized", "{report:?}");
    assert!(!report.message.contains("Wr0ngPassw0rd"));
    let report = check(&connection(&uri(), DB)).await;
    assert!(report.ready, "{report:?}");
    let down = connection(
        "mongodb://synqx:secret-pw@127.0.0.1:9/?serverSelectionTimeoutMS=500&connectTimeoutMS=500",
        DB,
    );
    let report = check(&down).await;
    assert_eq!(report.reason.as_str(), "Unreachable", "{report:?}");
    assert!(!report.message.contains("secret-pw"), "{report:?}");
}

#[tokio::test]
async fn schema_drift_after_the_sample_names_the_document_and_field() {
    let db = raw(DB).await;
    let name = unique_name("m_drift");
    let coll = db.collection::<Document>(&name);
    coll.insert_many((0..1000).map(|i| doc! {"i": i, "n": i}))
        .await
        .unwrap();
    coll.insert_one(doc! {"i": 1000, "n": "not a number"})
        .await
        .unwrap();
    let conn = connection(&uri(), DB);
    let e = read(&conn, SourceSpec::default(), &name, None)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains(&format!(
            "collection \"synqx_tests.{name}\": documents 1..1001, record 1001"
        )),
        "{e}"
    );
    assert!(
        e.contains("field \"n\" is a string, but the column is int32"),
        "{e}"
    );
    // The value stays in the rejected file: the message carries the place and the problem.
    assert!(!e.contains("not a number"), "{e}");
}
