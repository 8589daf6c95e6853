//! The DynamoDB store: dedupe state shared by several agent replicas on one queue.
//!
//! The table has one key attribute, `pk` (String, partition key), and a TTL attribute
//! `expires_at` (Number, epoch seconds). Create it once, e.g.:
//!
//! ```sh
//! aws dynamodb create-table --table-name orgwatch-agent \
//!   --attribute-definitions AttributeName=pk,AttributeType=S \
//!   --key-schema AttributeName=pk,KeyType=HASH --billing-mode PAY_PER_REQUEST
//! aws dynamodb update-time-to-live --table-name orgwatch-agent \
//!   --time-to-live-specification Enabled=true,AttributeName=expires_at
//! ```
//!
//! Items:
//! * `key#<incident key>`: the incidents of one rule/account/region (`entries`, the same
//!   32-byte records as the file store, masks unused) and a `version`. Placement is
//!   optimistic: read (strongly consistent), [`correlate`], write conditioned on the version
//!   read; a conflicting replica makes the write fail and the placement is redone.
//! * `dlv#<fingerprint>#<state>#<sink>`: the delivery of one incident in one state to one
//!   sink. A replica *claims* it before delivering (`owner`, `lease_until`, a conditional
//!   write that succeeds only if nobody holds an unexpired claim and it is not delivered),
//!   and marks it `delivered` after the sink accepted. Another replica holding the same
//!   alert meanwhile sees the claim ([`Claim::Held`]) and leaves its message to come back
//!   later, when the delivery is recorded (a duplicate) or the claim has expired (the owner
//!   died: it delivers). At-least-once in, exactly-once out, across replicas.
//! * `silences`: every silence ([`crate::silence`]), one JSON document (`doc`, the file
//!   store's format) and a `version`, with no `expires_at` (silences end by their own time,
//!   and ended ones are pruned by the next change). One item, not one per silence: the table
//!   has only a partition key, and a Query needs an equality condition on it, so it reads
//!   one item at most (DynamoDB developer guide, "Key condition expressions for the Query
//!   operation": "You must specify the partition key name and value as an equality
//!   condition"; <https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Query.KeyConditionExpressions.html>),
//!   and listing the items of a prefix would be a Scan of every incident and delivery, on
//!   every replica's refresh. So a refresh is one strongly consistent BatchGetItem of one
//!   item, and a change (`agent silence add|expire`) is a read, the change, and a PutItem
//!   conditioned on the version read (`version = :v`, or `attribute_not_exists(pk)` for
//!   the first: DynamoDB developer guide, "Condition expressions", conditional put;
//!   <https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Expressions.SpecifyingConditions.html>),
//!   redone when another writer came first. An item is at most 400 KB (DynamoDB developer
//!   guide, "Constraints in Amazon DynamoDB", Items;
//!   <https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Constraints.html>),
//!   which bounds the stored silences ([`crate::silence::MAX_STORED`], and a size check
//!   before the write). No IAM action beyond the dedupe table's: BatchGetItem and PutItem.
//!
//! Every call takes the batch of every message waiting to be prepared, so its cost is a
//! few round trips per batch, not per alert: one BatchGetItem of the keys, one
//! TransactWriteItems of the conditional writes (per 100), a BatchWriteItem of the
//! delivered records (per 25). A transaction is all or nothing: when one condition fails
//! (another replica placed or claimed meanwhile) the batch is read again and redone, and
//! for claims only the ones still free are asked again. A batch of one uses the plain
//! conditional PutItem / UpdateItem (a transaction costs twice the write capacity).
//!
//! IAM: transactions need no action of their own; their Put and Update are governed by
//! `dynamodb:PutItem` and `dynamodb:UpdateItem` (DynamoDB developer guide, "Using IAM with
//! DynamoDB transactions"). The batch calls need `dynamodb:BatchGetItem` and
//! `dynamodb:BatchWriteItem` (the agent's `DedupeTable` grant).
//!
//! Every record expires through the table's TTL after the store's retention; `prune` has
//! nothing to do.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, Put, PutRequest, TransactWriteItem, WriteRequest,
};
use shared::aws::errors::AwsFailure;

use super::{
    Ask, Claim, DedupeStore, Entry, Incident, StoreError, StoreFuture, correlate, decode, encode,
};
use crate::fingerprint::IncidentKey;
use crate::model::AlertState;
use crate::silence::{Document, Expired, Silence};

/// Attempts before giving up on a contended (or throttled) batch.
const MAX_ATTEMPTS: usize = 8;
/// Keys per BatchGetItem (DynamoDB API reference, BatchGetItem).
const MAX_BATCH_GET: usize = 100;
/// Actions per TransactWriteItems (DynamoDB API reference, TransactWriteItems).
const MAX_TRANSACTION: usize = 100;
/// Requests per BatchWriteItem (DynamoDB API reference, BatchWriteItem).
const MAX_BATCH_WRITE: usize = 25;

type Item = HashMap<String, AttributeValue>;

/// The item of the silences (incident items start `key#`, deliveries `dlv#`).
const SILENCES_PK: &str = "silences";
/// The silences document's bytes at most, below DynamoDB's 400 KB per item (attribute
/// names and the other attributes included).
const MAX_SILENCES_DOC: usize = 380 * 1024;

/// Dedupe state in a DynamoDB table.
pub struct DynamoStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    /// This replica, as written in claims.
    owner: String,
    retention: Duration,
}

/// A failed DynamoDB call, as a person can act on it: the operation, the AWS error code and
/// message, the region and a hint for the common cases (`shared::aws::errors`); the full
/// chain at `-v`.
fn aws<E>(what: &str, operation: &str, region: Option<&str>, e: SdkError<E>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    StoreError(format!(
        "{what}: {}",
        AwsFailure::new(operation, e).at(None, region)
    ))
}

/// A request that could not be built (a missing required field): orgwatch's own error.
fn unbuilt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError(format!("{what}: {e}"))
}

fn is_conditional_failure<E: ProvideErrorMetadata>(e: &E) -> bool {
    e.code() == Some("ConditionalCheckFailedException")
}

/// The condition of a write over an item read at `version` (`None`: it did not exist):
/// the item is still as read, so a concurrent writer's change is never overwritten.
fn unchanged_since(version: Option<u64>) -> (&'static str, Option<Item>) {
    match version {
        Some(v) => (
            "version = :v",
            Some(HashMap::from([(
                ":v".to_string(),
                AttributeValue::N(v.to_string()),
            )])),
        ),
        None => ("attribute_not_exists(pk)", None),
    }
}

/// A conditional write's answer: written (true), its condition did not hold (false), or
/// another failure.
fn written<T, E>(
    what: &str,
    operation: &str,
    region: Option<&str>,
    sent: Result<T, SdkError<E>>,
) -> Result<bool, StoreError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match sent {
        Ok(_) => Ok(true),
        Err(e) if e.as_service_error().is_some_and(is_conditional_failure) => Ok(false),
        Err(e) => Err(aws(what, operation, region, e)),
    }
}

impl DynamoStore {
    /// The table's region, for errors.
    fn region(&self) -> Option<String> {
        self.client.config().region().map(|r| r.to_string())
    }

    /// Checks that `table` exists with the key schema above (a clear error otherwise), and
    /// warns when its TTL is not on.
    pub async fn connect(
        client: aws_sdk_dynamodb::Client,
        table: &str,
        retention: Duration,
    ) -> Result<DynamoStore, StoreError> {
        let described = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| {
                let region = client.config().region().map(|r| r.to_string());
                aws(
                    &format!(
                        "dedupe table {table:?} (create it as described in the agent's README section on replicas)"
                    ),
                    "DescribeTable",
                    region.as_deref(),
                    e,
                )
            })?;
        let key_ok = described.table().is_some_and(|t| {
            let hash = t
                .key_schema()
                .iter()
                .find(|k| k.key_type().as_str() == "HASH")
                .map(|k| k.attribute_name());
            let string = t
                .attribute_definitions()
                .iter()
                .any(|a| a.attribute_name() == "pk" && a.attribute_type().as_str() == "S");
            hash == Some("pk") && t.key_schema().len() == 1 && string
        });
        if !key_ok {
            return Err(StoreError(format!(
                "dedupe table {table:?} must have exactly one key: pk (String, partition key)"
            )));
        }
        match client
            .describe_time_to_live()
            .table_name(table)
            .send()
            .await
        {
            Ok(ttl) => {
                let on = ttl.time_to_live_description().is_some_and(|d| {
                    d.attribute_name() == Some("expires_at")
                        && d.time_to_live_status().map(|s| s.as_str()) == Some("ENABLED")
                });
                if !on {
                    tracing::warn!(%table, "the dedupe table's TTL is not enabled on expires_at: records are never removed");
                }
            }
            Err(e) => {
                tracing::warn!(%table, error = %shared::aws::AwsFailure::new("DescribeTimeToLive", e), "cannot read the dedupe table's TTL setting")
            }
        }
        let owner = format!(
            "{}-{}-{:016x}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "agent".into()),
            std::process::id(),
            fastrand::u64(..)
        );
        Ok(DynamoStore {
            client,
            table: table.to_string(),
            owner,
            retention,
        })
    }

    fn expires_at(&self, now_ms: i64) -> AttributeValue {
        let secs = now_ms / 1000 + i64::try_from(self.retention.as_secs()).unwrap_or(i64::MAX / 2);
        AttributeValue::N(secs.to_string())
    }

    /// An incident record lives the retention, or [`super::OPEN_INCIDENT_EXTRA`] longer
    /// while one of its incidents is open (delivered firing, not resolved).
    fn incident_expires_at(&self, entries: &[Entry], now_ms: i64) -> AttributeValue {
        let open = entries.iter().any(|e| e.firing != 0 && e.resolved == 0);
        let extra = if open {
            i64::try_from(super::OPEN_INCIDENT_EXTRA.as_secs()).unwrap_or(0)
        } else {
            0
        };
        let secs =
            now_ms / 1000 + i64::try_from(self.retention.as_secs()).unwrap_or(i64::MAX / 4) + extra;
        AttributeValue::N(secs.to_string())
    }

    fn delivery_pk(incident: &Incident, state: AlertState, sink: &str) -> String {
        format!("dlv#{}#{}#{sink}", incident.fingerprint(), state.as_str())
    }

    /// Strongly consistent reads of `pks`: BatchGetItem, at most 100 keys a call, its
    /// `UnprocessedKeys` asked again after a backoff (DynamoDB API reference, BatchGetItem:
    /// "a single operation can retrieve up to 16 MB of data, which can contain as many as 100
    /// items"; `ConsistentRead` is set per table). Absent items are absent from the map.
    async fn read_many(&self, pks: &[String]) -> Result<HashMap<String, Item>, StoreError> {
        let mut out = HashMap::with_capacity(pks.len());
        for chunk in pks.chunks(MAX_BATCH_GET) {
            let keys: Vec<Item> = chunk.iter().map(|pk| key(pk)).collect();
            for item in
                until_processed("reading the dedupe table", keys, |k| self.get_round(k)).await?
            {
                if let Some(pk) = item.get("pk").and_then(|v| v.as_s().ok()) {
                    out.insert(pk.clone(), item);
                }
            }
        }
        Ok(out)
    }

    /// One BatchGetItem: (the keys left unprocessed, the items read).
    async fn get_round(&self, keys: Vec<Item>) -> Result<(Vec<Item>, Vec<Item>), StoreError> {
        let ask = KeysAndAttributes::builder()
            .set_keys(Some(keys))
            .consistent_read(true)
            .build()
            .map_err(|e| unbuilt("reading the dedupe table", e))?;
        let got = self
            .client
            .batch_get_item()
            .request_items(&self.table, ask)
            .send()
            .await
            .map_err(|e| {
                aws(
                    "reading incidents and deliveries",
                    "BatchGetItem",
                    self.region().as_deref(),
                    e,
                )
            })?;
        let items = got
            .responses()
            .and_then(|r| r.get(&self.table))
            .cloned()
            .unwrap_or_default();
        let left = got
            .unprocessed_keys()
            .and_then(|u| u.get(&self.table))
            .map(|k| k.keys().to_vec())
            .unwrap_or_default();
        Ok((left, items))
    }

    /// One BatchWriteItem: (the requests left unprocessed, nothing).
    async fn write_round(
        &self,
        requests: Vec<WriteRequest>,
    ) -> Result<(Vec<WriteRequest>, Vec<()>), StoreError> {
        let out = self
            .client
            .batch_write_item()
            .request_items(&self.table, requests)
            .send()
            .await
            .map_err(|e| {
                aws(
                    "recording deliveries",
                    "BatchWriteItem",
                    self.region().as_deref(),
                    e,
                )
            })?;
        let left = out
            .unprocessed_items()
            .and_then(|u| u.get(&self.table))
            .cloned()
            .unwrap_or_default();
        Ok((left, Vec::new()))
    }

    /// Writes `writes` (each on its own item) all or none. One write goes as itself (a
    /// transaction costs twice the write capacity: DynamoDB developer guide, "Capacity
    /// management for transactions"); more go in one TransactWriteItems (at most 100
    /// actions, no two on one item; DynamoDB API reference, TransactWriteItems), whose
    /// idempotency token makes the SDK's own retry of a committed one harmless. `Ok(false)`:
    /// a condition did not hold or a concurrent write interfered; read again and redo.
    async fn write_all(&self, writes: Vec<Write>, what: &str) -> Result<bool, StoreError> {
        let writes = match <[Write; 1]>::try_from(writes) {
            Ok([Write::Put(p)]) => {
                let sent = self
                    .client
                    .put_item()
                    .table_name(&self.table)
                    .set_item(p.item)
                    .condition_expression(p.condition)
                    .set_expression_attribute_values(p.values)
                    .send()
                    .await;
                return written(what, "PutItem", self.region().as_deref(), sent);
            }
            Ok([Write::Update(u)]) => {
                let sent = self
                    .client
                    .update_item()
                    .table_name(&self.table)
                    .key("pk", AttributeValue::S(u.pk))
                    .update_expression(u.update)
                    .condition_expression(u.condition)
                    .set_expression_attribute_names(u.names)
                    .set_expression_attribute_values(u.values)
                    .send()
                    .await;
                return written(what, "UpdateItem", self.region().as_deref(), sent);
            }
            Err(writes) => writes,
        };
        let mut items = Vec::with_capacity(writes.len());
        for w in writes {
            items.push(w.transact(&self.table).map_err(|e| unbuilt(what, e))?);
        }
        let token = format!("{:032x}", fastrand::u128(..));
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .client_request_token(token)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) => {
                if let Some(TransactWriteItemsError::TransactionCanceledException(c)) =
                    e.as_service_error()
                {
                    // Per item, in order: "None" for the items that were fine,
                    // ConditionalCheckFailed, TransactionConflict (another transaction on
                    // the item), or a throttling code (API reference, TransactWriteItems,
                    // "Errors"): all worth a fresh read and another attempt; a validation
                    // error is not.
                    let fatal: Vec<&str> = c
                        .cancellation_reasons()
                        .iter()
                        .filter_map(|r| r.code())
                        .filter(|code| {
                            matches!(*code, "ValidationError" | "ItemCollectionSizeLimitExceeded")
                        })
                        .collect();
                    if fatal.is_empty() {
                        return Ok(false);
                    }
                    return Err(StoreError(format!(
                        "{what}: the transaction was refused ({})",
                        fatal.join(", ")
                    )));
                }
                Err(aws(what, "TransactWriteItems", self.region().as_deref(), e))
            }
        }
    }

    /// The incidents of one item as read (an expired one as gone) and its version.
    fn incidents_of(item: Option<&Item>, now_ms: i64) -> (Vec<Entry>, Option<u64>) {
        let Some(item) = item else {
            return (Vec::new(), None);
        };
        // TTL deletes expired items lazily, days later (DynamoDB developer guide, "Time to
        // Live": items "are typically deleted within a few days"): an expired one is read as
        // gone (its version still guards the write).
        let expired = item
            .get("expires_at")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<i64>().ok())
            .is_some_and(|secs| secs < now_ms / 1000);
        let entries = if expired {
            Vec::new()
        } else {
            item.get("entries")
                .and_then(|v| v.as_b().ok())
                .map(|b| decode(b.as_ref()))
                .unwrap_or_default()
        };
        let version = item
            .get("version")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<u64>().ok());
        (entries, version)
    }

    /// What a delivery's item says: delivered, held by another replica until its lease ends,
    /// or free to claim (absent, released, expired, or ours).
    fn claim_of(&self, item: Option<&Item>, now_ms: i64) -> Option<Claim> {
        let item = item?;
        if item
            .get("delivered")
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false)
        {
            return Some(Claim::Delivered);
        }
        let owner = item.get("owner").and_then(|v| v.as_s().ok());
        let until_ms = item
            .get("lease_until")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<i64>().ok())
            .unwrap_or(0);
        (owner.is_some_and(|o| *o != self.owner) && until_ms >= now_ms)
            .then_some(Claim::Held { until_ms })
    }

    /// The conditional claim of one delivery (see the module documentation).
    fn claim_write(&self, pk: &str, until_ms: i64, now_ms: i64) -> Write {
        Write::Update(Update {
            pk: pk.to_string(),
            update: "SET #o = :me, lease_until = :until, expires_at = :exp".into(),
            condition: "attribute_not_exists(pk) OR (attribute_not_exists(delivered) AND (#o = :me OR lease_until < :now))".into(),
            names: Some(HashMap::from([("#o".to_string(), "owner".to_string())])),
            values: Some(HashMap::from([
                (":me".to_string(), AttributeValue::S(self.owner.clone())),
                (":until".to_string(), AttributeValue::N(until_ms.to_string())),
                (":now".to_string(), AttributeValue::N(now_ms.to_string())),
                (":exp".to_string(), self.expires_at(now_ms)),
            ])),
        })
    }
}

impl DynamoStore {
    /// The stored silences and the item's version (none: no item yet), read strongly
    /// consistent.
    async fn read_silences(&self) -> Result<(Vec<Silence>, Option<u64>), StoreError> {
        let read = self.read_many(&[SILENCES_PK.to_string()]).await?;
        let Some(item) = read.get(SILENCES_PK) else {
            return Ok((Vec::new(), None));
        };
        let what = format!("dedupe table {:?}, item {SILENCES_PK:?}", self.table);
        let doc = item
            .get("doc")
            .and_then(|v| v.as_s().ok())
            .ok_or_else(|| StoreError(format!("{what}: no doc attribute")))?;
        let list = Document::decode(&what, doc).map_err(StoreError)?;
        let version = item
            .get("version")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<u64>().ok());
        Ok((list, version))
    }

    /// Read, `change`, and a write conditioned on the version read, redone (after a backoff)
    /// while another writer came first. `change` says whether it changed the list.
    async fn change_silences<R>(
        &self,
        what: &str,
        mut change: impl FnMut(&mut Vec<Silence>) -> Result<(bool, R), String>,
    ) -> Result<R, StoreError> {
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt)).await;
            }
            let (mut list, version) = self.read_silences().await?;
            let (changed, out) = change(&mut list).map_err(StoreError)?;
            if !changed {
                return Ok(out);
            }
            let doc = Document::encode(&list);
            if doc.len() > MAX_SILENCES_DOC {
                return Err(StoreError(format!(
                    "{what}: the silences would take {} KB, more than the {} KB one DynamoDB item holds: expire some, or shorten comments",
                    doc.len() / 1024,
                    MAX_SILENCES_DOC / 1024
                )));
            }
            let next = version.map(|v| v + 1).unwrap_or(1);
            let item = HashMap::from([
                ("pk".to_string(), AttributeValue::S(SILENCES_PK.to_string())),
                ("doc".to_string(), AttributeValue::S(doc)),
                ("version".to_string(), AttributeValue::N(next.to_string())),
            ]);
            let (condition, values) = unchanged_since(version);
            let write = Write::Put(PutWrite {
                item: Some(item),
                condition: condition.into(),
                values,
            });
            if self.write_all(vec![write], what).await? {
                return Ok(out);
            }
        }
        Err(StoreError(format!(
            "{what}: still contended after {MAX_ATTEMPTS} attempts"
        )))
    }
}

impl super::SilenceStore for DynamoStore {
    fn add_silence<'a>(&'a self, silence: &'a Silence, now_ms: i64) -> StoreFuture<'a, ()> {
        Box::pin(self.change_silences("adding a silence", move |list| {
            // Already there as it is: an earlier attempt's write went through (the SDK
            // retried a put whose answer was lost), so this one has nothing to do.
            if list.contains(silence) {
                return Ok((false, ()));
            }
            crate::silence::insert(list, silence.clone(), now_ms).map(|()| (true, ()))
        }))
    }

    fn silences(&self) -> StoreFuture<'_, Vec<Silence>> {
        Box::pin(async move { Ok(self.read_silences().await?.0) })
    }

    fn expire_silence<'a>(&'a self, id: &'a str, now_ms: i64) -> StoreFuture<'a, Expired> {
        Box::pin(self.change_silences("expiring a silence", move |list| {
            let e = crate::silence::expire(list, id, now_ms);
            Ok((matches!(e, Expired::Ended(_)), e))
        }))
    }
}

/// A write of [`DynamoStore::write_all`]: a conditional put or update of one item.
enum Write {
    Put(PutWrite),
    Update(Update),
}

struct PutWrite {
    item: Option<Item>,
    condition: String,
    values: Option<HashMap<String, AttributeValue>>,
}

struct Update {
    pk: String,
    update: String,
    condition: String,
    names: Option<HashMap<String, String>>,
    values: Option<HashMap<String, AttributeValue>>,
}

impl Write {
    fn transact(
        self,
        table: &str,
    ) -> Result<TransactWriteItem, aws_sdk_dynamodb::error::BuildError> {
        Ok(match self {
            Write::Put(p) => TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(table)
                        .set_item(p.item)
                        .condition_expression(p.condition)
                        .set_expression_attribute_values(p.values)
                        .build()?,
                )
                .build(),
            Write::Update(u) => TransactWriteItem::builder()
                .update(
                    aws_sdk_dynamodb::types::Update::builder()
                        .table_name(table)
                        .key("pk", AttributeValue::S(u.pk))
                        .update_expression(u.update)
                        .condition_expression(u.condition)
                        .set_expression_attribute_names(u.names)
                        .set_expression_attribute_values(u.values)
                        .build()?,
                )
                .build(),
        })
    }
}

fn key(pk: &str) -> Item {
    HashMap::from([("pk".to_string(), AttributeValue::S(pk.to_string()))])
}

/// Between attempts on a contended or throttled batch: 20 ms, doubling, at most 1 s, with
/// jitter so that two replicas do not retry in step.
fn backoff(attempt: usize) -> Duration {
    let base = 20u64 << attempt.min(6);
    Duration::from_millis(base.min(1000) / 2 + fastrand::u64(..base.min(1000) / 2 + 1))
}

/// Calls `round` with what is pending until it leaves nothing unprocessed (a batch call's
/// `UnprocessedKeys` / `UnprocessedItems`, which DynamoDB returns when throttled: its API
/// reference asks for a retry with exponential backoff), at most [`MAX_ATTEMPTS`] rounds.
/// Returns what the rounds produced.
async fn until_processed<T, R, F, Fut>(
    what: &str,
    mut pending: Vec<T>,
    mut round: F,
) -> Result<Vec<R>, StoreError>
where
    F: FnMut(Vec<T>) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, Vec<R>), StoreError>>,
{
    let mut out = Vec::new();
    let mut attempt = 0;
    while !pending.is_empty() {
        attempt += 1;
        if attempt > MAX_ATTEMPTS {
            return Err(StoreError(format!(
                "{what}: {} still unprocessed after {MAX_ATTEMPTS} attempts (throttled?)",
                pending.len()
            )));
        }
        if attempt > 1 {
            tokio::time::sleep(backoff(attempt)).await;
        }
        let (left, got) = round(pending).await?;
        out.extend(got);
        pending = left;
    }
    Ok(out)
}

/// Distinct values in order of first appearance, and each input's index into them.
fn distinct<T: Clone + Eq + std::hash::Hash>(all: impl Iterator<Item = T>) -> (Vec<T>, Vec<usize>) {
    let mut seen: HashMap<T, usize> = HashMap::new();
    let mut order = Vec::new();
    let index = all
        .map(|v| {
            *seen.entry(v.clone()).or_insert_with(|| {
                order.push(v);
                order.len() - 1
            })
        })
        .collect();
    (order, index)
}

impl DedupeStore for DynamoStore {
    /// Per chunk of at most 100 distinct keys: one consistent read of them all, the
    /// correlation of every alert in order, and one all-or-nothing write conditioned on
    /// every version read; a conflicting replica cancels it and the chunk is read and
    /// placed again.
    fn remember_many<'a>(
        &'a self,
        alerts: &'a [(IncidentKey, i64, AlertState)],
        window: Duration,
        now_ms: i64,
    ) -> StoreFuture<'a, Vec<Incident>> {
        Box::pin(async move {
            let (keys, index) = distinct(alerts.iter().map(|(k, _, _)| *k));
            let mut placed: Vec<Option<Incident>> = vec![None; alerts.len()];
            for (c, chunk) in keys.chunks(MAX_TRANSACTION).enumerate() {
                let first = c * MAX_TRANSACTION;
                let pks: Vec<String> = chunk.iter().map(|k| format!("key#{k}")).collect();
                let mut done = false;
                for attempt in 0..MAX_ATTEMPTS {
                    if attempt > 0 {
                        tokio::time::sleep(backoff(attempt)).await;
                    }
                    let read = self.read_many(&pks).await?;
                    let mut state: Vec<(Vec<Entry>, Option<u64>)> = pks
                        .iter()
                        .map(|pk| Self::incidents_of(read.get(pk), now_ms))
                        .collect();
                    for (i, (key, at_ms, alert_state)) in alerts.iter().enumerate() {
                        let Some(k) = index[i].checked_sub(first).filter(|k| *k < chunk.len())
                        else {
                            continue;
                        };
                        let (start_ms, new) =
                            correlate(&mut state[k].0, *at_ms, *alert_state, window, now_ms);
                        placed[i] = Some(Incident {
                            key: *key,
                            start_ms,
                            new,
                        });
                    }
                    let writes = pks
                        .iter()
                        .zip(&state)
                        .map(|(pk, (entries, version))| {
                            let next = version.map(|v| v + 1).unwrap_or(1);
                            let item = HashMap::from([
                                ("pk".to_string(), AttributeValue::S(pk.clone())),
                                (
                                    "entries".to_string(),
                                    AttributeValue::B(aws_smithy_types::Blob::new(encode(entries))),
                                ),
                                ("version".to_string(), AttributeValue::N(next.to_string())),
                                (
                                    "expires_at".to_string(),
                                    self.incident_expires_at(entries, now_ms),
                                ),
                            ]);
                            let (condition, values) = unchanged_since(*version);
                            Write::Put(PutWrite {
                                item: Some(item),
                                condition: condition.into(),
                                values,
                            })
                        })
                        .collect();
                    if self.write_all(writes, "writing incidents").await? {
                        done = true;
                        break;
                    }
                }
                if !done {
                    return Err(StoreError(format!(
                        "{} incidents (the first {}): still contended after {MAX_ATTEMPTS} attempts",
                        chunk.len(),
                        chunk[0]
                    )));
                }
            }
            placed
                .into_iter()
                .map(|p| p.ok_or_else(|| StoreError("an alert was not placed".into())))
                .collect()
        })
    }

    /// Every distinct delivery claimed in one all-or-nothing write (per 100); when some
    /// condition fails, one consistent read says which are delivered or held by another
    /// replica, and the rest are claimed again.
    fn claim_many<'a>(
        &'a self,
        asks: &'a [Ask<'a>],
        lease: Duration,
        now_ms: i64,
    ) -> StoreFuture<'a, Vec<Claim>> {
        Box::pin(async move {
            let until =
                now_ms.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2));
            let (pks, index) = distinct(
                asks.iter()
                    .map(|(incident, state, sink)| Self::delivery_pk(incident, *state, sink)),
            );
            let mut answers: HashMap<&str, Claim> = HashMap::with_capacity(pks.len());
            let mut todo: Vec<&str> = pks.iter().map(String::as_str).collect();
            for attempt in 0..MAX_ATTEMPTS {
                if todo.is_empty() {
                    break;
                }
                if attempt > 0 {
                    tokio::time::sleep(backoff(attempt)).await;
                }
                let mut refused: Vec<String> = Vec::new();
                for chunk in todo.chunks(MAX_TRANSACTION) {
                    let writes = chunk
                        .iter()
                        .map(|pk| self.claim_write(pk, until, now_ms))
                        .collect();
                    if self.write_all(writes, "claiming deliveries").await? {
                        answers.extend(chunk.iter().map(|pk| (*pk, Claim::Mine)));
                    } else {
                        refused.extend(chunk.iter().map(|pk| pk.to_string()));
                    }
                }
                let read = self.read_many(&refused).await?;
                todo.retain(|pk| !answers.contains_key(pk));
                for pk in &todo {
                    if let Some(c) = self.claim_of(read.get(*pk), now_ms) {
                        answers.insert(pk, c);
                    }
                }
                todo.retain(|pk| !answers.contains_key(pk));
            }
            if let Some(pk) = todo.first() {
                return Err(StoreError(format!(
                    "delivery {pk}: still contended after {MAX_ATTEMPTS} attempts"
                )));
            }
            index
                .iter()
                .map(|i| {
                    answers
                        .get(pks[*i].as_str())
                        .copied()
                        .ok_or_else(|| StoreError("a delivery was not claimed".into()))
                })
                .collect()
        })
    }

    /// BatchWriteItem puts, 25 a call, unprocessed ones written again after a backoff
    /// (DynamoDB API reference, BatchWriteItem: "up to 25 put or delete requests", no two on
    /// the same key, and no updates: a delivered record is final, so a put is what it
    /// means; the claim it replaces is no longer read).
    fn record_delivery<'a>(
        &'a self,
        items: &'a [(Incident, AlertState)],
        sink: &'a str,
        now_ms: i64,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let (pks, _) = distinct(
                items
                    .iter()
                    .map(|(incident, state)| Self::delivery_pk(incident, *state, sink)),
            );
            for chunk in pks.chunks(MAX_BATCH_WRITE) {
                let mut requests = Vec::with_capacity(chunk.len());
                for pk in chunk {
                    let put = PutRequest::builder()
                        .item("pk", AttributeValue::S(pk.clone()))
                        .item("delivered", AttributeValue::Bool(true))
                        .item("delivered_at", AttributeValue::N(now_ms.to_string()))
                        .item("expires_at", self.expires_at(now_ms))
                        .build()
                        .map_err(|e| unbuilt("recording deliveries", e))?;
                    requests.push(WriteRequest::builder().put_request(put).build());
                }
                until_processed("recording deliveries", requests, |r| self.write_round(r)).await?;
            }
            Ok(())
        })
    }

    /// Gives up this replica's claim on deliveries that failed, so another replica (or this
    /// one, on the message's next attempt) need not wait for the lease to end. Only an
    /// undelivered claim of ours is released (a conditional update: DynamoDB developer
    /// guide, "Condition expressions"), one at a time: a failed delivery is the rare path,
    /// and one condition that does not hold must not undo the others.
    fn release<'a>(
        &'a self,
        items: &'a [(Incident, AlertState)],
        sink: &'a str,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            for (incident, state) in items {
                let write = Write::Update(Update {
                    pk: Self::delivery_pk(incident, *state, sink),
                    update: "SET lease_until = :zero".into(),
                    condition: "#o = :me AND attribute_not_exists(delivered)".into(),
                    names: Some(HashMap::from([("#o".to_string(), "owner".to_string())])),
                    values: Some(HashMap::from([
                        (":me".to_string(), AttributeValue::S(self.owner.clone())),
                        (":zero".to_string(), AttributeValue::N("0".into())),
                    ])),
                });
                // Not ours any more (delivered, or taken over): nothing to release.
                self.write_all(vec![write], "releasing a claim").await?;
            }
            Ok(())
        })
    }

    /// Records expire through the table's TTL instead.
    fn prune(&self, _before_ms: i64) -> StoreFuture<'_, usize> {
        Box::pin(std::future::ready(Ok(0)))
    }

    /// Each batch is a few round trips of latency: several at once keep the queue moving.
    fn parallel_batches(&self) -> usize {
        16
    }

    fn shared(&self) -> bool {
        true
    }
}
