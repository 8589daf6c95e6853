//! The one way to get an AWS client.
//!
//! [`ClientFactory`] loads one base [`SdkConfig`] from the standard AWS chain (environment,
//! profile, SSO, IMDS) and derives everything else from it:
//!
//! * **Endpoint override.** The standard `AWS_ENDPOINT_URL` (and `AWS_ENDPOINT_URL_<SERVICE>`)
//!   variables are honoured by the SDK itself; [`AwsOptions::endpoint_url`] overrides both.
//!   When any override is in force, S3 uses path-style addressing (a loopback emulator has no
//!   virtual-host DNS).
//! * **Member accounts.** [`ClientFactory::for_account`] assumes the member role
//!   (`arn:<partition>:iam::<account>:role/<member_role>`, optional external ID, session name
//!   from [`crate::naming`]) and verifies with `sts:GetCallerIdentity` that the credentials
//!   really belong to that account. Credentials are cached per account and refreshed by the
//!   SDK's identity cache five minutes before they expire.
//! * **Rate limits.** Every HTTP attempt of every client passes a governor limiter keyed by
//!   (account, region, service) — AWS's API quotas are per account and region — sized from
//!   [`QUOTAS`]. Retries (standard mode: throttling, 5xx and transient errors, exponential
//!   backoff with jitter) are configured once on the base config.
//! * **Call accounting.** Every operation is counted per service and operation and per
//!   account, so commands can report how many calls and write calls they made, in total and
//!   in each account ([`CallCounter`]).

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::identity::IdentityCache;
use aws_config::retry::RetryConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, Metadata};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use crate::naming;

pub mod errors;

pub use errors::{AwsFailure, FailureKind};

/// The AWS API families orgwatch calls. Each has its own rate limiter per account and region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    Organizations,
    Sts,
    CloudTrail,
    EventBridge,
    Sqs,
    Sns,
    S3,
    Iam,
    CloudWatch,
    CloudWatchLogs,
    DynamoDb,
    Kms,
    Account,
}

impl Service {
    /// Every service, in a stable order.
    pub const ALL: [Service; 13] = [
        Service::Organizations,
        Service::Sts,
        Service::CloudTrail,
        Service::EventBridge,
        Service::Sqs,
        Service::Sns,
        Service::S3,
        Service::Iam,
        Service::CloudWatch,
        Service::CloudWatchLogs,
        Service::DynamoDb,
        Service::Kms,
        Service::Account,
    ];

    /// The lowercase name used in logs and reports.
    pub fn name(self) -> &'static str {
        match self {
            Service::Organizations => "organizations",
            Service::Sts => "sts",
            Service::CloudTrail => "cloudtrail",
            Service::EventBridge => "eventbridge",
            Service::Sqs => "sqs",
            Service::Sns => "sns",
            Service::S3 => "s3",
            Service::Iam => "iam",
            Service::CloudWatch => "cloudwatch",
            Service::CloudWatchLogs => "logs",
            Service::DynamoDb => "dynamodb",
            Service::Kms => "kms",
            Service::Account => "account",
        }
    }

    /// The client-side quota for this service (see [`QUOTAS`]).
    pub fn quota(self) -> ApiQuota {
        QUOTAS
            .iter()
            .find(|q| q.service == self)
            .map(|q| q.quota)
            .unwrap_or(ApiQuota {
                per_second: 1,
                burst: 1,
            })
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A steady request rate and the burst allowed on top of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiQuota {
    pub per_second: u32,
    pub burst: u32,
}

impl ApiQuota {
    fn governor(self) -> Quota {
        let rate = NonZeroU32::new(self.per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(self.burst).unwrap_or(NonZeroU32::MIN);
        Quota::per_second(rate).allow_burst(burst)
    }
}

/// One row of the quota table.
#[derive(Clone, Copy, Debug)]
pub struct QuotaRow {
    pub service: Service,
    pub quota: ApiQuota,
    /// The published AWS quota the row is sized from.
    pub basis: &'static str,
}

/// Client-side limits per (account, region, service), sized to the *lowest* published
/// per-account, per-region quota among the operations orgwatch calls on that service, so
/// that a full-speed enroll stays under it even when every call is that operation.
pub const QUOTAS: &[QuotaRow] = &[
    QuotaRow {
        service: Service::Organizations,
        quota: ApiQuota {
            per_second: 5,
            burst: 5,
        },
        basis: "Organizations API throttle (a few requests/s per account)",
    },
    QuotaRow {
        service: Service::Sts,
        quota: ApiQuota {
            per_second: 50,
            burst: 50,
        },
        basis: "STS AssumeRole/GetCallerIdentity 600 requests/s per account",
    },
    QuotaRow {
        service: Service::CloudTrail,
        quota: ApiQuota {
            per_second: 1,
            burst: 2,
        },
        basis: "CreateTrail/UpdateTrail/StartLogging/PutEventSelectors 1 TPS",
    },
    QuotaRow {
        service: Service::EventBridge,
        quota: ApiQuota {
            per_second: 20,
            burst: 20,
        },
        basis: "PutRule/PutTargets/PutPermission 50 TPS (us-east-1 higher)",
    },
    QuotaRow {
        service: Service::Sqs,
        quota: ApiQuota {
            per_second: 100,
            burst: 100,
        },
        basis: "SQS control plane; data plane effectively unlimited",
    },
    QuotaRow {
        service: Service::Sns,
        quota: ApiQuota {
            per_second: 10,
            burst: 10,
        },
        basis: "SetTopicAttributes/Subscribe/CreateTopic 10-100 TPS",
    },
    QuotaRow {
        service: Service::S3,
        quota: ApiQuota {
            per_second: 50,
            burst: 50,
        },
        basis: "bucket configuration calls; object PUT 3,500/s per prefix",
    },
    QuotaRow {
        service: Service::Iam,
        quota: ApiQuota {
            per_second: 10,
            burst: 10,
        },
        basis: "IAM control plane (global), writes throttled per account",
    },
    QuotaRow {
        service: Service::CloudWatch,
        quota: ApiQuota {
            per_second: 3,
            burst: 3,
        },
        basis: "PutMetricAlarm 3 TPS, DescribeAlarms 9 TPS",
    },
    QuotaRow {
        service: Service::CloudWatchLogs,
        quota: ApiQuota {
            per_second: 5,
            burst: 5,
        },
        basis: "PutMetricFilter/DescribeMetricFilters/CreateLogGroup 5 TPS",
    },
    QuotaRow {
        service: Service::DynamoDb,
        quota: ApiQuota {
            per_second: 500,
            burst: 500,
        },
        basis: "agent dedupe store item reads/writes; on-demand tables start at 4,000 WCU/s",
    },
    QuotaRow {
        service: Service::Kms,
        quota: ApiQuota {
            per_second: 5,
            burst: 5,
        },
        basis: "hub doctor reads the archive key's policy: GetKeyPolicy shares KMS's 30 TPS of key management requests",
    },
    QuotaRow {
        service: Service::Account,
        quota: ApiQuota {
            per_second: 1,
            burst: 2,
        },
        basis: "hub doctor asks each account for opt-in regions; the Account Management API is low-volume",
    },
];

/// A rate limiter for one (account, region, service).
pub type Limiter<C = DefaultClock> =
    RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// A limiter sized from [`QUOTAS`] for `service`, on the given clock.
pub fn limiter_with_clock<C: Clock>(service: Service, clock: C) -> Limiter<C> {
    RateLimiter::direct_with_clock(service.quota().governor(), clock)
}

/// Errors from the client factory.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error("invalid AWS account id {0:?}: expected 12 digits")]
    InvalidAccountId(String),
    #[error(
        "no AWS region configured: pass --region, set AWS_REGION, or set a region in the profile"
    )]
    MissingRegion,
    #[error("account {account_id}: cannot assume role {role_arn}: {failure}")]
    AssumeRole {
        account_id: String,
        role_arn: String,
        /// What AWS said (code `AccessDenied`, ...), with the hint.
        failure: AwsFailure,
    },
    #[error(
        "account {expected}: assuming {role_arn} returned credentials of account {actual}; refusing to use them"
    )]
    WrongAccount {
        expected: String,
        actual: String,
        role_arn: String,
    },
    /// `sts:GetCallerIdentity` failed: who the process is cannot be told.
    #[error("{0}")]
    CallerIdentity(AwsFailure),
}

impl AwsError {
    /// The AWS error code behind this error, when there is one.
    pub fn code(&self) -> Option<&str> {
        self.failure().and_then(AwsFailure::code)
    }

    /// The failed AWS call behind this error, when there is one.
    pub fn failure(&self) -> Option<&AwsFailure> {
        match self {
            AwsError::AssumeRole { failure, .. } | AwsError::CallerIdentity(failure) => {
                Some(failure)
            }
            _ => None,
        }
    }
}

/// As a failed call: the AWS failure itself, or (for the factory's own checks) a failure
/// of `operation` with the error's text.
impl From<AwsError> for AwsFailure {
    fn from(e: AwsError) -> AwsFailure {
        match e {
            AwsError::CallerIdentity(f) => f,
            AwsError::AssumeRole {
                account_id,
                role_arn,
                failure,
            } => {
                let message = format!("cannot assume role {role_arn}: {}", failure.message());
                failure.with_message(message).at(Some(&account_id), None)
            }
            other => AwsFailure::build("GetCallerIdentity", other),
        }
    }
}

/// How the factory reaches AWS. `Default` gives the standard chain and the default role.
#[derive(Clone, Debug)]
pub struct AwsOptions {
    /// Region for the base config; `None` takes it from the standard chain.
    pub region: Option<String>,
    /// Endpoint override for every service; `None` honours `AWS_ENDPOINT_URL*` variables.
    pub endpoint_url: Option<String>,
    /// Name of the role assumed in member accounts.
    pub member_role: String,
    /// External ID passed on `sts:AssumeRole`.
    pub external_id: Option<String>,
    /// Session name of assumed-role sessions.
    pub session_name: String,
    /// Static base credentials instead of the standard chain (used by the emulator tests).
    pub static_credentials: Option<(String, String)>,
    /// Maximum attempts per call, including the first.
    pub max_attempts: u32,
    /// The named profile of the shared config and credentials files (`--profile`, as the
    /// AWS CLI's); `None` takes `AWS_PROFILE` or `default`.
    pub profile: Option<String>,
}

impl Default for AwsOptions {
    fn default() -> Self {
        AwsOptions {
            region: None,
            endpoint_url: None,
            member_role: naming::DEFAULT_MEMBER_ROLE.to_string(),
            external_id: None,
            session_name: naming::HUB_SESSION_NAME.to_string(),
            static_credentials: None,
            max_attempts: 6,
            profile: None,
        }
    }
}

/// Counts operations per (service, operation) and per account. Shared by every client of
/// one factory.
#[derive(Debug, Default)]
pub struct CallCounter {
    counts: Mutex<HashMap<(String, String), u64>>,
    /// (scope, service, operation): scope `home` (the process's own credentials) or
    /// `member` (an assumed member role).
    scoped: Mutex<std::collections::BTreeSet<(String, String, String)>>,
    accounts: Mutex<HashMap<String, AccountCalls>>,
    total: AtomicU64,
}

/// The calls made in one account (home clients that were never told their account id are
/// counted under `home`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccountCalls {
    /// Every operation.
    pub calls: u64,
    /// Operations that change state (see [`is_write_operation`]).
    pub writes: u64,
}

impl CallCounter {
    fn record(&self, account: &str, scope: &str, service: &str, operation: &str) {
        self.total.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut map) = self.counts.lock() {
            *map.entry((service.to_string(), operation.to_string()))
                .or_default() += 1;
        }
        if let Ok(mut set) = self.scoped.lock() {
            set.insert((
                scope.to_string(),
                service.to_string(),
                operation.to_string(),
            ));
        }
        if let Ok(mut map) = self.accounts.lock() {
            let entry = map.entry(account.to_string()).or_default();
            entry.calls += 1;
            if is_write_operation(operation) {
                entry.writes += 1;
            }
        }
    }

    /// Calls per account so far, sorted by account.
    pub fn by_account(&self) -> std::collections::BTreeMap<String, AccountCalls> {
        match self.accounts.lock() {
            Ok(map) => map.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            Err(_) => std::collections::BTreeMap::new(),
        }
    }

    /// Every (scope, service, operation) called so far, sorted; scope is `home` or `member`.
    pub fn scoped_operations(&self) -> Vec<(String, String, String)> {
        match self.scoped.lock() {
            Ok(set) => set.iter().cloned().collect(),
            Err(_) => Vec::new(),
        }
    }

    /// When `ORGWATCH_CALL_LOG` names a file, appends `program scope service operation`
    /// lines to it, one per distinct call: what tests compare with the IAM policies
    /// (`shared::iam`). Errors are ignored: this is a diagnostic.
    pub fn append_call_log(&self, program: &str) {
        let Some(path) = std::env::var_os("ORGWATCH_CALL_LOG") else {
            return;
        };
        let mut text = String::new();
        for (scope, service, operation) in self.scoped_operations() {
            text.push_str(&format!("{program}\t{scope}\t{service}\t{operation}\n"));
        }
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            use std::io::Write;
            let _ = f.write_all(text.as_bytes());
        }
    }

    /// Every operation called so far, with its count, sorted.
    pub fn snapshot(&self) -> Vec<(String, String, u64)> {
        let mut rows: Vec<_> = match self.counts.lock() {
            Ok(map) => map
                .iter()
                .map(|((s, o), n)| (s.clone(), o.clone(), *n))
                .collect(),
            Err(_) => Vec::new(),
        };
        rows.sort();
        rows
    }

    /// Total operations called.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Operations that change state (everything but Describe/List/Get/Head/Lookup and the
    /// read-only STS calls).
    pub fn writes(&self) -> u64 {
        self.snapshot()
            .iter()
            .filter(|(_, op, _)| is_write_operation(op))
            .map(|(_, _, n)| n)
            .sum()
    }
}

/// True when an operation name changes state.
pub fn is_write_operation(operation: &str) -> bool {
    const READS: &[&str] = &[
        "Describe", "List", "Get", "Head", "Lookup", "Receive", "Test", "Filter", "Search",
    ];
    !(READS.iter().any(|p| operation.starts_with(p)) || operation == "AssumeRole")
}

/// Counts each operation for the account its client acts in.
#[derive(Debug)]
/// (counter, account, scope: `home` or `member`).
struct CountCalls(Arc<CallCounter>, String, &'static str);

impl Intercept for CountCalls {
    fn name(&self) -> &'static str {
        "orgwatch::CountCalls"
    }

    // Once per operation, after the operation's own config (which carries its name) is in.
    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(meta) = cfg.load::<Metadata>() {
            self.0.record(&self.1, self.2, meta.service(), meta.name());
        }
        Ok(())
    }
}

/// An HTTP client that waits for a rate limiter before every attempt.
#[derive(Clone, Debug)]
struct LimitedClient {
    inner: SharedHttpClient,
    limiter: Arc<Limiter>,
    /// Rewrite fractional epoch-millisecond fields of responses (see [`integer_millis`]).
    integer_millis: bool,
}

impl HttpClient for LimitedClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(LimitedConnector {
            inner: self.inner.http_connector(settings, components),
            limiter: self.limiter.clone(),
            integer_millis: self.integer_millis,
        })
    }
}

#[derive(Debug)]
struct LimitedConnector {
    inner: SharedHttpConnector,
    limiter: Arc<Limiter>,
    integer_millis: bool,
}

impl HttpConnector for LimitedConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let inner = self.inner.clone();
        let limiter = self.limiter.clone();
        let integer_millis = self.integer_millis;
        HttpConnectorFuture::new(async move {
            limiter.until_ready().await;
            let mut response = inner.call(request).await?;
            if !integer_millis {
                return Ok(response);
            }
            let body = std::mem::replace(
                response.body_mut(),
                aws_smithy_types::body::SdkBody::empty(),
            );
            let bytes = aws_smithy_types::byte_stream::ByteStream::new(body)
                .collect()
                .await
                .map_err(|e| ConnectorError::io(Box::new(e)))?
                .into_bytes();
            let fixed = integer_millis_json(&bytes);
            response.headers_mut().remove("content-length");
            *response.body_mut() = aws_smithy_types::body::SdkBody::from(fixed);
            Ok(response)
        })
    }
}

/// Emulator compatibility, CloudWatch Logs only, and only with an endpoint override: the
/// moto emulator writes the epoch-millisecond fields of events that EventBridge delivered
/// into a log group as fractions (`"timestamp": 1795890757761.038`), which the SDK refuses
/// to read as integers. AWS never does this, so on AWS the rewrite finds nothing to change.
/// Only JSON keys are touched: a quoted key inside a message string is escaped (`\"`) and
/// does not match.
fn integer_millis_json(body: &[u8]) -> Vec<u8> {
    static FRACTIONAL: std::sync::LazyLock<Option<regex::bytes::Regex>> = std::sync::LazyLock::new(
        || {
            regex::bytes::Regex::new(
                r#"("(?:timestamp|ingestionTime|creationTime|firstEventTimestamp|lastEventTimestamp|lastIngestionTime)"\s*:\s*-?[0-9]+)\.[0-9]+(?:[eE][+-]?[0-9]+)?"#,
            )
            .ok()
        },
    );
    match FRACTIONAL.as_ref() {
        Some(re) => re.replace_all(body, &b"$1"[..]).into_owned(),
        None => body.to_vec(),
    }
}

type LimiterKey = (String, String, Service);

/// The limiters of one factory, created on first use.
#[derive(Default)]
struct Limiters(Mutex<HashMap<LimiterKey, Arc<Limiter>>>);

impl Limiters {
    fn get(&self, account: &str, region: &str, service: Service) -> Arc<Limiter> {
        let key = (account.to_string(), region.to_string(), service);
        match self.0.lock() {
            Ok(mut map) => map
                .entry(key)
                .or_insert_with(|| Arc::new(limiter_with_clock(service, DefaultClock::default())))
                .clone(),
            // A poisoned map only means another thread panicked mid-insert; a fresh limiter
            // is still correct, if less shared.
            Err(_) => Arc::new(limiter_with_clock(service, DefaultClock::default())),
        }
    }
}

struct Inner {
    base: SdkConfig,
    options: AwsOptions,
    http: SharedHttpClient,
    path_style: bool,
    limiters: Limiters,
    /// One cell per account: the map's lock is held only to find the cell, so accounts
    /// assume their roles concurrently, each at most once at a time (single flight).
    accounts: std::sync::Mutex<HashMap<String, Arc<tokio::sync::OnceCell<SdkConfig>>>>,
    home_account: tokio::sync::OnceCell<String>,
    calls: Arc<CallCounter>,
}

impl Inner {
    fn limited_http(&self, account: &str, region: &str, service: Service) -> LimitedClient {
        LimitedClient {
            inner: self.http.clone(),
            limiter: self.limiters.get(account, region, service),
            integer_millis: self.path_style && service == Service::CloudWatchLogs,
        }
    }
}

/// Builds every AWS client of the process. Cheap to clone.
#[derive(Clone)]
pub struct ClientFactory {
    inner: Arc<Inner>,
}

impl fmt::Debug for ClientFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientFactory")
            .field("region", &self.region())
            .field("member_role", &self.inner.options.member_role)
            .field("path_style", &self.inner.path_style)
            .finish_non_exhaustive()
    }
}

fn env_endpoint_override() -> bool {
    std::env::vars_os().any(|(k, v)| {
        k.to_str()
            .is_some_and(|k| k == "AWS_ENDPOINT_URL" || k.starts_with("AWS_ENDPOINT_URL_"))
            && !v.is_empty()
    })
}

/// The SDK's HTTP client: rustls with aws-lc (the sinks' TLS stack), and the proxies the
/// environment names. The SDK's default client leaves proxies off ("Proxy support is disabled
/// by default", aws-smithy-http-client's `proxy` module); an agent or hub behind an egress
/// proxy needs `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` honoured, read the
/// way curl reads them, as the AWS CLI does ("Using an HTTP proxy for the AWS CLI", AWS CLI
/// User Guide). The connector function is the one the SDK's own builder runs, with the proxy
/// settings added.
fn http_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::{Connector, proxy::ProxyConfig, tls};
    aws_smithy_http_client::Builder::new().build_with_connector_fn(|settings, components| {
        let mut builder = Connector::builder();
        builder.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            builder.set_sleep_impl(components.sleep_impl());
        }
        builder
            .proxy_config(ProxyConfig::from_env())
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::AwsLc,
            ))
            .build()
    })
}

/// The account key under which the home credentials' limiters live until the account id is known.
const HOME: &str = "home";

impl ClientFactory {
    /// Loads the base configuration from the standard chain, with `options` applied on top.
    pub async fn new(options: AwsOptions) -> Result<Self, AwsError> {
        // What later failures' hints name: the profile tried, the endpoint override.
        errors::set_context(errors::Context {
            profile: options.profile.clone(),
            endpoint_url: options.endpoint_url.clone(),
        });
        let http = http_client();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(options.max_attempts.max(1))
                    .with_initial_backoff(Duration::from_millis(200))
                    .with_max_backoff(Duration::from_secs(20)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(Duration::from_secs(60))
                    .build(),
            );
        // AWS SDK for Rust developer guide, "Configuration and credential file settings":
        // the named profile selects region, credentials (static, SSO, assume-role, process)
        // and endpoint settings from ~/.aws/config and ~/.aws/credentials.
        if let Some(profile) = &options.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(region) = &options.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(url) = &options.endpoint_url {
            loader = loader.endpoint_url(url.clone());
        }
        if let Some((key, secret)) = &options.static_credentials {
            loader = loader.credentials_provider(Credentials::new(
                key.clone(),
                secret.clone(),
                None,
                None,
                "orgwatch-static",
            ));
        }
        let loaded = loader.load().await;
        let region = loaded.region().ok_or(AwsError::MissingRegion)?.to_string();
        let limiters = Limiters::default();
        // The base config's own HTTP client (used by credential providers such as AssumeRole)
        // is limited as STS of the home account.
        let sts = LimitedClient {
            inner: http.clone(),
            limiter: limiters.get(HOME, &region, Service::Sts),
            integer_millis: false,
        };
        let base = loaded.to_builder().http_client(sts).build();
        let path_style = options.endpoint_url.is_some() || env_endpoint_override();
        Ok(ClientFactory {
            inner: Arc::new(Inner {
                base,
                options,
                http,
                path_style,
                limiters,
                accounts: std::sync::Mutex::new(HashMap::new()),
                home_account: tokio::sync::OnceCell::new(),
                calls: Arc::new(CallCounter::default()),
            }),
        })
    }

    /// The region of the base configuration.
    pub fn region(&self) -> String {
        self.inner
            .base
            .region()
            .map(|r| r.to_string())
            .unwrap_or_default()
    }

    /// The options the factory was built with.
    pub fn options(&self) -> &AwsOptions {
        &self.inner.options
    }

    /// Operation counts of every client this factory has built.
    pub fn calls(&self) -> &CallCounter {
        &self.inner.calls
    }

    /// Clients with the process's own credentials (the hub or agent account).
    pub fn home(&self) -> Clients {
        Clients {
            account: None,
            assumed: false,
            config: self.inner.base.clone(),
            factory: self.clone(),
        }
    }

    /// The account id of the process's own credentials (`sts:GetCallerIdentity`, cached).
    pub async fn home_account(&self) -> Result<String, AwsError> {
        self.inner
            .home_account
            .get_or_try_init(|| async {
                let out = self
                    .home()
                    .sts()
                    .get_caller_identity()
                    .send()
                    .await
                    .map_err(|e| {
                        AwsError::CallerIdentity(
                            AwsFailure::new("GetCallerIdentity", e).at(None, Some(&self.region())),
                        )
                    })?;
                out.account.ok_or_else(|| {
                    AwsError::CallerIdentity(AwsFailure::build(
                        "GetCallerIdentity",
                        "GetCallerIdentity returned no account",
                    ))
                })
            })
            .await
            .cloned()
    }

    /// The member role ARN for an account, in the base region's partition.
    pub fn member_role_arn(&self, account_id: &str) -> String {
        naming::role_arn(
            naming::partition(&self.region()),
            account_id,
            &self.inner.options.member_role,
        )
    }

    /// Clients in `account_id`. For the home account these are the home credentials; for any
    /// other account, credentials from `sts:AssumeRole` into the member role, verified to
    /// belong to that account, cached and refreshed before expiry.
    pub async fn for_account(&self, account_id: &str) -> Result<Clients, AwsError> {
        if !naming::is_account_id(account_id) {
            return Err(AwsError::InvalidAccountId(account_id.to_string()));
        }
        if self.home_account().await.ok().as_deref() == Some(account_id) {
            return Ok(Clients {
                account: Some(account_id.to_string()),
                ..self.home()
            });
        }
        let cell = {
            let mut accounts = self
                .inner
                .accounts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            accounts
                .entry(account_id.to_string())
                .or_insert_with(|| Arc::new(tokio::sync::OnceCell::new()))
                .clone()
        };
        // A failed assume leaves the cell empty: the next call tries again.
        let config = cell
            .get_or_try_init(|| self.assume(account_id))
            .await?
            .clone();
        Ok(Clients {
            account: Some(account_id.to_string()),
            assumed: true,
            config,
            factory: self.clone(),
        })
    }

    /// Credentials from `sts:AssumeRole` into the member role of `account_id`, proved to
    /// belong to that account.
    async fn assume(&self, account_id: &str) -> Result<SdkConfig, AwsError> {
        let role_arn = self.member_role_arn(account_id);
        let mut builder = AssumeRoleProvider::builder(role_arn.clone())
            .session_name(self.inner.options.session_name.clone())
            .configure(&self.inner.base);
        if let Some(id) = &self.inner.options.external_id {
            builder = builder.external_id(id.clone());
        }
        let provider = builder.build().await;
        let config = self
            .inner
            .base
            .to_builder()
            .credentials_provider(SharedCredentialsProvider::new(provider))
            .identity_cache(
                IdentityCache::lazy()
                    .buffer_time(Duration::from_secs(300))
                    .build(),
            )
            .build();
        let clients = Clients {
            account: Some(account_id.to_string()),
            assumed: true,
            config: config.clone(),
            factory: self.clone(),
        };
        // Assume now, so that a role that cannot be assumed fails here with a clear error,
        // and prove the credentials belong to the account we asked for.
        let identity = clients
            .sts()
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| AwsError::AssumeRole {
                account_id: account_id.to_string(),
                role_arn: role_arn.clone(),
                failure: AwsFailure::new("GetCallerIdentity", e)
                    .at(Some(account_id), Some(&self.region())),
            })?;
        let actual = identity.account.unwrap_or_default();
        if actual != account_id {
            return Err(AwsError::WrongAccount {
                expected: account_id.to_string(),
                actual,
                role_arn,
            });
        }
        Ok(config)
    }
}

/// Clients for one account and region, all built from one [`SdkConfig`].
#[derive(Clone)]
pub struct Clients {
    account: Option<String>,
    /// Reached through an assumed member role (not the process's own credentials).
    assumed: bool,
    config: SdkConfig,
    factory: ClientFactory,
}

impl fmt::Debug for Clients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Clients")
            .field("account", &self.account)
            .field("region", &self.region())
            .finish_non_exhaustive()
    }
}

macro_rules! client_fn {
    ($(#[$doc:meta])* $fn:ident, $krate:ident, $service:expr) => {
        $(#[$doc])*
        pub fn $fn(&self) -> $krate::Client {
            let conf = $krate::config::Builder::from(&self.config)
                .http_client(self.limited($service))
                .interceptor(self.count_calls())
                .build();
            $krate::Client::from_conf(conf)
        }
    };
}

impl Clients {
    /// The account these clients act in (`None` for home clients before the id was asked for).
    pub fn account(&self) -> Option<&str> {
        self.account.as_deref()
    }

    /// The region these clients act in.
    pub fn region(&self) -> String {
        self.config
            .region()
            .map(|r| r.to_string())
            .unwrap_or_default()
    }

    /// The same credentials in another region.
    pub fn in_region(&self, region: &str) -> Clients {
        Clients {
            account: self.account.clone(),
            assumed: self.assumed,
            config: self
                .config
                .to_builder()
                .region(Region::new(region.to_string()))
                .build(),
            factory: self.factory.clone(),
        }
    }

    /// A failed call of these clients, as an [`AwsFailure`] located in their account and
    /// region.
    pub fn failure<E>(
        &self,
        operation: &str,
        e: aws_smithy_runtime_api::client::result::SdkError<
            E,
            aws_smithy_runtime_api::client::orchestrator::HttpResponse,
        >,
    ) -> AwsFailure
    where
        E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
    {
        AwsFailure::new(operation, e).at(self.account(), Some(&self.region()))
    }

    /// The underlying configuration.
    pub fn sdk_config(&self) -> &SdkConfig {
        &self.config
    }

    fn count_calls(&self) -> CountCalls {
        CountCalls(
            self.factory.inner.calls.clone(),
            self.account.as_deref().unwrap_or(HOME).to_string(),
            if self.assumed { "member" } else { "home" },
        )
    }

    fn limited(&self, service: Service) -> LimitedClient {
        let account = self.account.as_deref().unwrap_or(HOME);
        self.factory
            .inner
            .limited_http(account, &self.region(), service)
    }

    client_fn!(organizations, aws_sdk_organizations, Service::Organizations);
    client_fn!(sts, aws_sdk_sts, Service::Sts);
    client_fn!(cloudtrail, aws_sdk_cloudtrail, Service::CloudTrail);
    client_fn!(eventbridge, aws_sdk_eventbridge, Service::EventBridge);
    client_fn!(sqs, aws_sdk_sqs, Service::Sqs);
    client_fn!(sns, aws_sdk_sns, Service::Sns);
    client_fn!(iam, aws_sdk_iam, Service::Iam);
    client_fn!(cloudwatch, aws_sdk_cloudwatch, Service::CloudWatch);
    client_fn!(logs, aws_sdk_cloudwatchlogs, Service::CloudWatchLogs);
    client_fn!(dynamodb, aws_sdk_dynamodb, Service::DynamoDb);
    client_fn!(kms, aws_sdk_kms, Service::Kms);
    client_fn!(account_management, aws_sdk_account, Service::Account);

    /// S3 client; path-style addressing whenever an endpoint override is in force.
    pub fn s3(&self) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::config::Builder::from(&self.config)
            .http_client(self.limited(Service::S3))
            .interceptor(self.count_calls())
            .force_path_style(self.factory.inner.path_style)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn fractional_millis_become_integers_and_messages_stay_untouched() {
        let body = br#"{"events":[{"timestamp": 1795890757761.038,"ingestionTime":1795890757761,"message":"{\"timestamp\": 1.5}"}],"lastIngestionTime":12.5e0}"#;
        let fixed = super::integer_millis_json(body);
        assert_eq!(
            String::from_utf8_lossy(&fixed),
            r#"{"events":[{"timestamp": 1795890757761,"ingestionTime":1795890757761,"message":"{\"timestamp\": 1.5}"}],"lastIngestionTime":12}"#
        );
    }

    use super::*;
    use governor::clock::FakeRelativeClock;

    /// Offers one call every millisecond for `seconds` of simulated time and counts how many
    /// the limiter admits.
    fn admitted(service: Service, seconds: u64) -> u64 {
        let clock = FakeRelativeClock::default();
        let limiter = limiter_with_clock(service, clock.clone());
        let mut admitted = 0;
        for _ in 0..seconds * 1000 {
            if limiter.check().is_ok() {
                admitted += 1;
            }
            clock.advance(Duration::from_millis(1));
        }
        admitted
    }

    #[test]
    fn limiter_holds_the_configured_rate() {
        for row in QUOTAS {
            let seconds = 20;
            let n = admitted(row.service, seconds);
            let q = row.quota;
            let steady = u64::from(q.per_second) * seconds;
            assert!(
                n >= steady && n <= steady + u64::from(q.burst),
                "{}: admitted {n} in {seconds}s, quota {}/s burst {}",
                row.service,
                q.per_second,
                q.burst
            );
        }
    }

    #[test]
    fn limiter_refuses_beyond_burst_at_one_instant() {
        let clock = FakeRelativeClock::default();
        let limiter = limiter_with_clock(Service::CloudWatch, clock);
        let burst = Service::CloudWatch.quota().burst;
        let ok = (0..100).filter(|_| limiter.check().is_ok()).count();
        assert_eq!(ok as u32, burst);
    }

    #[test]
    fn every_service_has_a_quota_row() {
        for s in Service::ALL {
            assert!(
                QUOTAS.iter().filter(|q| q.service == s).count() == 1,
                "{s} needs exactly one quota row"
            );
        }
    }

    #[test]
    fn limiters_are_per_account_region_and_service() {
        let l = Limiters::default();
        let a = l.get("111111111111", "us-east-1", Service::CloudWatch);
        let b = l.get("222222222222", "us-east-1", Service::CloudWatch);
        let c = l.get("111111111111", "eu-west-1", Service::CloudWatch);
        let d = l.get("111111111111", "us-east-1", Service::CloudWatchLogs);
        let a2 = l.get("111111111111", "us-east-1", Service::CloudWatch);
        assert!(Arc::ptr_eq(&a, &a2));
        for other in [&b, &c, &d] {
            assert!(!Arc::ptr_eq(&a, other));
        }
        // Exhausting one key leaves the others untouched.
        while a.check().is_ok() {}
        assert!(b.check().is_ok() && c.check().is_ok() && d.check().is_ok());
    }

    #[test]
    fn calls_are_counted_per_account() {
        let c = CallCounter::default();
        c.record("111111111111", "member", "CloudWatch", "DescribeAlarms");
        c.record("111111111111", "member", "CloudWatch", "PutMetricAlarm");
        c.record("222222222222", "member", "Logs", "DescribeLogGroups");
        c.record(HOME, "home", "Organizations", "ListAccounts");
        let by = c.by_account();
        assert_eq!(
            by.get("111111111111"),
            Some(&AccountCalls {
                calls: 2,
                writes: 1
            })
        );
        assert_eq!(by["222222222222"].writes, 0);
        assert_eq!(by[HOME].calls, 1);
        assert_eq!((c.total(), c.writes()), (4, 1));
    }

    #[test]
    fn write_operations() {
        for op in [
            "PutMetricFilter",
            "CreateTrail",
            "DeleteAlarms",
            "StartLogging",
            "Publish",
        ] {
            assert!(is_write_operation(op), "{op}");
        }
        for op in [
            "DescribeTrails",
            "ListAccounts",
            "GetBucketPolicy",
            "HeadBucket",
            "AssumeRole",
        ] {
            assert!(!is_write_operation(op), "{op}");
        }
    }
}
