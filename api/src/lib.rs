//! The vocabulary of SynqX: resource types, the DAG compiler and validation. No I/O.

pub mod apply;
pub mod condition;
pub mod connection;
pub mod crd;

pub mod dag;
pub mod duration;
pub mod gateway;
pub mod pipeline;
pub mod redact;
pub mod run;
pub mod run_record;
pub mod runner;
pub mod schedule;
pub mod scheduler;
pub mod secret;
pub mod step_plan;
pub mod telemetry;
pub mod types;
pub mod validate;
pub mod vault;

pub use connection::{Connection, ConnectionSpec, ConnectorKind};
pub use pipeline::{Pipeline, PipelineSpec, Step};
pub use run::{PipelineRun, PipelineRunSpec};
pub use secret::SecretValue;

/// API group of every SynqX resource.
pub const GROUP: &str = "synqx.io";
/// API version of every SynqX resource.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` as written in YAML.
pub const API_VERSION: &str = "synqx.io/v1alpha1";
