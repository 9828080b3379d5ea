//! Transforms, planned and run by Apache DataFusion over the step's stream. Projections,
//! filters and derived columns stay streaming (one batch in, one batch out); only a `sql`
//! transform that needs it (ORDER BY, GROUP BY, joins) holds more, within the step's memory
//! budget ([`MemoryBudget`]), spilling to the scratch folder beyond it.

mod input;
mod memory;
mod query;

pub use memory::{MEMORY_VARIABLE, MemoryBudget};

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::common::DataFusionError;
use datafusion::dataframe::DataFrame;
use datafusion::logical_expr::cast;
use datafusion::prelude::{SessionConfig, SessionContext, ident};
use futures::StreamExt;
use synqx_api::pipeline::Transform;

use crate::engine::SchemaStream;
use crate::error::{Error, Result};
use crate::types::parse_arrow;

/// The name a `sql` transform reads its input from.
pub const INPUT_TABLE: &str = "input";

/// Applies the transforms in order, within `memory`. Planning errors (unknown column, an
/// expression that does not parse) are reported here, before any row moves, naming the step
/// and the transform.
pub async fn apply(
    transforms: &[Transform],
    input: SchemaStream,
    step: &str,
    memory: &MemoryBudget,
) -> Result<SchemaStream> {
    if transforms.is_empty() {
        return Ok(input);
    }
    let ctx = session(memory)?;
    let table = input::single_use_table(input).map_err(|e| planning(step, None, e))?;
    let mut df = ctx.read_table(table).map_err(|e| planning(step, None, e))?;
    for (i, t) in transforms.iter().enumerate() {
        df = apply_one(&ctx, df, t).await.map_err(|e| match e {
            Problem::Column(message) => Error::transform(format!(
                "step \"{step}\": transforms[{i}] ({}): {message}",
                t.kind_name()
            )),
            Problem::Refused(what) => Error::transform(format!(
                "step \"{step}\": transforms[{i}] ({}): {}",
                t.kind_name(),
                query::Refusal::message(&what)
            )),
            Problem::DataFusion(e) => planning(step, Some((i, t)), e),
        })?;
    }
    let schema = Arc::new(df.schema().as_arrow().clone());
    let stream = df
        .execute_stream()
        .await
        .map_err(|e| planning(step, None, e))?;
    let failed = Failure {
        step: step.to_string(),
        holding: holding(transforms),
        memory: memory.clone(),
    };
    Ok(SchemaStream::new(
        schema,
        stream.map(move |item| item.map_err(|e| failed.running(e))),
    ))
}

/// One DataFusion session per step: a single partition keeps row order and memory flat,
/// identifiers keep their case so `Customer_ID` means the column of that name, and the
/// runtime holds at most the step's pool, spilling beyond it.
fn session(memory: &MemoryBudget) -> Result<SessionContext> {
    let mut config = SessionConfig::new()
        .with_target_partitions(1)
        .with_information_schema(false)
        // A sort keeps this much back to merge its spilled runs; DataFusion's 10 MiB would
        // take most of a small pool.
        .with_sort_spill_reservation_bytes(memory.pool() / 8);
    config.options_mut().sql_parser.enable_ident_normalization = false;
    let ctx = SessionContext::new_with_config_rt(config, memory.runtime()?);
    query::without_files(&ctx).map_err(|e| Error::Transform {
        message: format!("the transforms' session keeps a file system: {e}"),
        source: Some(e),
    })?;
    Ok(ctx)
}

/// The transforms that can hold more than a batch (`sql`: sorts, groups, joins), as messages
/// name them: `transforms[2] (sql)`.
fn holding(transforms: &[Transform]) -> Vec<String> {
    transforms
        .iter()
        .enumerate()
        .filter(|(_, t)| t.sql.is_some())
        .map(|(i, t)| format!("transforms[{i}] ({})", t.kind_name()))
        .collect()
}

/// How an error while rows flow is reported.
struct Failure {
    step: String,
    holding: Vec<String>,
    memory: MemoryBudget,
}

impl Failure {
    /// Our own errors (from the source) pass through unchanged; a query that ran out of memory
    /// says which transform, how much it had and what to do.
    fn running(&self, e: DataFusionError) -> Error {
        if let Some(ours) = ours(&e) {
            return ours;
        }
        let step = &self.step;
        let message = match exhausted(&e) {
            Some(said) => {
                let which = match self.holding.as_slice() {
                    [] => "transforms".to_string(),
                    names => names.join(", "),
                };
                format!(
                    "step \"{step}\": {which}: the query needs more memory than the step's transforms may hold, {}, and what it holds could not be spilled to {}: raise the step's memory (the container's limit, or {MEMORY_VARIABLE} where synqx runs), or make the query hold less (fewer groups, a LIMIT, a sort of fewer columns) ({said})",
                    self.memory.describe(),
                    self.memory.scratch.display(),
                )
            }
            None => format!("step \"{step}\": transforms: {}", first_line(&e)),
        };
        Error::Transform {
            message,
            source: Some(e),
        }
    }
}

/// What DataFusion's "resources exhausted" error says last (the allocation that failed, and
/// what was left), wherever it is in the chain.
fn exhausted(e: &DataFusionError) -> Option<String> {
    match e {
        DataFusionError::ResourcesExhausted(said) => {
            let last = said.lines().rev().find(|l| !l.trim().is_empty());
            Some(
                last.unwrap_or_default()
                    .trim()
                    .trim_start_matches("Error: ")
                    .to_string(),
            )
        }
        DataFusionError::Context(_, inner) => exhausted(inner),
        DataFusionError::Shared(inner) => exhausted(inner),
        DataFusionError::External(inner) => {
            inner.downcast_ref::<DataFusionError>().and_then(exhausted)
        }
        _ => None,
    }
}

enum Problem {
    Column(String),
    /// A `sql` transform that asks for more than a query: what it asked for.
    Refused(String),
    DataFusion(DataFusionError),
}

impl From<DataFusionError> for Problem {
    fn from(e: DataFusionError) -> Self {
        Self::DataFusion(e)
    }
}

fn columns(df: &DataFrame) -> Vec<String> {
    df.schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect()
}

/// Every named column must exist: DataFusion would drop unknown ones from `drop` silently.
fn require(df: &DataFrame, wanted: &[&String]) -> Result<(), Problem> {
    let have: BTreeSet<String> = columns(df).into_iter().collect();
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|w| !have.contains(w.as_str()))
        .map(|w| w.as_str())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Problem::Column(format!(
        "column{} {} not found (columns: {})",
        if missing.len() == 1 { "" } else { "s" },
        missing
            .iter()
            .map(|m| format!("\"{m}\""))
            .collect::<Vec<_>>()
            .join(", "),
        columns(df).join(", ")
    )))
}

async fn apply_one(
    ctx: &SessionContext,
    df: DataFrame,
    t: &Transform,
) -> Result<DataFrame, Problem> {
    if let Some(list) = &t.select {
        require(&df, &list.iter().collect::<Vec<_>>())?;
        let names: Vec<&str> = list.iter().map(String::as_str).collect();
        return Ok(df.select(names.iter().map(|n| ident(*n)).collect::<Vec<_>>())?);
    }
    if let Some(list) = &t.drop {
        require(&df, &list.iter().collect::<Vec<_>>())?;
        let keep: Vec<_> = columns(&df)
            .into_iter()
            .filter(|c| !list.contains(c))
            .map(ident)
            .collect();
        return Ok(df.select(keep)?);
    }
    if let Some(map) = &t.rename {
        require(&df, &map.keys().collect::<Vec<_>>())?;
        let exprs: Vec<_> = columns(&df)
            .into_iter()
            .map(|c| match map.get(&c) {
                Some(new) => ident(c).alias(new),
                None => ident(c),
            })
            .collect();
        return Ok(df.select(exprs)?);
    }
    if let Some(map) = &t.cast {
        require(&df, &map.keys().collect::<Vec<_>>())?;
        let mut exprs = Vec::new();
        for c in columns(&df) {
            match map.get(&c) {
                Some(type_name) => {
                    let to = parse_arrow(type_name)
                        .map_err(|e| Problem::Column(format!("column \"{c}\": {e}")))?;
                    exprs.push(cast(ident(c.clone()), to).alias(c));
                }
                None => exprs.push(ident(c)),
            }
        }
        return Ok(df.select(exprs)?);
    }
    if let Some(expr) = &t.filter {
        let predicate = df.parse_sql_expr(expr)?;
        return Ok(df.filter(predicate)?);
    }
    if let Some(map) = &t.derive {
        let mut df = df;
        for (name, expr) in map {
            let e = df.parse_sql_expr(expr)?;
            df = df.with_column(name, e)?;
        }
        return Ok(df);
    }
    if let Some(list) = &t.hash {
        require(&df, &list.iter().collect::<Vec<_>>())?;
        let mut exprs = Vec::new();
        for c in columns(&df) {
            if list.contains(&c) {
                let quoted = c.replace('"', "\"\"");
                let sql = format!("encode(sha256(CAST(\"{quoted}\" AS VARCHAR)), 'hex')");
                exprs.push(df.parse_sql_expr(&sql)?.alias(c));
            } else {
                exprs.push(ident(c));
            }
        }
        return Ok(df.select(exprs)?);
    }
    if let Some(query) = &t.sql {
        ctx.deregister_table(INPUT_TABLE)?;
        ctx.register_table(INPUT_TABLE, df.into_view())?;
        return query::plan(ctx, query).await.map_err(|e| match e {
            query::Refusal::Refused(what) => Problem::Refused(what),
            query::Refusal::Other(e) => Problem::DataFusion(e),
        });
    }
    Err(Problem::Column(
        "empty transform: set one of select, drop, rename, cast, filter, derive, hash or sql"
            .into(),
    ))
}

/// A planning error, with the step and the transform it came from.
fn planning(step: &str, at: Option<(usize, &Transform)>, e: DataFusionError) -> Error {
    if let Some(ours) = ours(&e) {
        return ours;
    }
    let message = match at {
        Some((i, t)) => format!(
            "step \"{step}\": transforms[{i}] ({}): {}",
            t.kind_name(),
            first_line(&e)
        ),
        None => format!("step \"{step}\": transforms: {}", first_line(&e)),
    };
    Error::Transform {
        message,
        source: Some(e),
    }
}

/// Our error, when DataFusion only carried it from the input stream.
fn ours(e: &DataFusionError) -> Option<Error> {
    match e {
        DataFusionError::External(inner) => inner
            .downcast_ref::<input::Carried>()
            .map(input::Carried::take),
        DataFusionError::Context(_, inner) => ours(inner),
        _ => None,
    }
}

fn first_line(e: &DataFusionError) -> String {
    let text = e.to_string();
    text.lines().next().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests;
