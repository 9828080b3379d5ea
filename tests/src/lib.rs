//! End-to-end support for SynqX: the process kubelet ([`kubelet`]) that lets a real API
//! server run pods on a machine without containers, and the harness ([`cluster`]) that
//! starts the test control plane of `tests/cluster` for the tests in `tests/tests`, the
//! monitoring files ([`monitoring`]), a real Prometheus to scrape the operator
//! ([`prometheus`]), the API server's audit log ([`audit`]) to count what a client asked, and
//! the operator as a process of the test with its own flags ([`own_operator`]), and a
//! client of the operator's gateway ([`gateway`]).
//! The database test servers are reached through `synqx-testkit`.

pub mod audit;
pub mod cluster;
pub mod gateway;
pub mod helm;
pub mod kubelet;
pub mod monitoring;
pub mod node;
pub mod own_operator;
pub mod prometheus;
pub mod runs;
pub mod secrets;
