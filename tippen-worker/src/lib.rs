//! tippen on Cloudflare Workers with one Durable Object per site.
//!
//! Not built yet (issue 7): this crate only reserves the name and the place in the workspace.
//! It will convert `worker::Request`s into [`tippen_core::api`] calls, keep each site's state in
//! its Durable Object's storage, and arm one alarm at the core's next deadline.
