//! What the SQL connectors (sqlite, postgres, mysql, sqlserver) share: the decisions every
//! load makes alike (`plan`: which columns, which key), the names of the tables they create
//! beside a user's (`names`).

pub mod names;
pub mod plan;

pub use names::{at_table, quoted_list, unique_suffix};
