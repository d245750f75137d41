//! [`AlarmRuleStore`] on MongoDB: the same insert-decided chain as profiles.
//!
//! - `alarm_rule_ids`: one claim per rule id (`_id` = the id, `owner` = the
//!   tenant), inserted once; ids are global, so creating another tenant's id
//!   is a `Conflict`. Read only when a claim collides, with the tenant in
//!   the filter.
//! - `alarm_rule_heads`: `_id` = `<tenant>/<rule id>`, with the `latest`
//!   hint; kept for good (also after a delete), so a re-created rule goes on
//!   in the same chain.
//! - `alarm_rules`: `_id` = `<tenant>/<rule id>#<n>`, one document per
//!   write, `n` counting every write of this id (creations, updates,
//!   deletions), independent of the rule's own `version` (which restarts at
//!   1 when a deleted id is created again). Of two writers that read the
//!   chain at `n`, exactly one inserts `#n+1`; the other is a `Conflict`. A
//!   delete inserts `{deleted: true}` as the next write, so a writer that
//!   read the rule before the delete loses too.

use async_trait::async_trait;
use futures::{StreamExt as _, TryStreamExt as _};
use hearth_domain::error::{quoted, StoreError};
use hearth_domain::ids::{AlarmRuleId, TenantId};
use hearth_domain::model::AlarmRule;
use hearth_domain::ports::AlarmRuleStore;
use mongodb::bson::{doc, Bson, Document};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};

use crate::chain::{self, Chain, ID, LATEST};
use crate::stored_alarm_rule::{self as stored, DELETED};
use crate::{backend, is_duplicate_key, MongoDocuments, LIST_CONCURRENCY};

/// The collection of rule documents, one per write.
pub const ALARM_RULES: &str = "alarm_rules";
/// The collection of head records, one per tenant's rule id.
pub const ALARM_RULE_HEADS: &str = "alarm_rule_heads";
/// The collection of rule id claims.
pub const ALARM_RULE_IDS: &str = "alarm_rule_ids";

const TENANT: &str = "tenant_id";
const RULE_ID: &str = "rule_id";
const OWNER: &str = "owner";
/// Field of a rule document: the write number in the chain (`#n`).
const SEQUENCE: &str = "sequence";

/// How often a delete retries after losing a race to another writer.
const DELETE_ATTEMPTS: usize = 32;

#[derive(Clone)]
pub(crate) struct RuleCollections {
    chain: Chain,
    claims: Collection<Document>,
}

impl RuleCollections {
    /// The collections, with the head index created when missing.
    pub(crate) async fn open(database: &Database) -> Result<Self, StoreError> {
        let chain = Chain {
            heads: database.collection::<Document>(ALARM_RULE_HEADS),
            versions: database.collection::<Document>(ALARM_RULES),
        };
        chain
            .heads
            .create_index(
                IndexModel::builder()
                    .keys(doc! { TENANT: 1 })
                    .options(
                        IndexOptions::builder()
                            .name("tenant_id_1".to_owned())
                            .build(),
                    )
                    .build(),
            )
            .await
            .map_err(backend("creating the alarm rule indexes"))?;
        Ok(Self {
            chain,
            claims: database.collection::<Document>(ALARM_RULE_IDS),
        })
    }

    /// The newest write of the rule with head `head` (already read as
    /// `record`): `(n, Some(document))` for a live rule, `(n, None)` after a
    /// delete, `(0, None)` when nothing was ever written.
    async fn newest(
        &self,
        head: &str,
        record: &Document,
    ) -> Result<(i64, Option<Document>), StoreError> {
        let Some(document) = self.chain.newest(head, record).await? else {
            return Ok((0, None));
        };
        let sequence = match document.get(SEQUENCE) {
            Some(Bson::Int64(n)) => *n,
            Some(Bson::Int32(n)) => i64::from(*n),
            other => {
                return Err(StoreError::Backend(anyhow::anyhow!(
                    "alarm rule `{}` has sequence {other:?}, not an integer",
                    quoted(head)
                )))
            }
        };
        if document.get_bool(DELETED).unwrap_or(false) {
            Ok((sequence, None))
        } else {
            Ok((sequence, Some(document)))
        }
    }

    /// The tenant's rule by head key, read.
    async fn read(&self, head: &str) -> Result<(i64, Option<Document>), StoreError> {
        match self.chain.head(head).await? {
            Some(record) => self.newest(head, &record).await,
            None => Ok((0, None)),
        }
    }

    /// Claims `id` for `tenant` (or finds it already theirs) and makes sure
    /// the head record exists. Another tenant's id is a `Conflict`.
    async fn claim(&self, tenant: TenantId, id: AlarmRuleId, head: &str) -> Result<(), StoreError> {
        let (id, owner) = (id.to_string(), tenant.to_string());
        match self
            .claims
            .insert_one(doc! { ID: &id, OWNER: &owner })
            .await
        {
            Ok(_) => {}
            Err(e) if is_duplicate_key(&e) => {
                let mine = self
                    .claims
                    .find_one(doc! { ID: &id, OWNER: &owner })
                    .await
                    .map_err(backend("reading an alarm rule id claim"))?;
                if mine.is_none() {
                    return Err(StoreError::Conflict(format!("alarm rule id {id} is taken")));
                }
            }
            Err(e) => return Err(backend("claiming an alarm rule id")(e)),
        }
        self.chain
            .ensure_head(doc! { ID: head, TENANT: &owner, RULE_ID: &id, LATEST: 0_i64 })
            .await
    }

    /// Inserts write `sequence` of the chain; a lost race is a `Conflict`.
    async fn insert(&self, mut document: Document, sequence: i64) -> Result<(), StoreError> {
        document.insert(SEQUENCE, sequence);
        if self.chain.insert_version(document).await? {
            Ok(())
        } else {
            Err(StoreError::Conflict(
                "the alarm rule was changed by someone else; read it again".to_owned(),
            ))
        }
    }

    /// Every live rule among `heads`, read a few at a time, ordered by
    /// (tenant, id). Head records whose key does not match their fields
    /// are nobody's.
    async fn live(&self, heads: Vec<Document>) -> Result<Vec<AlarmRule>, StoreError> {
        let mut keyed: Vec<(String, Document)> = heads
            .into_iter()
            .filter_map(|record| {
                let key = record.get_str(ID).ok()?.to_owned();
                let expected =
                    chain::head_id(record.get_str(TENANT).ok()?, record.get_str(RULE_ID).ok()?);
                (key == expected).then_some((key, record))
            })
            .collect();
        // `<tenant>/<rule id>`: both lowercase hyphenated UUIDs of one
        // length, so the text order is the (tenant, id) byte order.
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        let found: Vec<(i64, Option<Document>)> = futures::stream::iter(keyed)
            .map(|(key, record)| async move { self.newest(&key, &record).await })
            .buffered(LIST_CONCURRENCY)
            .try_collect()
            .await?;
        found
            .into_iter()
            .filter_map(|(_, document)| document)
            .map(|document| stored::read_rule(document).map_err(StoreError::Backend))
            .collect()
    }
}

fn head_of(tenant: TenantId, id: AlarmRuleId) -> String {
    chain::head_id(&tenant.to_string(), &id.to_string())
}

fn version_of_rule(document: &Document) -> Result<u64, StoreError> {
    let version = crate::version_of(document)?;
    u64::try_from(version).map_err(|_| {
        StoreError::Backend(anyhow::anyhow!("stored alarm rule has version {version}"))
    })
}

impl MongoDocuments {
    /// A put: reads the chain, checks the expectation, inserts the next
    /// write (the insert decides a race), then does the housekeeping.
    async fn put_rule(&self, rule: &AlarmRule, expected: Option<u64>) -> Result<(), StoreError> {
        let rules = &self.rules;
        let head = head_of(rule.tenant_id, rule.id);
        let sequence = match expected {
            None => {
                // Claim first: a colliding claim of another tenant is a
                // Conflict before anything of ours is read.
                rules.claim(rule.tenant_id, rule.id, &head).await?;
                let (sequence, current) = rules.read(&head).await?;
                if current.is_some() {
                    return Err(StoreError::Conflict(format!(
                        "alarm rule {} exists",
                        rule.id
                    )));
                }
                sequence
            }
            Some(version) => {
                let (sequence, current) = rules.read(&head).await?;
                let Some(document) = &current else {
                    return Err(StoreError::NotFound(format!("alarm rule {}", rule.id)));
                };
                if version_of_rule(document)? != version {
                    return Err(StoreError::Conflict(format!(
                        "alarm rule {} is not at version {version}; read it again",
                        rule.id
                    )));
                }
                sequence
            }
        };
        let next = sequence + 1;
        let document = stored::write_rule(rule, chain::version_id(&head, next))
            .map_err(StoreError::Backend)?;
        rules.insert(document, next).await?;
        rules
            .chain
            .retire(&head, (sequence > 0).then_some(sequence), next)
            .await;
        Ok(())
    }
}

#[async_trait]
impl AlarmRuleStore for MongoDocuments {
    async fn put_alarm_rule(
        &self,
        rule: &AlarmRule,
        expected: Option<u64>,
    ) -> Result<(), StoreError> {
        self.put_rule(rule, expected).await
    }

    async fn alarm_rule(
        &self,
        tenant: TenantId,
        id: AlarmRuleId,
    ) -> Result<Option<AlarmRule>, StoreError> {
        let (_, document) = self.rules.read(&head_of(tenant, id)).await?;
        document
            .map(stored::read_rule)
            .transpose()
            .map_err(StoreError::Backend)
    }

    async fn alarm_rules(&self, tenant: TenantId) -> Result<Vec<AlarmRule>, StoreError> {
        let heads: Vec<Document> = self
            .rules
            .chain
            .heads
            .find(doc! { TENANT: tenant.to_string() })
            .await
            .map_err(backend("listing alarm rules"))?
            .try_collect()
            .await
            .map_err(backend("listing alarm rules"))?;
        let listed = self.rules.live(heads).await?;
        // The filter named the tenant; what came back is checked as well.
        Ok(listed
            .into_iter()
            .filter(|r| r.tenant_id == tenant)
            .collect())
    }

    async fn all_alarm_rules(&self) -> Result<Vec<AlarmRule>, StoreError> {
        let heads: Vec<Document> = self
            .rules
            .chain
            .heads
            .find(doc! {})
            .await
            .map_err(backend("listing alarm rules"))?
            .try_collect()
            .await
            .map_err(backend("listing alarm rules"))?;
        self.rules.live(heads).await
    }

    async fn delete_alarm_rule(
        &self,
        tenant: TenantId,
        id: AlarmRuleId,
    ) -> Result<bool, StoreError> {
        let head = head_of(tenant, id);
        for _ in 0..DELETE_ATTEMPTS {
            let (sequence, current) = self.rules.read(&head).await?;
            if current.is_none() {
                return Ok(false);
            }
            let next = sequence + 1;
            let marker = doc! { ID: chain::version_id(&head, next), DELETED: true };
            match self.rules.insert(marker, next).await {
                Ok(()) => {
                    self.rules.chain.retire(&head, Some(sequence), next).await;
                    return Ok(true);
                }
                // Someone wrote meanwhile: a delete names no version, so it
                // reads again and deletes what is there now.
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Conflict(format!(
            "alarm rule {id} kept changing while it was being deleted"
        )))
    }
}
