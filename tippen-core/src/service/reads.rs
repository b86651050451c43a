//! Reads the HTTP and socket layers need, so that they never touch the store themselves.

use crate::presence::VisitorRecord;
use crate::protocol::{ServerMessage, VisitorView};
use crate::site::SiteId;

use super::{ServiceError, Tippen};

impl Tippen {
    /// A visitor's record, if the visitor is present now.
    pub(crate) async fn present_visitor(
        &self,
        site: &SiteId,
        visitor_id: &str,
    ) -> Result<Option<VisitorRecord>, ServiceError> {
        let now = self.now();
        Ok(self
            .store()
            .visitor(site, visitor_id)
            .await?
            .map(|v| v.value)
            .filter(|v| v.live_at(now, &self.config().presence)))
    }

    /// The live visitors and the site's sequence number, read together (`GET /api/visitors`).
    pub(crate) async fn visitor_listing(
        &self,
        site: &SiteId,
    ) -> Result<(Vec<VisitorView>, u64), ServiceError> {
        let snapshot = self.snapshot(site).await?;
        match snapshot.message {
            ServerMessage::InitialVisitors { visitors } => Ok((visitors, snapshot.seq)),
            _ => Ok((Vec::new(), snapshot.seq)),
        }
    }
}
