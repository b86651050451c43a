//! The Workers runtime's clock, injected into the core (ids come from the core's default
//! `SecureIds`: `crypto.getRandomValues` through getrandom's `wasm_js` backend).

use tippen_core::{Clock, Timestamp};

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
