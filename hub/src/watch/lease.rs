//! At most one `hub watch` acts on an organisation at a time: a lease held as one item of
//! the lease table (`[watch] lease_table`, created by `hub enroll`), taken and renewed with
//! a conditional write and given up on shutdown. A replica that does not hold it waits; when
//! the holder dies its lease expires and a waiting replica takes it over.
//!
//! DynamoDB conditional writes are atomic per item (DynamoDB developer guide, "Condition
//! expressions" and "Conditional writes": "PutItem ... succeeds only if the item attributes
//! meet one or more expected conditions"; a failed condition answers
//! `ConditionalCheckFailedException`), so two replicas never both see their write succeed.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use shared::aws::Clients;

use crate::desired::LEASE_KEY;
use crate::observe::OpError;

#[derive(Clone)]
pub struct Lease {
    clients: Clients,
    table: String,
    /// The item: one lease per organisation.
    key: String,
    /// This replica (host, process, random).
    pub holder: String,
    pub ttl: Duration,
}

impl Lease {
    pub fn new(clients: Clients, table: &str, key: &str, ttl: Duration) -> Lease {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into());
        Lease {
            clients,
            table: table.to_string(),
            key: key.to_string(),
            holder: format!("{host}-{}-{:08x}", std::process::id(), fastrand::u32(..)),
            ttl,
        }
    }

    /// Takes the lease or extends this replica's own; `Ok(false)` when another replica
    /// holds an unexpired one.
    pub async fn hold(&self, now_ms: u64) -> Result<bool, OpError> {
        let expires = now_ms + self.ttl.as_millis() as u64;
        let out = self
            .clients
            .dynamodb()
            .put_item()
            .table_name(&self.table)
            .item(LEASE_KEY, AttributeValue::S(self.key.clone()))
            .item("holder", AttributeValue::S(self.holder.clone()))
            .item("expires_ms", AttributeValue::N(expires.to_string()))
            .condition_expression("attribute_not_exists(#k) OR holder = :me OR expires_ms <= :now")
            .expression_attribute_names("#k", LEASE_KEY)
            .expression_attribute_values(":me", AttributeValue::S(self.holder.clone()))
            .expression_attribute_values(":now", AttributeValue::N(now_ms.to_string()))
            .send()
            .await;
        match out {
            Ok(_) => Ok(true),
            Err(e) => {
                let e = OpError::new("PutItem", e);
                if e.is(&["ConditionalCheckFailedException"]) {
                    Ok(false)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Gives the lease up (shutdown), if this replica holds it, so a waiting replica need
    /// not wait for it to expire.
    pub async fn release(&self) -> Result<(), OpError> {
        let out = self
            .clients
            .dynamodb()
            .delete_item()
            .table_name(&self.table)
            .key(LEASE_KEY, AttributeValue::S(self.key.clone()))
            .condition_expression("holder = :me")
            .expression_attribute_values(":me", AttributeValue::S(self.holder.clone()))
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = OpError::new("DeleteItem", e);
                if e.is(&["ConditionalCheckFailedException"]) {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }
}
