//! Bytes per live visitor in the memory store (its record with its open visit, and the
//! store's index of it), measured with a counting global allocator.
//!
//! `cargo run --release -p tippen-benches --bin memory`

use std::alloc::System;

use cap::Cap;
use tippen_benches::{T0, block, record};
use tippen_core::{Config, MemoryStore, SiteId, Store};

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

fn main() {
    let cfg = Config::default();
    let site = SiteId::from("bench");
    println!("visitors,bytes_total,bytes_per_visitor");
    for n in [10_000usize, 100_000, 1_000_000] {
        let store = MemoryStore::new();
        let before = ALLOCATOR.allocated();
        // Each record is built and dropped here: what is counted is what the store keeps,
        // its open visit (shared with the record it was saved from) included.
        for i in 0..n {
            block(store.save_visitor(&site, &record(i, T0, &cfg), None)).expect("insert");
        }
        let used = ALLOCATOR.allocated() - before;
        println!("{n},{used},{}", used / n);
        drop(store);
    }
}
