//! Checks of the source and destination fields that belong to one kind of system: REST
//! `recordsPath`, `params` and `headers`, MongoDB `filter` and `projection`, `nested`, and
//! the Redis write options. Pure: each returns `(field, message)` pairs below `sync.source`
//! or `sync.destination`.

use crate::connection::ConnectorKind;
use crate::duration::parse_duration;
use crate::pipeline::{Destination, RedisWriteKind, Source, WriteMode};

/// Problems of the connector-specific fields of a source on a Connection of `kind`.
pub fn source_options(source: &Source, kind: ConnectorKind) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let conn = &source.connection;
    let mut only = |field: &str, set: bool, wanted: &[ConnectorKind], what: &str| {
        if set && !wanted.contains(&kind) {
            out.push((
                format!("sync.source.{field}"),
                format!("applies only to {what}; \"{conn}\" is a {kind} Connection"),
            ));
        }
    };
    let rest = [ConnectorKind::Rest];
    let mongo = [ConnectorKind::Mongodb];
    only(
        "recordsPath",
        source.records_path.is_some(),
        &rest,
        "REST APIs",
    );
    only("params", !source.params.is_empty(), &rest, "REST APIs");
    only("headers", !source.headers.is_empty(), &rest, "REST APIs");
    only("filter", source.filter.is_some(), &mongo, "MongoDB");
    only("projection", source.projection.is_some(), &mongo, "MongoDB");
    only(
        "nested",
        source.nested.is_some(),
        &[ConnectorKind::Rest, ConnectorKind::Mongodb],
        "REST APIs and MongoDB",
    );
    if let Some(path) = &source.records_path
        && !path.is_empty()
        && !path.starts_with('/')
    {
        out.push((
            "sync.source.recordsPath".to_string(),
            format!("\"{path}\" is not a JSON pointer: start it with '/', e.g. /result/items"),
        ));
    }
    for (field, text) in [
        ("filter", &source.filter),
        ("projection", &source.projection),
    ] {
        if let Some(text) = text {
            match serde_json::from_str::<serde_json::Value>(text) {
                Ok(serde_json::Value::Object(_)) => {}
                Ok(_) => out.push((
                    format!("sync.source.{field}"),
                    "must be a JSON object, e.g. {\"status\": \"paid\"}".to_string(),
                )),
                Err(e) => out.push((
                    format!("sync.source.{field}"),
                    format!("is not valid JSON: {e}"),
                )),
            }
        }
    }
    out
}

/// Problems of the connector-specific fields of a destination on a Connection of `kind`.
pub fn destination_options(dest: &Destination, kind: ConnectorKind) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let conn = &dest.connection;
    let Some(redis) = &dest.redis else {
        return out;
    };
    if kind != ConnectorKind::Redis {
        out.push((
            "sync.destination.redis".to_string(),
            format!("applies only to Redis; \"{conn}\" is a {kind} Connection"),
        ));
        return out;
    }
    let write = redis.kind.unwrap_or_default();
    if let Some(ttl) = &redis.ttl {
        if write == RedisWriteKind::Stream {
            out.push((
                "sync.destination.redis.ttl".to_string(),
                "applies to hash and json keys; a stream is one key that keeps growing".to_string(),
            ));
        } else if let Err(e) = parse_duration(ttl) {
            out.push(("sync.destination.redis.ttl".to_string(), e.to_string()));
        }
    }
    if write != RedisWriteKind::Stream && !dest.asset.fqn.contains('{') {
        out.push((
            "sync.destination.asset.fqn".to_string(),
            format!(
                "\"{}\" is a key template for {} keys and needs at least one {{column}}, e.g. orders:{{id}}",
                dest.asset.fqn,
                if write == RedisWriteKind::Json { "json" } else { "hash" }
            ),
        ));
    }
    if write == RedisWriteKind::Stream && dest.mode() == WriteMode::Upsert {
        out.push((
            "sync.destination.mode".to_string(),
            "a stream only appends entries; upsert needs hash or json keys".to_string(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{Asset, RedisWrite};

    fn fields(problems: &[(String, String)]) -> Vec<&str> {
        problems.iter().map(|(f, _)| f.as_str()).collect()
    }

    #[test]
    fn rest_fields_are_rejected_elsewhere() {
        let source = Source {
            connection: "db".into(),
            records_path: Some("/items".into()),
            params: [("a".to_string(), "1".to_string())].into(),
            ..Default::default()
        };
        let problems = source_options(&source, ConnectorKind::Postgres);
        assert_eq!(
            fields(&problems),
            ["sync.source.recordsPath", "sync.source.params"]
        );
        assert!(problems[0].1.contains("\"db\" is a postgres Connection"));
        assert!(source_options(&source, ConnectorKind::Rest).is_empty());
    }

    #[test]
    fn records_path_is_a_json_pointer() {
        let source = Source {
            records_path: Some("result.items".into()),
            ..Default::default()
        };
        let problems = source_options(&source, ConnectorKind::Rest);
        assert_eq!(fields(&problems), ["sync.source.recordsPath"]);
        assert!(problems[0].1.contains("start it with '/'"));
    }

    #[test]
    fn mongo_filter_must_be_a_json_object() {
        let mut source = Source {
            filter: Some("{\"status\": ".into()),
            projection: Some("[1]".into()),
            ..Default::default()
        };
        let problems = source_options(&source, ConnectorKind::Mongodb);
        assert_eq!(
            fields(&problems),
            ["sync.source.filter", "sync.source.projection"]
        );
        assert!(problems[0].1.contains("is not valid JSON"));
        assert!(problems[1].1.contains("must be a JSON object"));
        source.filter = Some("{\"status\": \"paid\"}".into());
        source.projection = None;
        assert!(source_options(&source, ConnectorKind::Mongodb).is_empty());
    }

    #[test]
    fn redis_write_options() {
        let mut dest = Destination {
            connection: "cache".into(),
            asset: Asset {
                fqn: "orders".into(),
                name: None,
            },
            redis: Some(RedisWrite {
                kind: None,
                ttl: Some("soon".into()),
            }),
            ..Default::default()
        };
        let problems = destination_options(&dest, ConnectorKind::Redis);
        assert_eq!(
            fields(&problems),
            ["sync.destination.redis.ttl", "sync.destination.asset.fqn"]
        );
        dest.asset.fqn = "orders:{id}".into();
        dest.redis = Some(RedisWrite {
            kind: None,
            ttl: Some("1h".into()),
        });
        assert!(destination_options(&dest, ConnectorKind::Redis).is_empty());
        assert_eq!(
            fields(&destination_options(&dest, ConnectorKind::Postgres)),
            ["sync.destination.redis"]
        );
        dest.asset.fqn = "events".into();
        dest.mode = Some(WriteMode::Upsert);
        dest.redis = Some(RedisWrite {
            kind: Some(RedisWriteKind::Stream),
            ttl: Some("1h".into()),
        });
        assert_eq!(
            fields(&destination_options(&dest, ConnectorKind::Redis)),
            ["sync.destination.redis.ttl", "sync.destination.mode"]
        );
    }
}
