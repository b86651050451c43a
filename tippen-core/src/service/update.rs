//! The one optimistic-concurrency loop of every record update: read the versioned record,
//! apply a pure transition, write conditionally on the version read, and on a
//! [`StoreError::Conflict`] re-read and try again, at most
//! [`Limits::max_write_attempts`](crate::config::Limits) times.
//!
//! A transition sees the record as read (`None`: there is none) and returns what to write
//! ([`Write`]) and the operation's answer, which the caller gets once the write went through.
//! It may run several times for one operation, so it only computes: messages, views and
//! deadlines are built in it, sequencing and accounting happen after the write.

use async_trait::async_trait;

use crate::history::Visit;
use crate::presence::VisitorRecord;
use crate::site::SiteId;
use crate::store::{MaybeSendSync, Store, StoreError, Version, Versioned};
use crate::support::UserRecord;

use super::{ServiceError, Tippen};

/// What a transition asks the store to do with the record it was given.
#[derive(Debug)]
pub(crate) enum Write<R> {
    /// Nothing.
    Keep,
    /// Store this record, on the version read (on no record: insert it).
    Save(R),
    /// Store this record, on the version read, whose change is only what a heartbeat moves
    /// ([`VisitorRecord::only_touched_since`]): a touch where the store has one.
    Touch(R),
    /// Delete the record read, on its version (nothing to do when there was none).
    Remove,
    /// Write these closed visits to history first (when the service has a history store),
    /// then do the inner write. A conflict on the inner write runs the transition again,
    /// which closes the same visits again (the same ids: a replacing put) or none.
    Close(Vec<Visit>, Box<Write<R>>),
}

impl<R> Write<R> {
    /// This write, preceded by closing `visits` (none: the write as it is).
    pub(crate) fn closing(self, visits: impl IntoIterator<Item = Visit>) -> Write<R> {
        let visits: Vec<Visit> = visits.into_iter().collect();
        if visits.is_empty() {
            self
        } else {
            Write::Close(visits, Box::new(self))
        }
    }
}

/// A record kept under a [`Version`]: a visitor or a support user.
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
pub(crate) trait VersionedRecord: Sized + MaybeSendSync {
    /// Reads the record `id` of `site`.
    async fn read(
        store: &dyn Store,
        site: &SiteId,
        id: &str,
    ) -> Result<Option<Versioned<Self>>, StoreError>;

    /// Writes `record` if the stored version is `expected`.
    async fn save(
        store: &dyn Store,
        site: &SiteId,
        record: &Self,
        expected: Option<Version>,
    ) -> Result<Version, StoreError>;

    /// Deletes the record `id` if its stored version is `expected`.
    async fn remove(
        store: &dyn Store,
        site: &SiteId,
        id: &str,
        expected: Version,
    ) -> Result<(), StoreError>;

    /// Writes `record`, changed only as a heartbeat changes it, if the stored version is
    /// `expected`. By default a save.
    async fn touch(
        store: &dyn Store,
        site: &SiteId,
        record: &Self,
        expected: Version,
    ) -> Result<Version, StoreError> {
        Self::save(store, site, record, Some(expected)).await
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl VersionedRecord for VisitorRecord {
    async fn read(
        store: &dyn Store,
        site: &SiteId,
        id: &str,
    ) -> Result<Option<Versioned<Self>>, StoreError> {
        store.visitor(site, id).await
    }

    async fn save(
        store: &dyn Store,
        site: &SiteId,
        record: &Self,
        expected: Option<Version>,
    ) -> Result<Version, StoreError> {
        store.save_visitor(site, record, expected).await
    }

    async fn remove(
        store: &dyn Store,
        site: &SiteId,
        id: &str,
        expected: Version,
    ) -> Result<(), StoreError> {
        store.remove_visitor(site, id, expected).await
    }

    async fn touch(
        store: &dyn Store,
        site: &SiteId,
        record: &Self,
        expected: Version,
    ) -> Result<Version, StoreError> {
        store.touch_visitor(site, record, expected).await
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl VersionedRecord for UserRecord {
    async fn read(
        store: &dyn Store,
        site: &SiteId,
        id: &str,
    ) -> Result<Option<Versioned<Self>>, StoreError> {
        store.user(site, id).await
    }

    async fn save(
        store: &dyn Store,
        site: &SiteId,
        record: &Self,
        expected: Option<Version>,
    ) -> Result<Version, StoreError> {
        store.save_user(site, record, expected).await
    }

    async fn remove(
        store: &dyn Store,
        site: &SiteId,
        id: &str,
        expected: Version,
    ) -> Result<(), StoreError> {
        store.remove_user(site, id, expected).await
    }
}

/// The numbers a write's dashboard messages took before the write
/// ([`Store::numbers_before_writes`]), in order; `None`: they are still to be numbered.
pub(crate) type Numbered = Option<Vec<u64>>;

impl Tippen {
    /// Reads record `id` of `site`, applies `transition` and writes what it asks for,
    /// retrying on a conflict; the transition's answer once written.
    ///
    /// A transition's error ends the operation at once, nothing written.
    /// [`ServiceError::Contention`] when every attempt lost to a concurrent writer.
    pub(crate) async fn update<R: VersionedRecord, T>(
        &self,
        site: &SiteId,
        id: &str,
        transition: impl FnMut(Option<Versioned<R>>) -> Result<(Write<R>, T), ServiceError>,
    ) -> Result<T, ServiceError> {
        let (answer, _) = self.retry(site, id, None, transition, |_| 0).await?;
        Ok(answer)
    }

    /// [`update`](Self::update) starting from `current`, the record as already read (by a
    /// sweep from the deadline index, or by an earlier attempt): the first attempt applies
    /// the transition to it, a conflict re-reads.
    pub(crate) async fn update_from<R: VersionedRecord, T>(
        &self,
        site: &SiteId,
        id: &str,
        current: Option<Versioned<R>>,
        transition: impl FnMut(Option<Versioned<R>>) -> Result<(Write<R>, T), ServiceError>,
    ) -> Result<T, ServiceError> {
        let (answer, _) = self
            .retry(site, id, Some(current), transition, |_| 0)
            .await?;
        Ok(answer)
    }

    /// [`update`](Self::update) of a transition whose answer carries `count(answer)` dashboard
    /// messages: on a store that wants them numbered before the write
    /// ([`Store::numbers_before_writes`]) they take their numbers first, so a stored change
    /// always has numbers taken (the answer's [`Numbered`]); elsewhere they are numbered
    /// afterwards ([`sequence_numbered`](Self::sequence_numbered) does either).
    pub(crate) async fn update_numbered<R: VersionedRecord, T>(
        &self,
        site: &SiteId,
        id: &str,
        current: Option<Option<Versioned<R>>>,
        transition: impl FnMut(Option<Versioned<R>>) -> Result<(Write<R>, T), ServiceError>,
        count: impl Fn(&T) -> usize,
    ) -> Result<(T, Numbered), ServiceError> {
        self.retry(site, id, current, transition, count).await
    }

    /// The loop. `read` is the first attempt's record when the caller has already read it.
    async fn retry<R: VersionedRecord, T>(
        &self,
        site: &SiteId,
        id: &str,
        mut read: Option<Option<Versioned<R>>>,
        mut transition: impl FnMut(Option<Versioned<R>>) -> Result<(Write<R>, T), ServiceError>,
        count: impl Fn(&T) -> usize,
    ) -> Result<(T, Numbered), ServiceError> {
        let store = self.store().as_ref();
        let numbering = store.numbers_before_writes();
        // Numbers taken by earlier attempts and not used yet: a retry after a conflict uses
        // them first (a transition run again mostly says as much).
        let mut taken: Vec<u64> = Vec::new();
        for _ in 0..self.config().limits.max_write_attempts {
            let current = match read.take() {
                Some(current) => current,
                None => R::read(store, site, id).await?,
            };
            let version = current.as_ref().map(|v| v.version);
            let (mut write, answer) = transition(current)?;
            let n = if numbering { count(&answer) } else { 0 };
            if n > taken.len() {
                // Numbered before anything is written: a process cut off after the write (or
                // between the two) leaves numbers whose messages never come, a gap that
                // dashboards detect and resync from, never a change they do not hear of.
                let more = (n - taken.len()) as u64;
                let last = store.advance_sequence(site, more).await?;
                taken.extend(last + 1 - more..=last);
            }
            // Closed visits go to history before the live record changes: a crash in
            // between leaves the record, and the next sweep closes the same visits again.
            while let Write::Close(visits, inner) = write {
                self.record_visits(site, visits).await?;
                write = *inner;
            }
            let written = match (write, version) {
                // (`Close` was unwrapped above.)
                (Write::Keep | Write::Close(..), _) | (Write::Remove, None) => Ok(()),
                (Write::Save(record) | Write::Touch(record), None) => {
                    R::save(store, site, &record, None).await.map(drop)
                }
                (Write::Save(record), expected) => {
                    R::save(store, site, &record, expected).await.map(drop)
                }
                (Write::Touch(record), Some(expected)) => {
                    R::touch(store, site, &record, expected).await.map(drop)
                }
                (Write::Remove, Some(expected)) => R::remove(store, site, id, expected).await,
            };
            match written {
                // Numbers taken and not used are a gap dashboards resync from (rare: a retry
                // that said less than the attempt before it).
                Ok(()) => return Ok((answer, numbering.then(|| taken[..n].to_vec()))),
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ServiceError::Contention(id.to_owned()))
    }
}
