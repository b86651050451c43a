#![doc = include_str!("../README.md")]
//!
//! The designs and schemas: [`store`] (the live store, and the shared enrichment cache) and
//! [`history`] (visit history).

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]

pub mod history;
pub mod store;

pub use history::{D1History, HISTORY_BINDING};
pub use store::{DurableObjectStore, ENRICHMENT_CACHE_BINDING};
