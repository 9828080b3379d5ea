//! The `Pipeline` resource: a DAG of steps, compiled by the operator into an immutable plan.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;
use crate::run::RunPhase;
pub use crate::runner::{RunnerSpec, RunnerVolume};

/// A Pipeline is a DAG of steps. Edges come from `dependsOn` and from lineage: a step whose
/// source asset (connection + FQN) is another step's destination runs after it.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[kube(
    group = "synqx.io",
    version = "v1alpha1",
    kind = "Pipeline",
    doc = "Pipeline: a DAG of data steps, compiled by the operator into an immutable, versioned plan and run as Kubernetes Jobs.",
    namespaced,
    status = "PipelineStatus",
    shortname = "sqp",
    category = "synqx",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Steps","type":"integer","jsonPath":".status.summary.steps"}"#,
    printcolumn = r#"{"name":"Layers","type":"integer","jsonPath":".status.summary.layers"}"#,
    printcolumn = r#"{"name":"Schedule","type":"string","jsonPath":".spec.schedule.cron"}"#,
    printcolumn = r#"{"name":"Last Run","type":"string","jsonPath":".status.lastRun.name"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct PipelineSpec {
    /// The steps of the pipeline. Names are unique.
    // A list map keyed by name: the API server enforces unique names itself, at no CEL
    // cost, and server-side apply merges steps by name.
    #[schemars(length(max = 500))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
    pub steps: Vec<Step>,
    /// Run the pipeline on a cron schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// How many steps of one run may execute at once (default: all ready steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub parallelism: Option<u32>,
    /// Retry policy of every step (a step may override it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// What a failed step does to the rest of the run: `Stop` (start nothing new, let running
    /// steps finish) or `Continue` (finish every branch that does not depend on the failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<OnFailure>,
    /// Pod settings of the Jobs that run the steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner: Option<RunnerSpec>,
    /// Where the gateway keeps the step logs of this Pipeline's runs: an `s3` Connection in
    /// the Pipeline's namespace and a key prefix, instead of the operator's log store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<LogsSpec>,
    /// Succeeded PipelineRuns to keep (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub successful_runs_history_limit: Option<u32>,
    /// Failed PipelineRuns to keep (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_runs_history_limit: Option<u32>,
}

/// A log store in object storage: the bucket of an `s3` Connection, below a prefix.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogsSpec {
    /// Name of an `s3` Connection in the same namespace. Its Secrets must be labeled
    /// `synqx.io/connection-secret: "true"`, as for steps.
    #[schemars(length(min = 1, max = 253))]
    pub connection: String,
    /// Key prefix of the logs, below the Connection's own `prefix` (default `synqx-logs`).
    /// Each step attempt's log is a series of objects
    /// `<prefix>/<namespace>/<pipeline>/<run>/<step>/<attempt>/<end>.jsonl.gz`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// One node of the DAG. Exactly one body (`sync` or `sql`) is set.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("has(self.sync) != has(self.sql)").message("a step has exactly one body: sync or sql"))]
pub struct Step {
    /// Unique name within the pipeline: lower-case letters, digits and `-`, at most 63
    /// characters (it becomes part of Job names and labels).
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Steps that must succeed before this one starts (lineage adds more edges).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// Longest time one attempt may run, e.g. `30m` or `1h30m` (the Job's
    /// `activeDeadlineSeconds`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Retry policy of this step, replacing the pipeline's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// Move data from a source asset, through transforms, into a destination asset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncStep>,
    /// Run SQL statements on a connection (in-warehouse transformation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<SqlStep>,
}

impl PipelineSpec {
    /// Every Connection a step names, once each.
    pub fn connections(&self) -> std::collections::BTreeSet<&str> {
        self.steps.iter().flat_map(Step::connections).collect()
    }
}

impl Step {
    /// The Connections the step names: the source, destination and rejects of a `sync`, the
    /// Connection a `sql` step runs on.
    pub fn connections(&self) -> Vec<&str> {
        // Validation allows one of `sync` and `sql`; both are named should a step carry both,
        // so that no reader of this list (the pod's Secrets, the Pipeline's readiness) misses
        // one.
        let sync = self.sync.iter().flat_map(|s| {
            [&s.source.connection, &s.destination.connection]
                .into_iter()
                .chain(s.rejects.as_ref().map(|r| &r.connection))
                .map(String::as_str)
        });
        let sql = self.sql.iter().map(|q| q.connection.as_str());
        sync.chain(sql).collect()
    }
}

/// A data movement: `source -> transforms -> destination`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncStep {
    /// Where rows come from.
    pub source: Source,
    /// Transforms applied in order to every batch.
    // Bounded so the API server's CEL cost estimate for each transform's rule fits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub transforms: Vec<Transform>,
    /// Where rows go.
    pub destination: Destination,
    /// What a row that cannot be read or converted does: `fail` the step (default) or `skip`
    /// it into a dead-letter file, counted as rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_error: Option<OnError>,
    /// Where the step's rejected rows are kept for good, besides its rejected file (which a
    /// step's pod takes with it when it goes): a destination like `destination`, a folder
    /// or bucket prefix with `format: jsonl` or a table, always appended to. Each row has the
    /// run, step, location, column, problem, value and row of what was rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejects: Option<Destination>,
    /// Byte budget of one batch in flight, e.g. `2MiB` (default). Memory of a step is bounded
    /// by this budget times the channel depth, never by the size of the table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<String>,
}

/// A table, collection, API path or file location within a Connection.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Asset {
    /// Human name shown in lineage views.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Fully qualified name within the connection: `schema.table` for SQL systems, a path for
    /// files (`raw/orders/` is a folder of part files, `raw/orders/*.csv` a glob), a
    /// collection, key pattern or API path otherwise.
    #[schemars(length(min = 1))]
    pub fqn: String,
}

/// Where a sync step reads from.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    /// Name of a Connection in the same namespace.
    pub connection: String,
    /// The asset to read.
    pub asset: Asset,
    /// A query to run instead of reading the whole asset (SQL systems only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Read only rows whose cursor is above the stored watermark.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incremental: Option<Incremental>,
    /// File format (files only; inferred from the FQN's extension when omitted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<FileFormat>,
    /// Compression of the files (default: inferred from the extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<Compression>,
    /// CSV options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csv: Option<CsvOptions>,
    /// Column types that override schema inference, e.g. `{amount: decimal(12,2)}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub columns: BTreeMap<String, String>,
    /// REST: JSON pointer to the array of records in a response, e.g. `/result/items`; it
    /// overrides the Connection's `recordsPath`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records_path: Option<String>,
    /// REST: query parameters of every request for this asset, e.g. `{status: active}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, String>,
    /// REST: request headers for this asset (not secret), added to the Connection's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// REST and MongoDB: what a nested object becomes: `json` (default; a text column holding
    /// its JSON) or `flatten` (one column per field, `parent.child`, one level deep).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nested: Option<Nested>,
    /// MongoDB: a query filter as MongoDB Extended JSON, e.g. `{"status": "paid"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// MongoDB: a projection as MongoDB Extended JSON, e.g. `{"_id": 1, "total": 1}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projection: Option<String>,
    /// PostgreSQL tables: read with this many connections at once (1 to 64, default 1), each
    /// a range of the table's pages, all in one snapshot. Pays when the server has cores to
    /// spare; not for a `query`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<u32>,
}

impl Source {
    /// The step's `query` without the blanks and trailing semicolons a subquery cannot hold,
    /// or `None` when the step reads the whole asset.
    pub fn query_text(&self) -> Option<&str> {
        self.query
            .as_deref()
            .map(|q| {
                q.trim()
                    .trim_end_matches(|c: char| c == ';' || c.is_whitespace())
            })
            .filter(|q| !q.is_empty())
    }
}

/// What a nested object of a JSON or BSON document becomes in a table.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Nested {
    /// A text column holding the object's JSON.
    #[default]
    Json,
    /// One column per field of the object (`parent.child`), one level deep; deeper objects
    /// are JSON text.
    Flatten,
}

/// Incremental reading: only rows whose `cursor` column is above the watermark.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Incremental {
    /// Column whose maximum becomes the watermark, e.g. `updated_at`. For files, the
    /// pseudo-column `_file_modified` is the file's modification time.
    #[schemars(length(min = 1))]
    pub cursor: String,
    /// Watermark of the very first run (default: read everything).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial: Option<String>,
    /// Re-read this window below the watermark for late rows: a duration (`2h`) for time
    /// cursors or a number for numeric ones. Pair it with `upsert` to stay exact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookback: Option<String>,
}

/// Where a sync step writes to.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("!has(self.mode) || self.mode != 'upsert' || (has(self.primaryKey) && size(self.primaryKey) > 0)").message("mode upsert requires primaryKey"))]
pub struct Destination {
    /// Name of a Connection in the same namespace.
    pub connection: String,
    /// The asset to write.
    pub asset: Asset,
    /// `append` (default), `overwrite` (write aside, then swap atomically) or `upsert`
    /// (merge by `primaryKey`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<WriteMode>,
    /// Columns identifying a row, for `upsert`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub primary_key: Vec<String>,
    /// File format (files only; inferred from the FQN's extension when omitted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<FileFormat>,
    /// Compression of written files: `zstd` (default), `snappy`, `gzip`, `lz4`, `brotli` or
    /// `none` for Parquet; `gzip` or `none` for CSV/JSONL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<Compression>,
    /// Level of the compression: gzip 0–9 (default 6), zstd 1–22 (default 3), brotli 0–11
    /// (default 1). Snappy, lz4 and none have no levels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression_level: Option<i32>,
    /// Start a new part file once one reaches this size, e.g. `256MiB` (folders only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_size: Option<String>,
    /// CSV options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csv: Option<CsvOptions>,
    /// What a source column missing from the destination table does: `addColumns`
    /// (default), `fail` or `ignore` (drop it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_evolution: Option<SchemaEvolution>,
    /// Redis: how rows are written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisWrite>,
}

/// How rows are written to Redis. The asset FQN is a key template for `hash` and `json`
/// (`orders:{id}`: each `{column}` is replaced by the row's value) and the stream's key for
/// `stream`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedisWrite {
    /// `hash` (default: one field per column), `json` (the row as a JSON string) or
    /// `stream` (one `XADD` entry per row).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<RedisWriteKind>,
    /// Expiry of each written key, e.g. `24h` (`hash` and `json`; default: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
}

/// What a row becomes in Redis.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RedisWriteKind {
    #[default]
    Hash,
    Json,
    Stream,
}

impl Destination {
    /// The write mode, `append` when not given.
    pub fn mode(&self) -> WriteMode {
        self.mode.unwrap_or_default()
    }
}

/// Options of CSV files.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CsvOptions {
    /// Field delimiter, one character (default `,`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delimiter: Option<String>,
    /// Whether the first line names the columns (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<bool>,
}

/// Write mode of a destination: `append`, `overwrite` or `upsert`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum WriteMode {
    #[default]
    Append,
    Overwrite,
    Upsert,
}

/// Schema evolution of a destination: `addColumns`, `fail` or `ignore`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum SchemaEvolution {
    #[default]
    AddColumns,
    Fail,
    Ignore,
}

/// File format: `csv`, `jsonl` or `parquet`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum FileFormat {
    Csv,
    Jsonl,
    Parquet,
}

impl FileFormat {
    /// The format a path's extension implies (`orders.csv.gz` is CSV), if any.
    pub fn from_path(path: &str) -> Option<Self> {
        let name = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
        let name = name
            .strip_suffix(".gz")
            .or_else(|| name.strip_suffix(".zst"))
            .unwrap_or(&name);
        if name.ends_with(".csv") {
            Some(Self::Csv)
        } else if name.ends_with(".jsonl") || name.ends_with(".ndjson") {
            Some(Self::Jsonl)
        } else if name.ends_with(".parquet") {
            Some(Self::Parquet)
        } else {
            None
        }
    }
}

impl std::fmt::Display for FileFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Csv => "csv",
            Self::Jsonl => "jsonl",
            Self::Parquet => "parquet",
        })
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
            Self::Brotli => "brotli",
        })
    }
}

/// A `compressionLevel` the codec does not take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LevelError {
    #[error("{level} is not a {codec} level (use {} to {}; default {default})", range.start(), range.end())]
    OutOfRange {
        codec: Compression,
        level: i32,
        range: std::ops::RangeInclusive<i32>,
        default: i32,
    },
    #[error("{0} has no levels (gzip, zstd and brotli do)")]
    NoLevels(Compression),
}

/// Compression of files: `none`, `gzip`, `zstd`, `snappy`, `lz4` or `brotli`. Text files
/// take `gzip`; Parquet compresses its pages with any of them (`lz4` is Parquet's
/// `LZ4_RAW`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    Snappy,
    Lz4,
    Brotli,
}

impl Compression {
    /// The levels a codec takes and its default level; `None` for codecs without levels.
    pub fn levels(self) -> Option<(std::ops::RangeInclusive<i32>, i32)> {
        match self {
            Self::Gzip => Some((0..=9, 6)),
            Self::Zstd => Some((1..=22, 3)),
            Self::Brotli => Some((0..=11, 1)),
            Self::None | Self::Snappy | Self::Lz4 => None,
        }
    }

    /// Whether files of `format` can be written with this codec.
    pub fn applies_to(self, format: FileFormat) -> bool {
        match format {
            FileFormat::Parquet => true,
            FileFormat::Csv | FileFormat::Jsonl => matches!(self, Self::None | Self::Gzip),
        }
    }

    /// `level` checked against the codec's range, or the codec's default level; `None` for a
    /// codec without levels. The error says what is allowed.
    pub fn level(self, level: Option<i32>) -> Result<Option<i32>, LevelError> {
        match (self.levels(), level) {
            (Some((_, default)), None) => Ok(Some(default)),
            (Some((range, _)), Some(l)) if range.contains(&l) => Ok(Some(l)),
            (Some((range, default)), Some(level)) => Err(LevelError::OutOfRange {
                codec: self,
                level,
                range,
                default,
            }),
            (None, None) => Ok(None),
            (None, Some(_)) => Err(LevelError::NoLevels(self)),
        }
    }
}

/// Handling of bad rows: `fail` or `skip`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum OnError {
    #[default]
    Fail,
    Skip,
}

/// One transform. Exactly one field is set.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(
    "[has(self.select), has(self.drop), has(self.rename), has(self.cast), has(self.filter), has(self.derive), has(self.hash), has(self.sql)].filter(x, x).size() == 1"
).message("a transform has exactly one of select, drop, rename, cast, filter, derive, hash or sql"))]
pub struct Transform {
    /// Keep only these columns, in this order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub select: Option<Vec<String>>,
    /// Remove these columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop: Option<Vec<String>>,
    /// Rename columns: `{old: new}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rename: Option<BTreeMap<String, String>>,
    /// Change column types: `{column: type}`, e.g. `{total: decimal(12,2), day: date}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cast: Option<BTreeMap<String, String>>,
    /// Keep rows for which this SQL boolean expression is true, e.g. `status <> 'test'`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// Add or replace columns computed by SQL expressions: `{column: expression}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derive: Option<BTreeMap<String, String>>,
    /// Replace these columns by the hex SHA-256 of their values (for PII).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<Vec<String>>,
    /// A SQL query over the step input, which it names `input`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
}

impl Transform {
    /// The name of the transform kind that is set, for messages.
    pub fn kind_name(&self) -> &'static str {
        let kinds = [
            (self.select.is_some(), "select"),
            (self.drop.is_some(), "drop"),
            (self.rename.is_some(), "rename"),
            (self.cast.is_some(), "cast"),
            (self.filter.is_some(), "filter"),
            (self.derive.is_some(), "derive"),
            (self.hash.is_some(), "hash"),
            (self.sql.is_some(), "sql"),
        ];
        let set: Vec<&str> = kinds.iter().filter(|(s, _)| *s).map(|(_, n)| *n).collect();
        match set.as_slice() {
            [one] => one,
            [] => "empty",
            _ => "ambiguous",
        }
    }

    /// How many kinds are set (a valid transform has exactly one).
    pub fn kinds_set(&self) -> usize {
        [
            self.select.is_some(),
            self.drop.is_some(),
            self.rename.is_some(),
            self.cast.is_some(),
            self.filter.is_some(),
            self.derive.is_some(),
            self.hash.is_some(),
            self.sql.is_some(),
        ]
        .into_iter()
        .filter(|s| *s)
        .count()
    }
}

/// SQL statements run on one connection, in one transaction where the system allows it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SqlStep {
    /// Name of a Connection to a SQL system in the same namespace.
    pub connection: String,
    /// Statements, run in order.
    #[schemars(length(min = 1))]
    pub statements: Vec<String>,
}

/// A cron schedule that creates PipelineRuns.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    /// Five-field cron expression (`*/15 * * * *`) or a macro such as `@hourly`.
    pub cron: String,
    /// IANA time zone the expression is read in (default `UTC`), e.g. `Europe/Berlin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// What a due run does while another is active: `Allow`, `Forbid` (skip it; default) or
    /// `Replace` (cancel the active run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_policy: Option<ConcurrencyPolicy>,
    /// A run that could not start within this many seconds of its time is skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_deadline_seconds: Option<i64>,
    /// Create no new runs while true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
}

/// Concurrency policy of a schedule: `Allow`, `Forbid` or `Replace`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ConcurrencyPolicy {
    Allow,
    #[default]
    Forbid,
    Replace,
}

/// Behaviour of a run after a step failed: `Stop` or `Continue`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum OnFailure {
    #[default]
    Stop,
    Continue,
}

/// How failed attempts are retried. Each attempt is a new, visible Job.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    /// Retries after the first attempt (default 0).
    #[schemars(range(min = 0, max = 100))]
    pub limit: u32,
    /// Delay between attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,
}

/// Exponential backoff: `initial`, multiplied by `factor` after every attempt, capped at `max`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Backoff {
    /// First delay, e.g. `10s` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial: Option<String>,
    /// Multiplier per attempt (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<f64>,
    /// Longest delay, e.g. `5m` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<String>,
}

/// Observed state of a Pipeline.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PipelineStatus {
    /// `Ready` (compiled, connections ready) or `Invalid` with the exact reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Generation of the spec the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Name of the ControllerRevision holding the current compiled plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// SHA-256 of the current plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_hash: Option<String>,
    /// Size of the DAG.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<PlanSummary>,
    /// Steps of each parallel layer, in execution order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<Vec<String>>,
    /// Committed high-watermark of each incremental step.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub watermarks: BTreeMap<String, Watermark>,
    /// The most recent run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<RunReference>,
    /// When the schedule fires next (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<String>,
    /// The last fire time the schedule handled (a run created, or skipped by policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<String>,
}

/// Size of a compiled DAG.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanSummary {
    /// Number of steps.
    pub steps: u32,
    /// Number of edges (dependsOn and lineage).
    pub edges: u32,
    /// Number of parallel layers.
    pub layers: u32,
    /// Steps on the longest dependency chain.
    pub critical_path: u32,
}

/// A committed high-watermark.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Watermark {
    /// The cursor value up to which rows were loaded and committed.
    pub value: String,
    /// The run that committed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// When it was committed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

/// A reference to a PipelineRun with its outcome.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunReference {
    /// Name of the PipelineRun.
    pub name: String,
    /// Its phase when last seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RunPhase>,
    /// When it started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_names_every_connection_it_uses() {
        let step = |yaml: &str| -> Step {
            serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{e}: {yaml}"))
        };
        let sync = "{name: load, sync: {source: {connection: db, asset: {fqn: t}}, destination: {connection: lake, asset: {fqn: t}}}}";
        let sql = "{name: merge, sql: {connection: warehouse, statements: [select 1]}}";
        let both = "{name: odd, sync: {source: {connection: db, asset: {fqn: t}}, destination: {connection: lake, asset: {fqn: t}}}, sql: {connection: warehouse, statements: [select 1]}}";
        assert_eq!(step(sync).connections(), ["db", "lake"]);
        assert_eq!(step(sql).connections(), ["warehouse"]);
        let rejects = "{name: load, sync: {source: {connection: db, asset: {fqn: t}}, destination: {connection: lake, asset: {fqn: t}}, rejects: {connection: dlq, asset: {fqn: rejects/}, format: jsonl}}}";
        assert_eq!(step(rejects).connections(), ["db", "lake", "dlq"]);
        // The CRD refuses a step with both bodies; should one get through, none is missed.
        assert_eq!(step(both).connections(), ["db", "lake", "warehouse"]);
    }

    #[test]
    fn a_query_loses_its_trailing_semicolons_and_an_empty_one_reads_the_asset() {
        let mut source = Source::default();
        assert_eq!(source.query_text(), None);
        source.query = Some("  SELECT 1; ;\n".into());
        assert_eq!(source.query_text(), Some("SELECT 1"));
        source.query = Some(" ; ".into());
        assert_eq!(source.query_text(), None);
    }
}
