//! [`Enrichment`]: IP → company lookups inside a site's Durable Object.
//!
//! The object hands over the lookups the core asks for ([`Effects::lookups`]) and answers at
//! once; the lookups run in the background (`spawn_local`): the bookkeeping is the core's
//! [`LookupDriver`] (single flight, rate limit, retries, which site is charged), the provider
//! request is built and parsed by the core's [`Provider`] and sent with
//! [`FetchTransport`](crate::transport::FetchTransport) (`worker::Fetch`). When a lookup
//! settles, the result goes to the shared cache (KV) and to each waiting visitor
//! ([`Answer::give`]), whose effects (the `VISITOR_UPDATE`) the object applies like any
//! other. Those steps are the core's ([`steps`]); what is this host's own is the background
//! tasks (`spawn_local`) and the timers (a queued lookup, a retry: runtime `setTimeout`s,
//! [`Delay`]).
//!
//! One object serves one site, so the driver here single-flights the lookups of that site;
//! across sites the shared cache saves the credits.
//!
//! [`Effects::lookups`]: tippen_core::Effects::lookups

use std::cell::{Cell, RefCell};
use std::net::IpAddr;
use std::rc::Rc;

use tippen_core::enrichment::steps::{self, Answer, FailureLog};
use tippen_core::enrichment::{
    CompanyProfile, LookupDriver, LookupFailure, PlannerConfig, Provider, ProviderConfig,
    ProviderConfigError,
};
use tippen_core::{LookupRequest, SiteId};
use worker::Delay;

use crate::object::Host;

/// The provider and the lookup bookkeeping of one object.
pub struct Enrichment {
    provider: Box<dyn Provider>,
    driver: RefCell<LookupDriver<String>>,
    /// Logs failed lookups (a rejected key once until one succeeds).
    failures: RefCell<FailureLog>,
    /// When the pending timer fires (one at a time).
    timer: Cell<Option<tippen_core::Timestamp>>,
}

impl std::fmt::Debug for Enrichment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enrichment")
            .field("provider", &self.provider.kind())
            .finish_non_exhaustive()
    }
}

/// What a background task needs.
#[derive(Clone)]
struct Task {
    enrichment: Rc<Enrichment>,
    /// The object, which applies what giving a visitor its company causes.
    host: Host,
}

impl Enrichment {
    /// The provider `config` describes, with the default planner (50 lookups a minute).
    pub fn new(config: &ProviderConfig) -> Result<Self, ProviderConfigError> {
        Ok(Enrichment {
            provider: config.build()?,
            driver: RefCell::new(LookupDriver::new(PlannerConfig::default())),
            failures: RefCell::new(FailureLog::default()),
            timer: Cell::new(None),
        })
    }

    /// Runs `lookups` (call it in a background task); `host` applies their effects.
    pub(crate) async fn submit(self: Rc<Self>, host: Host, lookups: Vec<LookupRequest>) {
        let task = Task {
            enrichment: self,
            host,
        };
        for lookup in lookups {
            task.request(lookup).await;
        }
    }
}

impl Task {
    fn driver(&self) -> std::cell::RefMut<'_, LookupDriver<String>> {
        self.enrichment.driver.borrow_mut()
    }

    async fn request(&self, request: LookupRequest) {
        // A lookup of this address may have settled since the visitor's cache check.
        let pending = self.enrichment.driver.borrow().is_pending(request.ip);
        if !pending && let Some(answer) = steps::from_cache(&self.host.tippen, &request).await {
            self.give(&answer, &request.site, &request.visitor_id).await;
            return;
        }
        let ip = request.ip;
        let requested = steps::request(&mut self.driver(), request, self.host.tippen.now());
        if steps::admitted(&self.host.tippen, requested).await {
            self.start(ip).await;
        }
        self.arm();
    }

    /// Sends the provider request for `ip` in its own task.
    async fn start(&self, ip: IpAddr) {
        let started = self.enrichment.driver.borrow().started(ip);
        steps::record(&self.host.tippen, started.into_iter().collect()).await;
        let task = self.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let provider = &*task.enrichment.provider;
            let result =
                steps::lookup(provider, &task.host.transport, ip, task.host.tippen.now()).await;
            task.done(ip, result).await;
        });
    }

    async fn done(&self, ip: IpAddr, result: Result<CompanyProfile, LookupFailure>) {
        let provider = self.enrichment.provider.kind();
        self.enrichment.failures.borrow_mut().log(provider, &result);
        let now = self.host.tippen.now();
        let completed = self.driver().complete(ip, &result, now);
        match steps::settle(&self.host.tippen, provider, ip, &result, now, completed).await {
            None => self.arm(),
            Some(waiters) => {
                let answer = Answer::Lookup(result);
                for (site, visitor) in waiters {
                    self.give(&answer, &site, &visitor).await;
                }
            }
        }
    }

    /// Gives `answer` to a visitor and applies what that causes.
    async fn give(&self, answer: &Answer, site: &SiteId, visitor: &str) {
        let effects = answer.give(&self.host.tippen, site, visitor).await;
        // An alarm that could not be set is logged; no one waits for this task.
        let _ = self.host.apply(effects, None).await;
    }

    /// A timer at the driver's next deadline (queued or retried lookups); an early or extra
    /// wake-up starts nothing.
    fn arm(&self) {
        let Some(at) = self.enrichment.driver.borrow().next_deadline() else {
            return;
        };
        if self.enrichment.timer.get().is_some_and(|armed| armed <= at) {
            return;
        }
        self.enrichment.timer.set(Some(at));
        let task = self.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let wait = at.since(task.host.tippen.now());
            Delay::from(wait).await;
            if task.enrichment.timer.get() == Some(at) {
                task.enrichment.timer.set(None);
            }
            let now = task.host.tippen.now();
            let due = task.driver().handle_timeout(now);
            for ip in due {
                task.start(ip).await;
            }
            task.arm();
        });
    }
}
