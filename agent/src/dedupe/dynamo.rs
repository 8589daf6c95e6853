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
//!
//! Every record expires through the table's TTL after the store's retention; `prune` has
//! nothing to do.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_types::error::display::DisplayErrorContext;

use super::{Claim, Entry, Incident, StoreError, correlate, decode, encode};
use crate::fingerprint::IncidentKey;
use crate::model::AlertState;

/// Placement attempts before giving up on a contended key.
const MAX_ATTEMPTS: usize = 8;

/// Dedupe state in a DynamoDB table.
pub struct DynamoStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    /// This replica, as written in claims.
    owner: String,
    retention: Duration,
}

fn aws(what: &str, e: impl std::error::Error) -> StoreError {
    StoreError(format!("{what}: {}", DisplayErrorContext(&e)))
}

fn is_conditional_failure<E: aws_sdk_dynamodb::error::ProvideErrorMetadata>(e: &E) -> bool {
    e.code() == Some("ConditionalCheckFailedException")
}

impl DynamoStore {
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
                aws(
                    &format!(
                        "dedupe table {table:?} (create it as described in the agent's README section on replicas)"
                    ),
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
                tracing::warn!(%table, error = %DisplayErrorContext(&e), "cannot read the dedupe table's TTL setting")
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

    /// See [`super::DedupeStore::remember`].
    pub async fn remember(
        &self,
        key: &IncidentKey,
        at_ms: i64,
        state: AlertState,
        window: Duration,
        now_ms: i64,
    ) -> Result<Incident, StoreError> {
        let pk = format!("key#{key}");
        for _ in 0..MAX_ATTEMPTS {
            let item = self
                .client
                .get_item()
                .table_name(&self.table)
                .key("pk", AttributeValue::S(pk.clone()))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| aws("reading an incident", e))?
                .item;
            // TTL deletes expired items lazily, days later (DynamoDB developer guide, "Time
            // to Live": items "are typically deleted within a few days"): an expired one is
            // read as gone (its version still guards the write).
            let expired = item
                .as_ref()
                .and_then(|i| i.get("expires_at"))
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse::<i64>().ok())
                .is_some_and(|secs| secs < now_ms / 1000);
            let (mut entries, version) = match &item {
                Some(item) => (
                    if expired {
                        Vec::new()
                    } else {
                        item.get("entries")
                            .and_then(|v| v.as_b().ok())
                            .map(|b| decode(b.as_ref()))
                            .unwrap_or_default()
                    },
                    item.get("version")
                        .and_then(|v| v.as_n().ok())
                        .and_then(|n| n.parse::<u64>().ok()),
                ),
                None => (Vec::<Entry>::new(), None),
            };
            let (start_ms, new) = correlate(&mut entries, at_ms, state, window, now_ms);
            let next = version.map(|v| v + 1).unwrap_or(1);
            let mut put = self
                .client
                .put_item()
                .table_name(&self.table)
                .item("pk", AttributeValue::S(pk.clone()))
                .item(
                    "entries",
                    AttributeValue::B(aws_smithy_types::Blob::new(encode(&entries))),
                )
                .item("version", AttributeValue::N(next.to_string()))
                .item("expires_at", self.incident_expires_at(&entries, now_ms));
            put = match version {
                Some(v) => put
                    .condition_expression("version = :v")
                    .expression_attribute_values(":v", AttributeValue::N(v.to_string())),
                None => put.condition_expression("attribute_not_exists(pk)"),
            };
            match put.send().await {
                Ok(_) => {
                    return Ok(Incident {
                        key: *key,
                        start_ms,
                        new,
                    });
                }
                Err(e) if e.as_service_error().is_some_and(is_conditional_failure) => {
                    // Another replica placed an alert of this key meanwhile: redo.
                    continue;
                }
                Err(e) => return Err(aws("writing an incident", e)),
            }
        }
        Err(StoreError(format!(
            "incident {key}: still contended after {MAX_ATTEMPTS} attempts"
        )))
    }

    /// Claims the delivery of `incident` in `state` to `sink` for this replica until
    /// `now_ms + lease`.
    pub async fn claim(
        &self,
        incident: &Incident,
        state: AlertState,
        sink: &str,
        lease: Duration,
        now_ms: i64,
    ) -> Result<Claim, StoreError> {
        let pk = Self::delivery_pk(incident, state, sink);
        let until = now_ms.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2));
        let claimed = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pk.clone()))
            .update_expression("SET #o = :me, lease_until = :until, expires_at = :exp")
            .condition_expression(
                "attribute_not_exists(pk) OR (attribute_not_exists(delivered) AND (#o = :me OR lease_until < :now))",
            )
            .expression_attribute_names("#o", "owner")
            .expression_attribute_values(":me", AttributeValue::S(self.owner.clone()))
            .expression_attribute_values(":until", AttributeValue::N(until.to_string()))
            .expression_attribute_values(":now", AttributeValue::N(now_ms.to_string()))
            .expression_attribute_values(":exp", self.expires_at(now_ms))
            .send()
            .await;
        match claimed {
            Ok(_) => Ok(Claim::Mine),
            Err(e) if e.as_service_error().is_some_and(is_conditional_failure) => {
                self.claim_state(&pk).await
            }
            Err(e) => Err(aws("claiming a delivery", e)),
        }
    }

    /// Gives up this replica's claim on a delivery that failed, so another replica (or
    /// this one, on the message's next attempt) need not wait for the lease to end. Only
    /// an undelivered claim of ours is released (a conditional update: DynamoDB developer
    /// guide, "Condition expressions").
    pub async fn release(
        &self,
        incident: &Incident,
        state: AlertState,
        sink: &str,
    ) -> Result<(), StoreError> {
        let pk = Self::delivery_pk(incident, state, sink);
        let released = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pk))
            .update_expression("SET lease_until = :zero")
            .condition_expression("#o = :me AND attribute_not_exists(delivered)")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_values(":me", AttributeValue::S(self.owner.clone()))
            .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            .send()
            .await;
        match released {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(is_conditional_failure) => Ok(()),
            Err(e) => Err(aws("releasing a claim", e)),
        }
    }

    /// What a claim that could not be placed found: delivered, or held until the holder's
    /// `lease_until` (Unix ms).
    async fn claim_state(&self, pk: &str) -> Result<Claim, StoreError> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pk.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| aws("reading a delivery", e))?
            .item
            .unwrap_or_default();
        if item
            .get("delivered")
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false)
        {
            return Ok(Claim::Delivered);
        }
        let until_ms = item
            .get("lease_until")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<i64>().ok())
            .unwrap_or(0);
        Ok(Claim::Held { until_ms })
    }

    /// See [`super::DedupeStore::record_delivery`].
    pub async fn record_delivery(
        &self,
        items: &[(Incident, AlertState)],
        sink: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        for (incident, state) in items {
            self.client
                .update_item()
                .table_name(&self.table)
                .key(
                    "pk",
                    AttributeValue::S(Self::delivery_pk(incident, *state, sink)),
                )
                .update_expression("SET delivered = :t, delivered_at = :now, expires_at = :exp")
                .expression_attribute_values(":t", AttributeValue::Bool(true))
                .expression_attribute_values(":now", AttributeValue::N(now_ms.to_string()))
                .expression_attribute_values(":exp", self.expires_at(now_ms))
                .send()
                .await
                .map_err(|e| aws("recording a delivery", e))?;
        }
        Ok(())
    }

    /// See [`super::DedupeStore::delivered`].
    pub async fn delivered(
        &self,
        incident: &Incident,
        state: AlertState,
        sink: &str,
    ) -> Result<bool, StoreError> {
        Ok(matches!(
            self.claim_state(&Self::delivery_pk(incident, state, sink))
                .await?,
            Claim::Delivered
        ))
    }
}
