//! A document kept as a chain of versions, shared by profiles and alarm
//! rules: one head record per owned document (`<owner>/<id>`, with a
//! `latest` hint), one version document per won write
//! (`<owner>/<id>#<n>`), superseded versions emptied to tombstones.
//!
//! Every operation here names `_id` alone: FerretDB 1.24's SQLite backend
//! scans the whole collection for any other filter. Every key carries its
//! owner, so a lookup made for one tenant cannot address another's document.

use mongodb::bson::{doc, Bson, Document};
use mongodb::Collection;

use hearth_domain::error::{quoted, StoreError};

use crate::{backend, is_duplicate_key};

/// `_id` of a document; every key below is a string.
pub(crate) const ID: &str = "_id";
/// Field of a head record: a hint at the newest version that won. Raised
/// after each win, it may lag (never lead), so readers probe past it.
pub(crate) const LATEST: &str = "latest";
/// Field marking a superseded version document: its `_id` is kept so the
/// version number can never be written again; its content is gone.
pub(crate) const SUPERSEDED: &str = "superseded";

/// The `_id` of a head record: the owner (a tenant id, or `shared` for
/// built-ins), then the document's own id. Neither a tenant id (a UUID) nor
/// a document id (letters, digits, `_-.`) contains `/` or `#`, so the key is
/// unambiguous and cannot be forged from another owner's parts.
pub(crate) fn head_id(owner: &str, id: &str) -> String {
    format!("{owner}/{id}")
}

/// The `_id` of write number `version` of the document with head `head`.
pub(crate) fn version_id(head: &str, version: i64) -> String {
    format!("{head}#{version}")
}

/// The head and version collections of one kind of document.
#[derive(Clone)]
pub(crate) struct Chain {
    pub(crate) heads: Collection<Document>,
    pub(crate) versions: Collection<Document>,
}

impl Chain {
    /// The head record `head`, if any.
    pub(crate) async fn head(&self, head: &str) -> Result<Option<Document>, StoreError> {
        self.heads
            .find_one(doc! { ID: head })
            .await
            .map_err(backend("reading a document head"))
    }

    /// The newest version of the document whose (already read) head record
    /// is `record`: probes `head#hint`, `head#hint+1`, … until the first
    /// miss. Versions are inserted in sequence and never removed (superseded
    /// ones become tombstones only once their successor exists), so the
    /// first miss ends the chain and the last hit is the newest.
    pub(crate) async fn newest(
        &self,
        head: &str,
        record: &Document,
    ) -> Result<Option<Document>, StoreError> {
        let hint = match record.get(LATEST) {
            Some(Bson::Int64(v)) => *v,
            Some(Bson::Int32(v)) => i64::from(*v),
            _ => 0,
        };
        let mut newest: Option<Document> = None;
        // Version 0 is never written: a hint of 0 starts the probe at 1.
        let mut version = hint.max(1);
        while let Some(found) = self
            .versions
            .find_one(doc! { ID: version_id(head, version) })
            .await
            .map_err(backend("reading a document version"))?
        {
            newest = Some(found);
            version += 1;
        }
        match newest {
            Some(document) if document.get_bool(SUPERSEDED).unwrap_or(false) => {
                Err(StoreError::Backend(anyhow::anyhow!(
                    "document `{}`: version {} is superseded but no newer one is stored",
                    quoted(head),
                    version - 1
                )))
            }
            other => Ok(other),
        }
    }

    /// Inserts a version document. `Ok(false)` when its `_id` exists: another
    /// writer took that version number, which is how a race is lost.
    pub(crate) async fn insert_version(&self, document: Document) -> Result<bool, StoreError> {
        match self.versions.insert_one(document).await {
            Ok(_) => Ok(true),
            Err(e) if is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(backend("inserting a document version")(e)),
        }
    }

    /// Inserts a head record; one that exists already is left as it is.
    pub(crate) async fn ensure_head(&self, record: Document) -> Result<(), StoreError> {
        match self.heads.insert_one(record).await {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate_key(&e) => Ok(()),
            Err(e) => Err(backend("recording a document head")(e)),
        }
    }

    /// The housekeeping after a won write: raises the head's `latest` hint
    /// and empties the replaced version. Both may fail or lose a race
    /// harmlessly: readers probe forward from the hint to the newest
    /// version, and an old version's content is never read once a newer one
    /// exists. It returns nothing on purpose: the write has already won.
    pub(crate) async fn retire(&self, head: &str, expected: Option<i64>, won: i64) {
        // On FerretDB `$max` is a read then a write, so two writers can
        // leave the lower of their versions here: the hint only lags, and
        // a lagging hint costs a reader one more probe. A first version
        // needs no raise: readers start at 1 whatever a lower hint says.
        if won > 1 {
            if let Err(e) = self
                .heads
                .update_one(doc! { ID: head }, doc! { "$max": { LATEST: won } })
                .await
            {
                tracing::warn!(error = %e, "Could not raise a document's latest-version hint; readers probe forward.");
            }
        }
        // The replaced version becomes a tombstone rather than being deleted:
        // deleting it would free `head#expected` for a writer that read
        // `expected - 1` long ago, whose insert would then succeed unseen
        // behind the newer versions. A tombstone holds the `_id` only.
        if let Some(replaced) = expected {
            let key = version_id(head, replaced);
            if let Err(e) = self
                .versions
                .replace_one(doc! { ID: &key }, doc! { ID: &key, SUPERSEDED: true })
                .await
            {
                tracing::warn!(error = %e, "Could not empty a superseded document version; it stays unread history.");
            }
        }
    }
}
