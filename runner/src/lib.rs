//! The SynqX data plane: the streaming engine, connectors, transforms, local state and the
//! local runner behind `synqx run`.

pub mod connectors;
pub mod engine;
pub mod error;
pub mod local;
pub mod secrets;
pub mod state;
pub mod transforms;
pub mod types;

pub use error::{Error, Result};
