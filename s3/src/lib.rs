//! The S3 client SynqX builds from a Connection's `s3` block, shared by the runner's `s3`
//! connector and the operator's log store, so both read a Connection the same way: the same
//! checks of bucket, prefix and endpoint, the same credential policy (explicit keys, or the
//! ambient AWS environment only where it was asked for and allowed), the same client options.
//!
//! - [`settings`]: the block checked and resolved, without I/O; where the secret values come
//!   from is the caller's business (a pod's environment, or the operator reading Secrets).
//! - [`client`]: the object_store client of the settings, and the reason of a failed request
//!   with the credentials removed.

pub mod client;
pub mod settings;

pub use client::{ClientError, Patience, client, reason, xml_tag};
pub use settings::{Credentials, Endpoint, S3Settings, SettingsError};
