#![doc = include_str!("../README.md")]
//!
//! The designs, schemas and durability choices: [`store`] (the live store) and [`history`]
//! (visit history).

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]

pub mod history;
pub mod store;

pub use history::SqliteHistory;
pub use store::{SqliteDurability, SqliteError, SqliteOptions, SqliteStore};
