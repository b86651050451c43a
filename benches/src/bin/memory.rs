//! Bytes per live visitor in the memory store, measured with a counting global allocator.
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
        let records: Vec<_> = (0..n).map(|i| record(i, T0, &cfg)).collect();
        let store = MemoryStore::new();
        let before = ALLOCATOR.allocated();
        for r in &records {
            block(store.save_visitor(&site, r, None)).expect("insert");
        }
        let used = ALLOCATOR.allocated() - before;
        println!("{n},{used},{}", used / n);
        drop(store);
    }
}
