//! Which accounts to enroll: the organisation's ACTIVE accounts, narrowed by config.

use std::collections::BTreeSet;

use shared::aws::Clients;

use crate::config::HubConfig;
use crate::observe::OpError;

/// The organisation as the hub sees it.
#[derive(Clone, Debug)]
pub struct Organization {
    /// `None`: the account is in no organisation (standalone), an organisation of one.
    pub id: Option<String>,
    /// The management account (`MasterAccountId`); a standalone account is its own.
    pub management_account: String,
    /// ACTIVE accounts, sorted.
    pub active_accounts: Vec<String>,
}

/// The organisation of the caller `me`. An account in no organisation
/// (`AWSOrganizationsNotInUseException`, Organizations API reference, DescribeOrganization)
/// is standalone: the only account, its own management account.
pub async fn organization(c: &Clients, me: &str) -> Result<Organization, OpError> {
    let orgs = c.organizations();
    let org = match orgs.describe_organization().send().await {
        Ok(o) => o,
        Err(e) => {
            let e = c.failure("DescribeOrganization", e);
            if e.is(&["AWSOrganizationsNotInUseException"]) {
                return Ok(Organization {
                    id: None,
                    management_account: me.to_string(),
                    active_accounts: vec![me.to_string()],
                });
            }
            return Err(e);
        }
    };
    let org = org.organization();
    let mut accounts = Vec::new();
    let mut pages = orgs.list_accounts().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| c.failure("ListAccounts", e))?;
        for a in page.accounts() {
            let active = a.status().is_none_or(|s| s.as_str() == "ACTIVE")
                && a.state().is_none_or(|s| s.as_str() == "ACTIVE");
            if let (true, Some(id)) = (active, a.id()) {
                accounts.push(id.to_string());
            }
        }
    }
    accounts.sort();
    Ok(Organization {
        id: org.and_then(|o| o.id()).map(str::to_string),
        management_account: org
            .and_then(|o| o.master_account_id())
            .unwrap_or_default()
            .to_string(),
        active_accounts: accounts,
    })
}

/// The default target of the guardrail SCP: the organisation's root, asked for only when
/// `[guardrail] scp` is set in an organisation (else `None`, no call).
pub async fn guardrail_root(
    c: &Clients,
    org: &Organization,
    config: &HubConfig,
) -> Result<Option<String>, OpError> {
    if org.id.is_none() || !config.guardrail.scp {
        return Ok(None);
    }
    root_id(c).await
}

/// The organisation's root id (`ListRoots`; an organisation has one).
pub async fn root_id(c: &Clients) -> Result<Option<String>, OpError> {
    let out = c
        .organizations()
        .list_roots()
        .send()
        .await
        .map_err(|e| c.failure("ListRoots", e))?;
    Ok(out.roots().first().and_then(|r| r.id()).map(str::to_string))
}

/// Accounts under an OU or root, recursively.
async fn accounts_under(c: &Clients, parent: &str) -> Result<BTreeSet<String>, OpError> {
    let orgs = c.organizations();
    let mut out = BTreeSet::new();
    let mut stack = vec![parent.to_string()];
    while let Some(p) = stack.pop() {
        let mut pages = orgs
            .list_accounts_for_parent()
            .parent_id(&p)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| c.failure("ListAccountsForParent", e))?;
            out.extend(
                page.accounts()
                    .iter()
                    .filter_map(|a| a.id())
                    .map(str::to_string),
            );
        }
        let mut pages = orgs
            .list_organizational_units_for_parent()
            .parent_id(&p)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| c.failure("ListOrganizationalUnitsForParent", e))?;
            stack.extend(
                page.organizational_units()
                    .iter()
                    .filter_map(|o| o.id())
                    .map(str::to_string),
            );
        }
    }
    Ok(out)
}

/// The accounts in scope: `only` (from `--account`) or config's `accounts`, else every
/// ACTIVE account; then `include_ous` and `exclude_accounts`. Requested accounts that are
/// not ACTIVE members are returned separately so they can be reported as failures.
pub async fn accounts(
    c: &Clients,
    org: &Organization,
    config: &HubConfig,
    only: &[String],
) -> Result<(Vec<String>, Vec<String>), OpError> {
    let requested: Option<Vec<String>> = if !only.is_empty() {
        Some(only.to_vec())
    } else {
        config.hub.accounts.clone()
    };
    let active: BTreeSet<&String> = org.active_accounts.iter().collect();
    let (mut chosen, unknown): (Vec<String>, Vec<String>) = match requested {
        Some(list) => list.into_iter().partition(|a| active.contains(a)),
        None => (org.active_accounts.clone(), Vec::new()),
    };
    if !config.hub.include_ous.is_empty() && org.id.is_none() {
        return Err(OpError::from_parts(
            "DescribeOrganization",
            Some("AWSOrganizationsNotInUseException"),
            "hub.include_ous names organisational units, but this account is in no organisation (standalone): remove include_ous",
        ));
    }
    if !config.hub.include_ous.is_empty() {
        let mut allowed = BTreeSet::new();
        for ou in &config.hub.include_ous {
            allowed.extend(accounts_under(c, ou).await?);
        }
        chosen.retain(|a| allowed.contains(a));
    }
    chosen.retain(|a| !config.hub.exclude_accounts.contains(a));
    chosen.sort();
    chosen.dedup();
    Ok((chosen, unknown))
}
