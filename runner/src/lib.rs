//! The SynqX data plane: the streaming engine, connectors, transforms, local state, the local
//! runner behind `synqx run`, the in-pod runner behind `synqx step` and the Connection probe
//! behind `synqx check`.

pub mod allocator;
pub mod bad_row;
pub mod check;
pub mod connectors;
pub mod engine;
pub mod error;
pub mod local;
pub mod pod;
pub mod secrets;
pub mod state;
pub mod step;
pub mod transforms;
pub mod types;
pub mod vault;
pub mod withheld;

pub use error::{Error, Result};
