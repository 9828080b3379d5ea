use serde_json::{Value, json};

use crate::connectors::rest::records::{RECORD_KEYS, RecordsPath, locate};

fn rows(n: usize) -> Value {
    Value::Array((0..n).map(|i| json!({"id": i})).collect())
}

#[test]
fn a_top_level_array_is_the_records() {
    let body = rows(3);
    let path = locate(&body, None).unwrap();
    assert_eq!(path, RecordsPath(String::new()));
    assert_eq!(path.records(&body).unwrap().len(), 3);
}

#[test]
fn records_are_found_under_every_usual_key() {
    for key in RECORD_KEYS {
        let body = json!({"total": 2, "next": null, key: rows(2)});
        let path = locate(&body, None).unwrap();
        assert_eq!(path.0, format!("/{key}"), "key {key}");
        assert_eq!(path.records(&body).unwrap()[1]["id"], 1);
    }
}

#[test]
fn usual_keys_are_tried_in_order_and_one_level_deeper() {
    let body = json!({"items": rows(1), "data": rows(2)});
    assert_eq!(locate(&body, None).unwrap().0, "/data");
    let nested = json!({"data": {"total": 5, "results": rows(4)}, "meta": {}});
    let path = locate(&nested, None).unwrap();
    assert_eq!(path.0, "/data/results");
    assert_eq!(path.records(&nested).unwrap().len(), 4);
}

#[test]
fn an_empty_first_page_under_a_usual_key_is_records() {
    let body = json!({"results": [], "count": 0});
    let path = locate(&body, None).unwrap();
    assert_eq!(path.0, "/results");
    assert!(path.records(&body).unwrap().is_empty());
}

#[test]
fn the_only_array_of_objects_at_the_top_level() {
    let body = json!({"orders": rows(3), "tags": ["a", "b"], "count": 3});
    assert_eq!(locate(&body, None).unwrap().0, "/orders");
}

#[test]
fn several_arrays_of_objects_ask_for_records_path() {
    let body = json!({"orders": rows(1), "customers": rows(1)});
    let e = locate(&body, None).unwrap_err().to_string();
    assert!(
        e.contains("several arrays of objects (orders, customers)"),
        "{e}"
    );
    assert!(e.contains("set recordsPath"), "{e}");
}

#[test]
fn no_array_names_the_keys_and_the_fix() {
    let e = locate(&json!({"status": "ok", "count": 0}), None)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "no array of records in the response (top-level keys: status, count); set recordsPath to the JSON pointer of the records, e.g. /result/items"
    );
    let e = locate(&json!("text"), None).unwrap_err().to_string();
    assert!(e.contains("a string, not a JSON object"), "{e}");
}

#[test]
fn an_explicit_records_path_wins() {
    let body = json!({"data": rows(1), "result": {"items": rows(5)}});
    let path = locate(&body, Some("/result/items")).unwrap();
    assert_eq!(path.records(&body).unwrap().len(), 5);
    let e = locate(&body, Some("/result/missing"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "recordsPath \"/result/missing\" is not in the response (top-level keys: data, result)"
    );
    let e = locate(&body, Some("/result")).unwrap_err().to_string();
    assert!(e.contains("holds an object, not an array"), "{e}");
}

#[test]
fn a_later_page_without_the_key_has_no_records() {
    let path = RecordsPath("/data".into());
    assert!(path.records(&json!({"done": true})).unwrap().is_empty());
    assert!(path.records(&json!({"data": null})).unwrap().is_empty());
    let e = path.records(&json!({"data": 5})).unwrap_err().to_string();
    assert_eq!(e, "\"/data\" holds a number, not an array of records");
}

#[test]
fn keys_with_slashes_are_escaped() {
    let body = json!({"a/b": rows(2)});
    let path = locate(&body, None).unwrap();
    assert_eq!(path.0, "/a~1b");
    assert_eq!(path.records(&body).unwrap().len(), 2);
}
