//! [`RecordTable`]: one site's records of one kind held in memory, versioned the way the
//! [`Store`](crate::Store) contract wants (a write names the version it read; a mismatch is
//! [`StoreError::Conflict`]) and indexed by deadline for the sweep. Visitors and support users
//! are both such records ([`DeadlineRecord`]), and every store that keeps its state in memory
//! ([`MemoryStore`](crate::MemoryStore), the axum host's SQLite store) keeps both kinds in
//! this one type instead of a copy per kind.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use crate::clock::Timestamp;
use crate::presence::VisitorRecord;
use crate::store::{StoreError, Version, Versioned};
use crate::support::UserRecord;

/// A record with an id (unique within its site and kind) and the time its next deadline work
/// is due.
pub trait DeadlineRecord {
    /// The record's id.
    fn record_id(&self) -> &str;
    /// When the sweep must next look at it.
    fn record_deadline(&self) -> Timestamp;
}

impl DeadlineRecord for VisitorRecord {
    fn record_id(&self) -> &str {
        &self.visitor_id
    }
    fn record_deadline(&self) -> Timestamp {
        self.deadline
    }
}

impl DeadlineRecord for UserRecord {
    fn record_id(&self) -> &str {
        &self.user_id
    }
    fn record_deadline(&self) -> Timestamp {
        self.deadline
    }
}

/// Shared records (a store that hands snapshots to a writer without copying them).
impl<T: DeadlineRecord> DeadlineRecord for Arc<T> {
    fn record_id(&self) -> &str {
        (**self).record_id()
    }
    fn record_deadline(&self) -> Timestamp {
        (**self).record_deadline()
    }
}

/// One site's records of one kind: by id, with their versions, and ordered by deadline.
///
/// The id is held once, shared by the map and the deadline index: a live visitor costs one
/// copy of its id here (besides the record's own), and a save that moves a record's deadline
/// (every heartbeat) allocates nothing.
#[derive(Clone, Debug)]
pub struct RecordTable<V> {
    records: HashMap<Arc<str>, Versioned<V>>,
    by_deadline: BTreeSet<(Timestamp, Arc<str>)>,
}

impl<V> Default for RecordTable<V> {
    fn default() -> Self {
        RecordTable {
            records: HashMap::new(),
            by_deadline: BTreeSet::new(),
        }
    }
}

impl<V: DeadlineRecord> RecordTable<V> {
    /// The record `id` with its version.
    pub fn get(&self, id: &str) -> Option<&Versioned<V>> {
        self.records.get(id)
    }

    /// The record `id` with its version and the table's copy of its id (shared: a caller that
    /// keeps the id as long as the record, such as a store's writer, can share it too).
    pub fn get_with_id(&self, id: &str) -> Option<(&Arc<str>, &Versioned<V>)> {
        self.records.get_key_value(id)
    }

    /// Stores `value` if the stored version is `expected` (`None`: only if absent) and returns
    /// its new version; otherwise [`StoreError::Conflict`] and nothing changes.
    pub fn save(&mut self, value: V, expected: Option<Version>) -> Result<Version, StoreError> {
        let current = self.records.get(value.record_id()).map(|v| v.version);
        if current != expected {
            return Err(StoreError::Conflict);
        }
        let version = Version(
            expected
                .map_or(Some(1), |v| v.0.checked_add(1))
                .ok_or_else(|| {
                    StoreError::Corrupt(format!("record {:?}: version overflow", value.record_id()))
                })?,
        );
        self.load(value, version);
        Ok(version)
    }

    /// Puts `value` at `version` without a check (loading what was stored before).
    pub fn load(&mut self, value: V, version: Version) {
        let deadline = value.record_deadline();
        if let Some((id, old)) = self.records.get_key_value(value.record_id()) {
            let id = id.clone();
            let old_deadline = old.value.record_deadline();
            if old_deadline != deadline {
                self.by_deadline.remove(&(old_deadline, id.clone()));
                self.by_deadline.insert((deadline, id.clone()));
            }
            self.records.insert(id, Versioned { version, value });
            return;
        }
        let id: Arc<str> = Arc::from(value.record_id());
        self.by_deadline.insert((deadline, id.clone()));
        self.records.insert(id, Versioned { version, value });
    }

    /// Removes the record `id` if its stored version is `expected`; otherwise (also when it
    /// is absent) [`StoreError::Conflict`] and nothing changes.
    pub fn remove(&mut self, id: &str, expected: Version) -> Result<(), StoreError> {
        match self.records.get_key_value(id) {
            Some((key, v)) if v.version == expected => {
                let entry = (v.value.record_deadline(), key.clone());
                self.by_deadline.remove(&entry);
                self.records.remove(id);
                Ok(())
            }
            _ => Err(StoreError::Conflict),
        }
    }

    /// Every record, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.records.values().map(|v| &v.value)
    }

    /// Every record with its id and version, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Versioned<V>)> {
        self.records.iter().map(|(k, v)| (&**k, v))
    }

    /// At most `limit` records whose deadline is at or before `now`, earliest first.
    pub fn due(&self, now: Timestamp, limit: usize) -> impl Iterator<Item = &Versioned<V>> {
        self.by_deadline
            .iter()
            .take_while(move |(d, _)| *d <= now)
            .take(limit)
            .filter_map(|(_, id)| self.records.get(id))
    }

    /// The earliest deadline of any record.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.by_deadline.first().map(|(d, _)| *d)
    }

    /// How many records there are.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::SupportConfig;

    fn user(id: &str, deadline_ms: i64) -> UserRecord {
        let mut record = UserRecord::new(id, Timestamp::from_millis(0), &SupportConfig::default());
        record.deadline = Timestamp::from_millis(deadline_ms);
        record
    }

    #[test]
    fn versions_guard_writes_and_the_index_follows_the_deadline() {
        let mut table = RecordTable::default();
        let v1 = table.save(user("u", 50), None).expect("first save");
        assert_eq!(v1, Version(1));
        assert!(matches!(
            table.save(user("u", 60), None),
            Err(StoreError::Conflict)
        ));
        let v2 = table.save(user("u", 20), Some(v1)).expect("second save");
        assert_eq!(v2, Version(2));
        // Loading over a record moves its index entry too: one entry, at the new deadline.
        table.load(user("u", 70), Version(7));
        table.save(user("w", 30), None).expect("another record");
        // A save that keeps the deadline (the index entry stays, under the shared id).
        let v3 = table
            .save(user("w", 30), Some(Version(1)))
            .expect("same deadline");
        assert_eq!(v3, Version(2));
        assert_eq!(table.next_deadline(), Some(Timestamp::from_millis(30)));
        let due: Vec<_> = table
            .due(Timestamp::from_millis(100), 10)
            .map(|v| (v.value.user_id.clone(), v.version))
            .collect();
        assert_eq!(
            due,
            [("w".to_owned(), Version(2)), ("u".to_owned(), Version(7))]
        );
        assert!(matches!(
            table.remove("u", Version(2)),
            Err(StoreError::Conflict)
        ));
        table
            .remove("u", Version(7))
            .expect("remove at its version");
        assert_eq!(table.len(), 1);
        assert_eq!(table.next_deadline(), Some(Timestamp::from_millis(30)));
        table.remove("w", Version(2)).expect("remove the other");
        assert!(table.is_empty());
        assert_eq!(
            table.next_deadline(),
            None,
            "an index entry outlived its record"
        );
    }
}
