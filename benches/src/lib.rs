//! Benchmarks of tippen (see `benches/`).
