//! Checks of Pipeline and PipelineRun documents, and compilation of each Pipeline.

use super::{Bundle, Doc, Problem, name_of};
use crate::connection::ConnectorKind;
use crate::dag::{self, DagError, Plan};
use crate::duration::{parse_bytes, parse_duration};
use crate::pipeline::{
    Compression, Destination, FileFormat, Pipeline, Source, Step, SyncStep, Transform, WriteMode,
};
use crate::schedule::{parse_cron, parse_time_zone};
use crate::types::LogicalType;

/// Collects the problems of one Pipeline.
struct Checker<'a> {
    bundle: &'a Bundle,
    file: &'a str,
    resource: String,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn push(&mut self, step: Option<&str>, field: Option<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.to_string(),
            resource: Some(self.resource.clone()),
            step: step.map(str::to_string),
            field,
            message: message.into(),
            ..Default::default()
        });
    }

    fn step(&mut self, step: &Step, field: impl Into<String>, message: impl Into<String>) {
        let field = field.into();
        self.push(
            Some(&step.name),
            (!field.is_empty()).then_some(field),
            message,
        );
    }

    /// The kind of a Connection named by a step, when the files hold Connections at all.
    /// `Err(())` after reporting a reference to a Connection that is not there.
    fn connection_kind(
        &mut self,
        step: &Step,
        role: &str,
        name: &str,
    ) -> Result<Option<ConnectorKind>, ()> {
        if (self.bundle.connections.is_empty() && !self.bundle.connections_complete)
            || self.bundle.is_unreadable("Connection", name)
        {
            return Ok(None);
        }
        match self.bundle.connection(name) {
            Some(c) => Ok(c.spec.kind()),
            None => {
                let mut names: Vec<&str> = self
                    .bundle
                    .connections
                    .iter()
                    .map(|d| name_of(&d.object.metadata))
                    .collect();
                names.sort_unstable();
                let known = if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                };
                self.step(
                    step,
                    "",
                    format!("{role} connection \"{name}\" does not exist (connections: {known})"),
                );
                Err(())
            }
        }
    }
}

/// Checks one Pipeline and compiles it; returns the plan when the Pipeline is valid.
pub(super) fn check(
    bundle: &Bundle,
    doc: &Doc<Pipeline>,
    problems: &mut Vec<Problem>,
) -> Option<Plan> {
    let pipeline = &doc.object;
    let mut c = Checker {
        bundle,
        file: &doc.file,
        resource: format!("Pipeline/{}", name_of(&pipeline.metadata)),
        problems: Vec::new(),
    };
    let spec = &pipeline.spec;
    if let Some(schedule) = &spec.schedule {
        if let Err(e) = parse_cron(&schedule.cron) {
            c.push(None, Some("spec.schedule.cron".into()), e.to_string());
        }
        if let Some(tz) = &schedule.time_zone
            && let Err(e) = parse_time_zone(tz)
        {
            c.push(None, Some("spec.schedule.timeZone".into()), e.to_string());
        }
    }
    for (field, message) in super::limits::pipeline_problems(spec) {
        c.push(None, Some(format!("spec.{field}")), message);
    }
    if let Some(runner) = &spec.runner {
        for (field, message) in crate::runner::problems(runner) {
            c.push(None, Some(format!("spec.runner.{field}")), message);
        }
    }
    for step in &spec.steps {
        check_step(&mut c, step);
    }
    let plan = match dag::compile(spec, &bundle.connection_specs()) {
        Ok(plan) => Some(plan),
        Err(errors) => {
            for e in errors {
                let step = match &e {
                    DagError::UnknownDependency { step, .. }
                    | DagError::SelfDependency { step } => Some(step.as_str()),
                    _ => None,
                };
                c.push(step, None, e.to_string());
            }
            None
        }
    };
    let valid = c.problems.is_empty();
    problems.append(&mut c.problems);
    plan.filter(|_| valid)
}

fn check_step(c: &mut Checker<'_>, step: &Step) {
    let valid_name = !step.name.is_empty()
        && step.name.len() <= 63
        && step
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !step.name.starts_with('-')
        && !step.name.ends_with('-');
    if !valid_name {
        c.step(step, "name", "must be 1-63 lower-case letters, digits or '-', starting and ending with a letter or digit (it becomes part of Job names)");
    }
    for (field, message) in super::limits::step_problems(step) {
        c.step(step, field, message);
    }
    match (&step.sync, &step.sql) {
        (Some(sync), None) => check_sync(c, step, sync),
        (None, Some(sql)) => {
            if let Ok(Some(kind)) = c.connection_kind(step, "sql", &sql.connection)
                && !kind.is_sql()
            {
                c.step(step, "sql.connection", format!("\"{}\" is a {kind} Connection; sql steps need a SQL system (postgres, mysql, sqlserver, snowflake, bigquery, sqlite)", sql.connection));
            }
            if sql.statements.is_empty() {
                c.step(step, "sql.statements", "needs at least one statement");
            }
            for (i, s) in sql.statements.iter().enumerate() {
                if s.trim().is_empty() {
                    c.step(step, format!("sql.statements[{i}]"), "is empty");
                }
            }
        }
        (None, None) => c.step(step, "", "has no body: set sync or sql"),
        (Some(_), Some(_)) => c.step(step, "", "has two bodies: set either sync or sql, not both"),
    }
}

fn check_sync(c: &mut Checker<'_>, step: &Step, sync: &SyncStep) {
    let source_kind = c
        .connection_kind(step, "source", &sync.source.connection)
        .ok()
        .flatten();
    let dest_kind = c
        .connection_kind(step, "destination", &sync.destination.connection)
        .ok()
        .flatten();
    check_source(c, step, &sync.source, source_kind);
    check_destination(c, step, "sync.destination", &sync.destination, dest_kind);
    if let Some(rejects) = &sync.rejects {
        check_rejects(c, step, sync, rejects);
    }
    if sync.source.connection == sync.destination.connection
        && sync.source.asset.fqn.trim() == sync.destination.asset.fqn.trim()
    {
        c.step(
            step,
            "",
            format!(
                "reads and writes the same asset \"{}\" on Connection \"{}\"",
                sync.source.asset.fqn, sync.source.connection
            ),
        );
    }
    for (i, t) in sync.transforms.iter().enumerate() {
        for (field, message) in transform_problems(t) {
            let field = if field.is_empty() {
                format!("sync.transforms[{i}]")
            } else {
                format!("sync.transforms[{i}].{field}")
            };
            c.step(step, field, message);
        }
    }
}

/// Where rejected rows are kept: a destination that is only ever appended to, apart from the
/// step's own source and destination.
fn check_rejects(c: &mut Checker<'_>, step: &Step, sync: &SyncStep, rejects: &Destination) {
    let kind = c
        .connection_kind(step, "rejects", &rejects.connection)
        .ok()
        .flatten();
    check_destination(c, step, "sync.rejects", rejects, kind);
    if rejects.mode() != WriteMode::Append {
        c.step(
            step,
            "sync.rejects.mode",
            "rejected rows are only ever appended: remove mode, or set it to append",
        );
    }
    let own = [
        ("source", &sync.source.connection, &sync.source.asset.fqn),
        (
            "destination",
            &sync.destination.connection,
            &sync.destination.asset.fqn,
        ),
    ];
    for (what, connection, fqn) in own {
        if rejects.connection == *connection && rejects.asset.fqn.trim() == fqn.trim() {
            c.step(
                step,
                "sync.rejects.asset.fqn",
                format!("\"{fqn}\" on Connection \"{connection}\" is the step's {what}: keep rejected rows in an asset of their own"),
            );
        }
    }
}

/// The file format of a file asset: given, or implied by the FQN's extension.
fn file_format(given: Option<FileFormat>, fqn: &str) -> Option<FileFormat> {
    given.or_else(|| FileFormat::from_path(fqn))
}

fn check_source(c: &mut Checker<'_>, step: &Step, source: &Source, kind: Option<ConnectorKind>) {
    let conn = &source.connection;
    if source.asset.fqn.trim().is_empty() {
        c.step(step, "sync.source.asset.fqn", "must not be empty");
    }
    if let Some(kind) = kind {
        for (field, message) in super::options::source_options(source, kind) {
            c.step(step, field, message);
        }
        if kind.is_files() && file_format(source.format, &source.asset.fqn).is_none() {
            c.step(step, "sync.source.format", format!("source asset \"{}\" on {kind} Connection \"{conn}\" needs a format: set format to csv, jsonl or parquet, or give the FQN an extension", source.asset.fqn));
        }
        if !kind.is_files() && source.format.is_some() {
            c.step(
                step,
                "sync.source.format",
                format!("applies only to files; \"{conn}\" is a {kind} Connection"),
            );
        }
        if source.query.is_some() && !kind.is_sql() {
            c.step(
                step,
                "sync.source.query",
                format!("applies only to SQL systems; \"{conn}\" is a {kind} Connection"),
            );
        }
        if source.parallelism.is_some() && kind != ConnectorKind::Postgres {
            c.step(
                step,
                "sync.source.parallelism",
                format!("applies only to postgres tables; \"{conn}\" is a {kind} Connection"),
            );
        }
        if let Some(inc) = &source.incremental {
            let rest_without_param = kind == ConnectorKind::Rest
                && c.bundle
                    .connection(conn)
                    .and_then(|x| x.spec.rest.as_ref())
                    .is_some_and(|r| r.cursor_param.is_none());
            if kind == ConnectorKind::Redis && inc.cursor != "_id" {
                c.step(step, "sync.source.incremental", format!("cursor \"{}\" cannot be pushed down: redis Connection \"{conn}\" reads streams incrementally by entry id only (set cursor: _id), and keys not at all (remove incremental and use overwrite or upsert)", inc.cursor));
            } else if rest_without_param {
                c.step(step, "sync.source.incremental", format!("cursor \"{}\" cannot be pushed down: rest Connection \"{conn}\" has no cursorParam (set spec.rest.cursorParam to the query parameter that takes the watermark)", inc.cursor));
            }
        }
    }
    match source.parallelism {
        Some(0) | Some(65..) => c.step(
            step,
            "sync.source.parallelism",
            "must be between 1 and 64 (connections reading the table at once)",
        ),
        Some(2..) if source.query.is_some() => c.step(
            step,
            "sync.source.parallelism",
            "splits a table by its pages, so it does not apply to a query: read the table, or leave parallelism at 1",
        ),
        _ => {}
    }
    if let Some(inc) = &source.incremental {
        if inc.cursor.trim().is_empty() {
            c.step(step, "sync.source.incremental.cursor", "must name a column");
        }
        if let Some(lb) = &inc.lookback
            && !lb.trim().parse::<f64>().is_ok_and(f64::is_finite)
            && parse_duration(lb).is_err()
        {
            c.step(
                step,
                "sync.source.incremental.lookback",
                format!("\"{lb}\" is neither a duration (`2h`) nor a finite number"),
            );
        }
    }
    if let Some(csv) = &source.csv {
        check_delimiter(
            c,
            step,
            "sync.source.csv.delimiter",
            csv.delimiter.as_deref(),
        );
    }
    for (column, ty) in &source.columns {
        if let Err(e) = LogicalType::parse(ty) {
            c.step(step, format!("sync.source.columns.{column}"), e.to_string());
        }
    }
    if let Some(comp) = source.compression {
        check_compression(
            c,
            step,
            "sync.source.compression",
            comp,
            file_format(source.format, &source.asset.fqn),
        );
    }
}

/// Problems of a destination block at `at` (`sync.destination`, `sync.rejects`).
fn check_destination(
    c: &mut Checker<'_>,
    step: &Step,
    at: &str,
    dest: &Destination,
    kind: Option<ConnectorKind>,
) {
    let conn = &dest.connection;
    let fqn = &dest.asset.fqn;
    if fqn.trim().is_empty() {
        c.step(step, format!("{at}.asset.fqn"), "must not be empty");
    }
    if fqn.contains(['*', '?', '[']) {
        c.step(
            step,
            format!("{at}.asset.fqn"),
            format!("\"{fqn}\" is a glob; a destination is one table, file or folder"),
        );
    }
    if dest.mode() == WriteMode::Upsert && dest.primary_key.is_empty() {
        c.step(
            step,
            format!("{at}.primaryKey"),
            "mode upsert requires primaryKey (the columns that identify a row)",
        );
    }
    if let Some(kind) = kind {
        for (field, message) in super::options::destination_options(dest, kind) {
            // The options name their fields as a destination's.
            let field = match field.strip_prefix("sync.destination") {
                Some(rest) => format!("{at}{rest}"),
                None => field,
            };
            c.step(step, field, message);
        }
        if !kind.can_be_destination() {
            c.step(
                step,
                format!("{at}.connection"),
                format!("{kind} Connection \"{conn}\" cannot be a destination"),
            );
        } else if dest.mode() == WriteMode::Upsert && !kind.supports_upsert() {
            c.step(step, format!("{at}.mode"), format!("upsert is not possible on {kind} Connection \"{conn}\" (files have no keys to merge on): use append or overwrite"));
        }
        if kind.is_files() && file_format(dest.format, fqn).is_none() {
            c.step(step, format!("{at}.format"), format!("destination asset \"{fqn}\" on {kind} Connection \"{conn}\" needs a format: set format to csv, jsonl or parquet, or give the FQN an extension"));
        }
        if !kind.is_files() {
            for (field, set) in [
                ("format", dest.format.is_some()),
                ("fileSize", dest.file_size.is_some()),
                ("compression", dest.compression.is_some()),
                ("compressionLevel", dest.compression_level.is_some()),
            ] {
                if set {
                    c.step(
                        step,
                        format!("{at}.{field}"),
                        format!("applies only to files; \"{conn}\" is a {kind} Connection"),
                    );
                }
            }
        }
    }
    if let Some(size) = &dest.file_size {
        if let Err(e) = parse_bytes(size) {
            c.step(step, format!("{at}.fileSize"), e.to_string());
        } else if !fqn.ends_with('/') {
            c.step(
                step,
                format!("{at}.fileSize"),
                format!("rotation needs a folder: end the FQN \"{fqn}\" with '/'"),
            );
        }
    }
    if let Some(csv) = &dest.csv {
        check_delimiter(
            c,
            step,
            &format!("{at}.csv.delimiter"),
            csv.delimiter.as_deref(),
        );
    }
    if let Some(comp) = dest.compression {
        check_compression(
            c,
            step,
            &format!("{at}.compression"),
            comp,
            file_format(dest.format, fqn),
        );
    }
    check_compression_level(c, step, at, dest);
    let mut seen = std::collections::BTreeSet::new();
    for k in &dest.primary_key {
        if !seen.insert(k) {
            c.step(
                step,
                format!("{at}.primaryKey"),
                format!("column \"{k}\" is listed twice"),
            );
        }
    }
}

fn check_delimiter(c: &mut Checker<'_>, step: &Step, field: &str, delimiter: Option<&str>) {
    if let Some(d) = delimiter
        && (d.chars().count() != 1 || !d.is_ascii())
    {
        c.step(
            step,
            field,
            format!("\"{d}\" must be exactly one ASCII character"),
        );
    }
}

fn check_compression(
    c: &mut Checker<'_>,
    step: &Step,
    field: &str,
    comp: Compression,
    format: Option<FileFormat>,
) {
    let Some(format) = format else { return };
    if !comp.applies_to(format) {
        c.step(step, field, format!("{comp} does not apply to {format} files (Parquet takes zstd, snappy, gzip, lz4, brotli or none; CSV and JSONL take gzip or none)"));
    }
}

/// `compressionLevel` against the codec the destination writes (Parquet's default is zstd;
/// text files are uncompressed unless they say gzip).
fn check_compression_level(c: &mut Checker<'_>, step: &Step, at: &str, dest: &Destination) {
    let Some(level) = dest.compression_level else {
        return;
    };
    let codec = match (dest.compression, file_format(dest.format, &dest.asset.fqn)) {
        (Some(codec), _) => codec,
        (None, Some(FileFormat::Parquet)) => Compression::Zstd,
        (None, Some(_)) if dest.asset.fqn.to_ascii_lowercase().ends_with(".gz") => {
            Compression::Gzip
        }
        (None, Some(_)) => Compression::None,
        (None, None) => return,
    };
    if let Err(e) = codec.level(Some(level)) {
        c.step(step, format!("{at}.compressionLevel"), e.to_string());
    }
}

/// Problems of one transform, as (field below the transform, message).
fn transform_problems(t: &Transform) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if t.kinds_set() != 1 {
        out.push((String::new(), format!(
            "a transform has exactly one of select, drop, rename, cast, filter, derive, hash or sql (found {})",
            t.kinds_set()
        )));
        return out;
    }
    let lists = [("select", &t.select), ("drop", &t.drop), ("hash", &t.hash)];
    for (field, list) in lists {
        if let Some(list) = list {
            if list.is_empty() {
                out.push((field.to_string(), "needs at least one column".to_string()));
            }
            let mut seen = std::collections::BTreeSet::new();
            for col in list {
                if !seen.insert(col) {
                    out.push((
                        field.to_string(),
                        format!("column \"{col}\" is listed twice"),
                    ));
                }
            }
        }
    }
    if let Some(rename) = &t.rename {
        let mut targets = std::collections::BTreeSet::new();
        for (from, to) in rename {
            if to.trim().is_empty() {
                out.push((
                    format!("rename.{from}"),
                    "new name must not be empty".to_string(),
                ));
            } else if !targets.insert(to) {
                out.push((
                    format!("rename.{from}"),
                    format!("two columns are renamed to \"{to}\""),
                ));
            }
        }
    }
    if let Some(cast) = &t.cast {
        for (col, ty) in cast {
            if let Err(e) = LogicalType::parse(ty) {
                out.push((format!("cast.{col}"), e.to_string()));
            }
        }
    }
    for (field, expr) in [("filter", &t.filter), ("sql", &t.sql)] {
        if expr.as_deref().is_some_and(|e| e.trim().is_empty()) {
            out.push((
                field.to_string(),
                "expression must not be empty".to_string(),
            ));
        }
    }
    if let Some(problem) = t
        .sql
        .as_deref()
        .and_then(super::query_text::transform_problem)
    {
        out.push(("sql".to_string(), problem));
    }
    if let Some(derive) = &t.derive {
        if derive.is_empty() {
            out.push((
                "derive".to_string(),
                "needs at least one column".to_string(),
            ));
        }
        for (col, expr) in derive {
            if expr.trim().is_empty() {
                out.push((
                    format!("derive.{col}"),
                    "expression must not be empty".to_string(),
                ));
            }
        }
    }
    out
}

/// Checks every PipelineRun: its Pipeline exists when the files hold Pipelines.
pub(super) fn check_runs(bundle: &Bundle, problems: &mut Vec<Problem>) {
    for doc in &bundle.runs {
        let run = &doc.object;
        let name = name_of(&run.metadata);
        let mut push = |field: &str, message: String| {
            problems.push(Problem {
                file: doc.file.clone(),
                resource: Some(format!("PipelineRun/{name}")),
                field: Some(field.to_string()),
                message,
                ..Default::default()
            })
        };
        let target = &run.spec.pipeline_ref.name;
        let missing =
            bundle.pipeline(target).is_none() && !bundle.is_unreadable("Pipeline", target);
        if !bundle.pipelines.is_empty() && missing {
            let mut names: Vec<&str> = bundle
                .pipelines
                .iter()
                .map(|d| name_of(&d.object.metadata))
                .collect();
            names.sort_unstable();
            push(
                "spec.pipelineRef.name",
                format!(
                    "Pipeline \"{target}\" does not exist (pipelines: {})",
                    names.join(", ")
                ),
            );
        }
        if run.spec.resume_from.as_deref() == Some(name) {
            push(
                "spec.resumeFrom",
                "a run cannot resume from itself".to_string(),
            );
        }
    }
}
