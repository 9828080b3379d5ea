//! End-to-end support for SynqX: the process kubelet ([`kubelet`]) that lets a real API
//! server run pods on a machine without containers, and the harness ([`cluster`]) that
//! starts the test control plane of `tests/cluster` for the tests in `tests/tests`, and the
//! clients of the database test servers ([`databases`]), the monitoring files ([`monitoring`])
//! and a real Prometheus to scrape the operator ([`prometheus`]).

pub mod cluster;
pub mod databases;
pub mod helm;
pub mod kubelet;
pub mod monitoring;
pub mod node;
pub mod prometheus;
pub mod runs;
