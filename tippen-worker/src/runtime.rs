//! The Workers runtime's clock and random source, injected into the core.

use tippen_core::{Clock, IdGenerator, Timestamp};
use wasm_bindgen::prelude::wasm_bindgen;

#[wasm_bindgen]
extern "C" {
    /// `crypto.getRandomValues(buf)`: the runtime's secure random source.
    #[wasm_bindgen(js_namespace = crypto, js_name = getRandomValues)]
    fn get_random_values(buf: &mut [u8]);
}

/// The Workers runtime's clock: `Date.now()`.
///
/// Inside a request the runtime advances it only across I/O (a Spectre mitigation); that is
/// exact enough for presence, whose timings are seconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct WorkerClock;

impl Clock for WorkerClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(js_sys::Date::now() as i64)
    }
}

/// Ids from `crypto.getRandomValues`.
#[derive(Clone, Copy, Debug, Default)]
pub struct CryptoIds;

impl IdGenerator for CryptoIds {
    fn next_u64(&self) -> u64 {
        let mut buf = [0u8; 8];
        get_random_values(&mut buf);
        u64::from_le_bytes(buf)
    }
}
