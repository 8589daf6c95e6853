//! The rule manifest (`shared::rules::manifest`): the rules `hub enroll` deployed, read from
//! the central bucket at start and polled for change, so the agent classifies by exactly
//! what the hub deployed, the user's own `[[rule]]` tables included.
//!
//! Each poll is one conditional GetObject (`If-None-Match` with the last ETag: S3 API
//! reference, GetObject, "If-None-Match ... otherwise return a 304 (not modified) error"),
//! so an unchanged manifest costs no transfer.

use std::sync::Arc;

use shared::rules::manifest::{MAX_MANIFEST_BYTES, Manifest};

use crate::classify::{PackCatalog, SwapCatalog};
use crate::config::{ClassifySpec, ManifestSpec};

pub struct ManifestReader {
    s3: aws_sdk_s3::Client,
    spec: ManifestSpec,
    etag: Option<String>,
}

impl ManifestReader {
    pub fn new(s3: aws_sdk_s3::Client, spec: ManifestSpec) -> ManifestReader {
        ManifestReader {
            s3,
            spec,
            etag: None,
        }
    }

    pub fn url(&self) -> String {
        self.spec.url()
    }

    /// The manifest, or `None` when it has not changed since the last read.
    pub async fn fetch(&mut self) -> Result<Option<Manifest>, String> {
        let url = self.spec.url();
        let got = self
            .s3
            .get_object()
            .bucket(&self.spec.bucket)
            .key(&self.spec.key)
            .set_if_none_match(self.etag.clone())
            .send()
            .await;
        let got = match got {
            Ok(g) => g,
            Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(304) => {
                return Ok(None);
            }
            Err(e) => {
                return Err(format!(
                    "cannot read {url}: {}",
                    shared::aws::AwsFailure::new("GetObject", e)
                ));
            }
        };
        let etag = got.e_tag().map(str::to_string);
        if etag.is_some() && etag == self.etag {
            return Ok(None);
        }
        if got
            .content_length()
            .is_some_and(|n| usize::try_from(n).map_or(true, |n| n > MAX_MANIFEST_BYTES))
        {
            return Err(format!(
                "{url}: larger than the {MAX_MANIFEST_BYTES} bytes a manifest may have"
            ));
        }
        let bytes = got
            .body
            .collect()
            .await
            .map_err(|e| format!("cannot read {url}: {e}"))?
            .into_bytes();
        let text = std::str::from_utf8(&bytes).map_err(|e| format!("{url}: not UTF-8: {e}"))?;
        let manifest = Manifest::from_json(&url, text)?;
        self.etag = etag;
        Ok(Some(manifest))
    }
}

/// The catalog of `manifest`: its rules minus `[classify] disable`.
pub fn catalog(
    manifest: &Manifest,
    url: &str,
    classify: &ClassifySpec,
) -> Result<PackCatalog, String> {
    let mut m = manifest.clone();
    m.rules.retain(|r| !classify.disable.contains(&r.id));
    m.pack(url).map(PackCatalog::new).map_err(|e| e.to_string())
}

/// Reads the manifest again every `poll` and swaps the catalog when it changed. A manifest
/// that cannot be read or used leaves the rules read before in place, said at WARN (and
/// counted in /metrics as `orgwatch_agent_rule_manifest_errors_total`).
pub async fn poll(
    mut reader: ManifestReader,
    classify: ClassifySpec,
    swap: Arc<SwapCatalog>,
    metrics: Arc<crate::metrics::Metrics>,
    every: std::time::Duration,
) {
    let url = reader.url();
    loop {
        tokio::time::sleep(every).await;
        match reader.fetch().await {
            Ok(None) => {}
            Ok(Some(m)) => match catalog(&m, &url, &classify) {
                Ok(c) => {
                    tracing::info!(manifest = %url, rules = m.rules.len(), "the rule manifest changed: classifying by the new rules");
                    swap.replace(Arc::new(c));
                    crate::metrics::Metrics::inc(&metrics.manifest_loads);
                }
                Err(e) => {
                    crate::metrics::Metrics::inc(&metrics.manifest_errors);
                    tracing::warn!(manifest = %url, error = %e, "the changed rule manifest cannot be used; keeping the rules read before");
                }
            },
            Err(e) => {
                crate::metrics::Metrics::inc(&metrics.manifest_errors);
                tracing::warn!(manifest = %url, error = %e, "cannot read the rule manifest; keeping the rules read before");
            }
        }
    }
}
