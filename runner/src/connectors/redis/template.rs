//! Key templates of the Redis sink: literal text and `{column}` placeholders
//! (`orders:{id}`), checked against the rows' columns.

use arrow::datatypes::Schema;

use super::types::Cells;

/// Why a key template cannot name the rows' keys; the caller names the step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("key template \"{template}\" has a '{{' without its '}}'")]
    Unclosed { template: String },
    #[error(
        "key template \"{template}\" names column \"{column}\", which the rows do not have (columns: {columns})"
    )]
    UnknownColumn {
        template: String,
        column: String,
        columns: String,
    },
    #[error("key template \"{template}\" has no {{column}}: every row would write the same key")]
    NoColumn { template: String },
}

/// A key template: literal text and `{column}` placeholders.
#[derive(Debug, PartialEq, Eq)]
pub struct Template {
    text: String,
    parts: Vec<Part>,
}

#[derive(Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Column(usize),
}

impl Template {
    /// Parses `orders:{id}` against the columns of `schema`.
    pub fn parse(text: &str, schema: &Schema) -> Result<Self, TemplateError> {
        let template = || text.to_string();
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}').map(|c| c + open) else {
                return Err(TemplateError::Unclosed {
                    template: template(),
                });
            };
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let name = &rest[open + 1..close];
            let index = schema
                .index_of(name)
                .map_err(|_| TemplateError::UnknownColumn {
                    template: template(),
                    column: name.to_string(),
                    columns: schema
                        .fields()
                        .iter()
                        .map(|f| f.name().as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
            parts.push(Part::Column(index));
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        if !parts.iter().any(|p| matches!(p, Part::Column(_))) {
            return Err(TemplateError::NoColumn {
                template: template(),
            });
        }
        Ok(Self {
            text: text.to_string(),
            parts,
        })
    }

    /// The template as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The key of a row, or the column whose null leaves it without one.
    pub fn key(&self, cells: &Cells<'_>, row: usize) -> Result<String, usize> {
        let mut key = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => key.push_str(t),
                Part::Column(c) => key.push_str(&cells.text(*c, row).ok_or(*c)?),
            }
        }
        Ok(key)
    }
}
