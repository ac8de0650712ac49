//! One file per subcommand; each is a thin layer over the library crates.

pub mod call;
pub mod check;
pub mod deploy;
pub mod logs;
pub mod run;
pub mod status;
pub mod tail;
pub mod twin;
