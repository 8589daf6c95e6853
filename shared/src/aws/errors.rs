//! AWS errors a person can act on.
//!
//! Every failed AWS call becomes one [`AwsFailure`]: the operation, the service, where it
//! ran (account, region), AWS's error code and message, the [`FailureKind`], a hint for the
//! kinds with a known fix, and the whole source chain for `-v`. It prints as
//!
//! ```text
//! OPERATION in ACCOUNT/REGION: CODE: message
//!   hint: what to do
//! ```
//!
//! and, when debug logging is on (`-v`), a third line with the full chain as
//! `DisplayErrorContext` prints it (Debug text included). Without `-v` no Debug text is
//! printed and no message is cut mid-word: AWS's own messages are kept whole, and only a
//! long message without an error code (the SDK's own chain) is shortened, at a word
//! boundary, with `(-v for the full error)`.
//!
//! Two stages, as everywhere in orgwatch: [`AwsFailure::new`] gathers text from an SDK error
//! (code, message, the chain as Display and as Debug prints it, the endpoint and profile in
//! force), then [`classify`] — pure, text in, value out — decides the kind and the hint, so
//! the decisions are tested as a table without SDK values.
//!
//! Where the codes come from:
//! * Errors common to every AWS API (AccessDeniedException, ExpiredTokenException,
//!   RequestExpired, ThrottlingException, UnrecognizedClientException, InvalidClientTokenId,
//!   NotAuthorized): <https://docs.aws.amazon.com/awsconsolehelpdocs/latest/gsg/common-errors.html>
//!   and e.g. <https://docs.aws.amazon.com/securityhub/1.0/APIReference/CommonErrors.html>.
//! * SNS answers AuthorizationError and Throttled for the same cases:
//!   <https://docs.aws.amazon.com/sns/latest/api/CommonErrors.html>.
//! * STS AssumeRole (ExpiredTokenException, RegionDisabledException):
//!   <https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html>.
//! * Access denied messages name the principal, the action and the resource: "User: ARN is
//!   not authorized to perform: ACTION on resource: ARN because no identity-based policy
//!   allows the ACTION action", or "... with an explicit deny in a service control policy"
//!   (<https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_access-denied-authorization-id.html>;
//!   explicit and implicit denies:
//!   <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic_AccessPolicyLanguage_Interplay.html>).
//!   The action is looked up in [`crate::iam::GRANTS`], the one action table, to name the
//!   `hub policy --for ...` that grants it.
//! * Throttling codes are the SDK's own retry classifier's (`THROTTLING_ERRORS` in
//!   aws-runtime's `retries::classifiers`), so a throttled failure is one the SDK already
//!   retried with backoff; `LimitExceededException` is left out (CloudWatch Logs uses it for
//!   resource limits, which no retry fixes).
//! * Credential-chain errors are the SDK's `CredentialsError` texts ("the credential
//!   provider was not enabled", "no credentials found in chain", "profile `x` was not
//!   defined", "the SSO token has expired and cannot be refreshed").

use std::error::Error;
use std::fmt;
use std::sync::RwLock;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::iam;

/// What kind of failure an AWS call met: the kinds with a known fix, and the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// No credentials at all: the SDK's chain (environment, profile, SSO, web identity,
    /// container, instance metadata) found none, or the profile named is not there.
    Credentials,
    /// Credentials AWS refuses as credentials: expired session, unknown access key, bad
    /// signature or clock.
    ExpiredToken,
    /// The caller is not allowed to make this call.
    AccessDenied,
    /// The endpoint could not be reached: DNS, connection refused, TLS, timeouts.
    Unreachable,
    /// AWS throttled the call, and the SDK's retries did not get through.
    Throttled,
    /// Anything else (the code and message say what).
    Other,
}

impl FailureKind {
    /// A stable lowercase name for logs and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Credentials => "credentials",
            FailureKind::ExpiredToken => "expired-token",
            FailureKind::AccessDenied => "access-denied",
            FailureKind::Unreachable => "unreachable",
            FailureKind::Throttled => "throttled",
            FailureKind::Other => "other",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The most characters of a message without an AWS error code that are printed without
/// `-v`; longer ones are cut at a word boundary.
pub const MAX_MESSAGE_CHARS: usize = 300;

/// A failed AWS call, structured. Cheap to move (one box): it is the error of many
/// `Result`s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsFailure(Box<Failure>);

#[derive(Clone, Debug, PartialEq, Eq)]
struct Failure {
    operation: String,
    service: String,
    account: Option<String>,
    region: Option<String>,
    code: Option<String>,
    message: String,
    kind: FailureKind,
    hint: Option<String>,
    chain: String,
    /// The endpoint the call went to (`host[:port]`), when known.
    endpoint: Option<String>,
    /// Where the endpoint came from when it was an override (`AWS_ENDPOINT_URL`, ...).
    endpoint_source: Option<String>,
    /// The profile the credential chain was told to use, when known.
    profile: Option<String>,
}

/// The text [`classify`] decides from. Everything is text, so that tests need no SDK error
/// values.
#[derive(Clone, Copy, Debug, Default)]
pub struct Raw<'a> {
    /// The SDK operation, e.g. `CreateTrail`.
    pub operation: &'a str,
    /// The SDK service name as the SDK and [`crate::iam::Grant::calls`] spell it
    /// (`CloudTrail`, `CloudWatch Logs`); empty when unknown.
    pub service: &'a str,
    /// AWS's error code, when AWS answered with one.
    pub code: Option<&'a str>,
    /// AWS's error message, when AWS answered with one.
    pub message: Option<&'a str>,
    /// The source chain, each error's Display joined by `: ` (no Debug text).
    pub chain: &'a str,
    /// The whole error as `DisplayErrorContext` prints it: the chain, then the Debug text.
    pub full: &'a str,
    /// The endpoint URL or `host:port` the call went to, when known.
    pub endpoint: Option<&'a str>,
    /// Where `endpoint` came from, when it is an override (e.g. `AWS_ENDPOINT_URL`).
    pub endpoint_source: Option<&'a str>,
    /// The profile the credential chain used, when known.
    pub profile: Option<&'a str>,
    /// The HTTP status of AWS's answer, when there was one.
    pub status: Option<u16>,
    /// AWS's request id, when there was one.
    pub request_id: Option<&'a str>,
}

/// How the process reaches AWS, as far as hints need it. [`crate::aws::ClientFactory::new`]
/// records it; errors made before then fall back to the environment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Context {
    /// `--profile`, when given (else `AWS_PROFILE` is read).
    pub profile: Option<String>,
    /// An endpoint override set in code (else `AWS_ENDPOINT_URL[_<SERVICE>]` are read).
    pub endpoint_url: Option<String>,
}

static CONTEXT: RwLock<Option<Context>> = RwLock::new(None);

/// Records how the process reaches AWS, for the hints of later failures.
pub fn set_context(context: Context) {
    let mut slot = CONTEXT
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    *slot = Some(context);
}

fn context() -> Context {
    CONTEXT
        .read()
        .map(|c| c.clone().unwrap_or_default())
        .unwrap_or_default()
}

/// One SDK crate: its service name, IAM action prefix, endpoint host and endpoint variable.
struct ServiceInfo {
    krate: &'static str,
    /// As the SDK's operation metadata (and [`crate::iam::Grant::calls`]) spell it.
    name: &'static str,
    /// The IAM action prefix (Service Authorization Reference).
    iam: &'static str,
    /// The default endpoint host; `{region}` is replaced.
    host: &'static str,
    /// The suffix of `AWS_ENDPOINT_URL_<SERVICE>` (the service id, upper-cased, spaces as `_`).
    env: &'static str,
}

const SERVICES: &[ServiceInfo] = &[
    ServiceInfo {
        krate: "organizations",
        name: "Organizations",
        iam: "organizations",
        host: "organizations.us-east-1.amazonaws.com",
        env: "ORGANIZATIONS",
    },
    ServiceInfo {
        krate: "sts",
        name: "STS",
        iam: "sts",
        host: "sts.{region}.amazonaws.com",
        env: "STS",
    },
    ServiceInfo {
        krate: "cloudtrail",
        name: "CloudTrail",
        iam: "cloudtrail",
        host: "cloudtrail.{region}.amazonaws.com",
        env: "CLOUDTRAIL",
    },
    ServiceInfo {
        krate: "eventbridge",
        name: "EventBridge",
        iam: "events",
        host: "events.{region}.amazonaws.com",
        env: "EVENTBRIDGE",
    },
    ServiceInfo {
        krate: "sqs",
        name: "SQS",
        iam: "sqs",
        host: "sqs.{region}.amazonaws.com",
        env: "SQS",
    },
    ServiceInfo {
        krate: "sns",
        name: "SNS",
        iam: "sns",
        host: "sns.{region}.amazonaws.com",
        env: "SNS",
    },
    ServiceInfo {
        krate: "s3",
        name: "S3",
        iam: "s3",
        host: "s3.{region}.amazonaws.com",
        env: "S3",
    },
    ServiceInfo {
        krate: "iam",
        name: "IAM",
        iam: "iam",
        host: "iam.amazonaws.com",
        env: "IAM",
    },
    ServiceInfo {
        krate: "cloudwatch",
        name: "CloudWatch",
        iam: "cloudwatch",
        host: "monitoring.{region}.amazonaws.com",
        env: "CLOUDWATCH",
    },
    ServiceInfo {
        krate: "cloudwatchlogs",
        name: "CloudWatch Logs",
        iam: "logs",
        host: "logs.{region}.amazonaws.com",
        env: "CLOUDWATCH_LOGS",
    },
    ServiceInfo {
        krate: "dynamodb",
        name: "DynamoDB",
        iam: "dynamodb",
        host: "dynamodb.{region}.amazonaws.com",
        env: "DYNAMODB",
    },
    ServiceInfo {
        krate: "kms",
        name: "KMS",
        iam: "kms",
        host: "kms.{region}.amazonaws.com",
        env: "KMS",
    },
    ServiceInfo {
        krate: "account",
        name: "Account",
        iam: "account",
        host: "account.us-east-1.amazonaws.com",
        env: "ACCOUNT",
    },
];

fn service_by_name(name: &str) -> Option<&'static ServiceInfo> {
    SERVICES.iter().find(|s| s.name == name)
}

/// The SDK crate in a type's name (`aws_sdk_cloudtrail::operation::...`), as a service.
fn service_of_type(type_name: &str) -> Option<&'static ServiceInfo> {
    let start = type_name.find("aws_sdk_")? + "aws_sdk_".len();
    let rest = &type_name[start..];
    let krate = rest.split(|c: char| !c.is_ascii_alphanumeric()).next()?;
    SERVICES.iter().find(|s| s.krate == krate)
}

/// Error codes of throttling (the SDK retries them; see the module doc).
const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "Throttled",
    "RequestThrottledException",
    "RequestThrottled",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

/// Session credentials past their expiry.
const EXPIRED: &[&str] = &[
    "ExpiredToken",
    "ExpiredTokenException",
    "TokenRefreshRequired",
];

/// A request signed at the wrong time, or with the wrong secret.
const CLOCK: &[&str] = &[
    "RequestExpired",
    "RequestTimeTooSkewed",
    "SignatureDoesNotMatch",
    "InvalidSignatureException",
];

/// An access key AWS does not know.
const UNKNOWN_KEY: &[&str] = &[
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "InvalidAccessKeyId",
];

/// The caller may not make the call.
const DENIED: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "AuthorizationError",
    "AuthorizationErrorException",
    "NotAuthorized",
];

const NOT_AUTHORIZED: &str = "is not authorized to perform: ";

/// Decides the kind and the hint of a failure from its text. Pure: no I/O, no environment.
pub fn classify(raw: &Raw<'_>) -> AwsFailure {
    let chain_lower = raw.chain.to_lowercase();
    let full_lower = raw.full.to_lowercase();
    let text = format!("{chain_lower}\n{full_lower}");
    let code = raw.code.filter(|c| !c.is_empty());
    let message = raw.message.unwrap_or_default();
    let kind = match code {
        Some(c) if THROTTLING.contains(&c) => FailureKind::Throttled,
        Some(c) if EXPIRED.contains(&c) || CLOCK.contains(&c) || UNKNOWN_KEY.contains(&c) => {
            FailureKind::ExpiredToken
        }
        Some(c) if DENIED.contains(&c) || message.contains(NOT_AUTHORIZED) => {
            FailureKind::AccessDenied
        }
        Some(_) => FailureKind::Other,
        // An answer without a code: S3's HEAD requests, or a body the SDK cannot read.
        None if raw.status == Some(403) => FailureKind::AccessDenied,
        None => kind_of_text(&text),
    };
    let message = match (code, raw.status) {
        // AWS's own words, whole.
        (Some(_), _) => collapse(message),
        (None, Some(status)) => {
            let said = summary(kind, raw.chain);
            // The SDK's metadata of an answer it could not read (`Error { aws_request_id:
            // .. }`) says nothing more than the status and request id below.
            let said = if said.starts_with("Error {")
                || said.starts_with("unhandled error")
                || said == "the call failed"
            {
                "no error code in the answer".to_string()
            } else {
                said
            };
            let id = raw
                .request_id
                .map(|id| format!(" (request id {id})"))
                .unwrap_or_default();
            shorten(&format!("HTTP {status}: {said}{id}"), MAX_MESSAGE_CHARS)
        }
        (None, None) => shorten(&summary(kind, raw.chain), MAX_MESSAGE_CHARS),
    };
    let endpoint = raw
        .endpoint
        .map(host_port)
        .or_else(|| refused_address(raw.full));
    let mut failure = Failure {
        operation: raw.operation.to_string(),
        service: raw.service.to_string(),
        account: None,
        region: None,
        code: code.map(str::to_string),
        message,
        kind,
        hint: None,
        chain: if raw.full.is_empty() {
            raw.chain.to_string()
        } else {
            raw.full.to_string()
        },
        endpoint,
        endpoint_source: raw.endpoint_source.map(str::to_string),
        profile: raw
            .profile
            .map(str::to_string)
            .or_else(|| profile_in(raw.chain)),
    };
    failure.hint = hint(&failure, &text);
    AwsFailure(Box::new(failure))
}

/// The kind of a failure without an AWS error code, from its chain text (lower case).
fn kind_of_text(text: &str) -> FailureKind {
    const EXPIRED_TEXT: &[&str] = &[
        "the sso token has expired",
        "sso session has expired",
        "token is expired",
        "token has expired",
        "login token is expired",
    ];
    const NO_CREDENTIALS: &[&str] = &[
        "no credentials found in chain",
        "the credential provider was not enabled",
        "credentialsnotloaded",
        "was not defined",
        "the credentials provider was not properly configured",
        "credentials provider timed out",
        "no credentials",
        "missing credential source",
    ];
    const UNREACHABLE: &[&str] = &[
        "dispatch failure",
        "request has timed out",
        "timeout",
        "timed out",
        "io error",
        "dns error",
        "tcp connect error",
        "connection refused",
        "connection reset",
        "error trying to connect",
        "connectorerror",
    ];
    if EXPIRED_TEXT.iter().any(|m| text.contains(m)) {
        return FailureKind::ExpiredToken;
    }
    // A provider that failed while loading (ProviderError) is about credentials only when
    // the cause below it is not the network: an AssumeRole that cannot reach STS is an
    // unreachable endpoint.
    let network_below = [
        "dns error",
        "tcp connect error",
        "connection refused",
        "timed out",
    ]
    .iter()
    .any(|m| text.contains(m));
    if NO_CREDENTIALS.iter().any(|m| text.contains(m))
        || (text.contains("an error occurred while loading credentials") && !network_below)
    {
        return FailureKind::Credentials;
    }
    if UNREACHABLE.iter().any(|m| text.contains(m)) {
        return FailureKind::Unreachable;
    }
    FailureKind::Other
}

/// Wrappers that say nothing a person needs, stripped from the front of a chain.
const WRAPPERS: &[&str] = &[
    "dispatch failure: ",
    "other: ",
    "io error: ",
    "client error (connect): ",
    "the credential provider was not enabled: ",
    "an error occurred while loading credentials: ",
    "service error: ",
    "unhandled error: ",
];

/// The message of a failure without a code: its chain, minus the generic wrappers, on one
/// line; for a credential chain, the providers it tried.
fn summary(kind: FailureKind, chain: &str) -> String {
    let mut rest = chain.trim();
    loop {
        let lower = rest.to_lowercase();
        match WRAPPERS.iter().find(|w| lower.starts_with(*w)) {
            Some(w) => rest = rest[w.len()..].trim_start(),
            None => break,
        }
    }
    if kind == FailureKind::Credentials
        && let Some((head, tried)) = rest.split_once("Attempted:")
    {
        let names: Vec<&str> = tried
            .lines()
            .filter_map(|l| {
                let (name, _) = l.trim().split_once(':')?;
                (!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric()))
                    .then_some(name)
            })
            .collect();
        let head = head.trim().trim_end_matches('.');
        return if names.is_empty() {
            collapse(head)
        } else {
            format!("{} (tried {})", collapse(head), names.join(", "))
        };
    }
    if rest.is_empty() {
        return "the call failed".to_string();
    }
    collapse(rest)
}

/// Whitespace runs (new lines included) as one space.
fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `text` whole when it has at most `max` characters; else cut at the last word boundary
/// before that, with a pointer to `-v`.
pub fn shorten(text: &str, max: usize) -> String {
    let Some((cut, _)) = text.char_indices().nth(max) else {
        return text.to_string();
    };
    let head = &text[..cut];
    // Break before the word the limit falls in (unless the limit falls between words).
    let boundary = if text[cut..].starts_with(char::is_whitespace) {
        cut
    } else {
        head.rfind(char::is_whitespace).unwrap_or(cut)
    };
    let kept =
        text[..boundary].trim_end_matches(|c: char| c.is_whitespace() || c == ':' || c == ',');
    format!("{kept} … (-v for the full error)")
}

/// `host:port` (or `host`) of a URL or address.
fn host_port(endpoint: &str) -> String {
    let rest = endpoint
        .split_once("://")
        .map(|(_, r)| r)
        .unwrap_or(endpoint);
    let rest = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    rest.rsplit_once('@')
        .map(|(_, h)| h)
        .unwrap_or(rest)
        .to_string()
}

/// The address a connection was refused at, from hyper's Debug text
/// (`ConnectError("tcp connect error", 127.0.0.1:1, ...)`).
fn refused_address(full: &str) -> Option<String> {
    let start = full.find("ConnectError(\"")?;
    let after = &full[start..];
    let (_, rest) = after.split_once("\", ")?;
    let addr: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '[' | ']' | '-'))
        .collect();
    (addr.contains(':') && addr.chars().last().is_some_and(|c| c.is_ascii_digit())).then_some(addr)
}

/// The profile named in a credential error (`profile `x` was not defined`).
fn profile_in(chain: &str) -> Option<String> {
    let start = chain.find("profile `")? + "profile `".len();
    let len = chain[start..].find('`')?;
    let name = &chain[start..start + len];
    (!name.is_empty()).then(|| name.to_string())
}

fn is_loopback(host_port: &str) -> bool {
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => host_port
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(host_port),
    };
    host == "localhost" || host == "::1" || host.starts_with("127.")
}

/// The hint of a failure, from what is known about it. `text` is its chain, lower case.
fn hint(f: &Failure, text: &str) -> Option<String> {
    let profile = f.profile.as_deref();
    let sso_login = format!("aws sso login --profile {}", profile.unwrap_or("NAME"));
    match f.kind {
        FailureKind::Credentials => {
            let tried = match profile {
                Some(p) if text.contains("was not defined") => format!(
                    "profile `{p}` is not in ~/.aws/config (or AWS_CONFIG_FILE): check the name; "
                ),
                Some(p) => format!("profile `{p}` gave no credentials; "),
                None => String::new(),
            };
            Some(format!(
                "{tried}sign in with `{sso_login}` (an SSO profile), or choose a profile with AWS_PROFILE or --profile, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            ))
        }
        FailureKind::ExpiredToken => {
            let code = f.code.as_deref().unwrap_or_default();
            Some(if CLOCK.contains(&code) {
                format!(
                    "AWS refused the request's signature or time: check this machine's clock (a signature more than 5 minutes off, or a request 15 minutes old, is refused) and that the secret key belongs to the access key; then refresh the credentials (`{sso_login}`)"
                )
            } else if UNKNOWN_KEY.contains(&code) {
                format!(
                    "AWS does not know this access key (deleted, for another partition, or temporary keys without AWS_SESSION_TOKEN): refresh the credentials (`{sso_login}`), or choose a working profile with AWS_PROFILE or --profile"
                )
            } else {
                format!(
                    "the credentials have expired: refresh them (`{sso_login}` for an SSO profile, or new keys from whatever issued them) and run again"
                )
            })
        }
        FailureKind::AccessDenied => Some(denied_hint(f)),
        FailureKind::Unreachable => Some(unreachable_hint(f, text)),
        FailureKind::Throttled => Some(format!(
            "AWS throttled {} and the SDK's retries with backoff did not get through: lower `--concurrency` (hub) or the agent's sink and queue rates, or ask AWS for a higher quota",
            if f.service.is_empty() {
                f.operation.clone()
            } else {
                format!("{} {}", f.service, f.operation)
            }
        )),
        FailureKind::Other => match f.code.as_deref() {
            Some("RegionDisabledException") => Some(
                "STS is not active in this region for the account: activate it (IAM console, account settings) or choose another --region".to_string(),
            ),
            Some("OptInRequired") => Some(
                "the account has not opted in to this region or service: enable it, or leave the region out of hub.regions".to_string(),
            ),
            _ => None,
        },
    }
}

/// `ACTION` and `RESOURCE` of "... is not authorized to perform: ACTION on resource: RESOURCE ...".
fn denied_action(message: &str) -> Option<(String, Option<String>)> {
    let start = message.find(NOT_AUTHORIZED)? + NOT_AUTHORIZED.len();
    let rest = &message[start..];
    let action: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '*'))
        .collect();
    if !action.contains(':') {
        return None;
    }
    let resource = rest.split_once(" on resource: ").map(|(_, r)| {
        r.split_whitespace()
            .next()
            .unwrap_or_default()
            .trim_end_matches(['.', ','])
            .to_string()
    });
    Some((action, resource.filter(|r| !r.is_empty())))
}

/// Which generated policies grant `action` (or, without an action, hold the SDK call):
/// `(principal, statement)` pairs in table order.
fn grants_of(
    action: Option<&str>,
    service: &str,
    operation: &str,
) -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&'static str, &'static str)> = Vec::new();
    for g in iam::GRANTS {
        let by_action = action.is_some_and(|a| g.actions.iter().any(|x| x.eq_ignore_ascii_case(a)));
        let by_call = action.is_none()
            && g.calls
                .iter()
                .any(|(s, o)| *s == service && *o == operation);
        if (by_action || by_call) && !out.iter().any(|(p, _)| *p == g.principal.as_str()) {
            out.push((g.principal.as_str(), g.sid));
        }
    }
    out
}

fn denied_hint(f: &Failure) -> String {
    let parsed = denied_action(&f.message);
    let info = service_by_name(&f.service);
    // S3's action names are not its operation names (HeadBucket is s3:ListBucket): look
    // those up by the call instead.
    let derived = info
        .filter(|i| i.krate != "s3" && !f.operation.is_empty())
        .map(|i| format!("{}:{}", i.iam, f.operation));
    let action = parsed.as_ref().map(|(a, _)| a.clone()).or(derived);
    let mut grants = grants_of(action.as_deref(), &f.service, &f.operation);
    if grants.is_empty() && parsed.is_none() {
        grants = grants_of(None, &f.service, &f.operation);
    }
    let what = match (&action, &parsed) {
        (Some(a), Some((_, Some(r)))) => format!("`{a}` on {r}"),
        (Some(a), _) => format!("`{a}`"),
        (None, _) if !f.service.is_empty() => format!("{} {}", f.service, f.operation),
        (None, _) => f.operation.clone(),
    };
    let mut hint = if grants.is_empty() {
        match &action {
            Some(_) => format!(
                "{what} is not in orgwatch's IAM action table (shared/src/iam.rs), so no `hub policy --for hub|member|central|agent|agent-member` grants it"
            ),
            None => "the generated policies are `hub policy --for hub|member|central|agent|agent-member`: attach the one of the identity that made the call".to_string(),
        }
    } else {
        let named: Vec<String> = grants
            .iter()
            .map(|(p, sid)| format!("`hub policy --for {p}` (statement {sid})"))
            .collect();
        format!(
            "the caller may not call {what}: it is granted by {}; attach that policy to the identity the message names",
            named.join(" and ")
        )
    };
    if f.message.contains("explicit deny") {
        hint.push_str(
            "; the message says an explicit Deny refuses it (a service control policy, permissions boundary, session or resource policy), which no Allow overrides",
        );
    }
    if action
        .as_deref()
        .is_some_and(|a| a.eq_ignore_ascii_case("sts:AssumeRole"))
        || f.operation == "AssumeRole"
    {
        hint.push_str(
            "; the role's trust policy must also trust this account (infra/cloudformation/member-role.yaml, with hub.external_id when one is set)",
        );
    }
    hint
}

fn unreachable_hint(f: &Failure, text: &str) -> String {
    let lead = if text.contains("timed out") || text.contains("timeout") {
        "the call timed out: "
    } else {
        ""
    };
    let default_host = service_by_name(&f.service).and_then(|i| {
        let region = f.region.as_deref().filter(|r| !r.is_empty())?;
        let host = i.host.replace("{region}", region);
        Some(if region.starts_with("cn-") {
            format!("{host}.cn")
        } else {
            host
        })
    });
    let source = f.endpoint_source.as_deref();
    match (&f.endpoint, source) {
        (Some(e), source) if is_loopback(e) => {
            let var = source.unwrap_or("AWS_ENDPOINT_URL");
            format!(
                "{lead}nothing answers at {e}, where the endpoint override {var} points: start the emulator there, or unset {var} to reach AWS"
            )
        }
        (Some(e), Some(source)) => format!(
            "{lead}cannot reach {e} (set by {source}): check that URL, the network and any proxy (HTTPS_PROXY, NO_PROXY)"
        ),
        (Some(e), None) => format!(
            "{lead}cannot reach {e}: check the network and any proxy (HTTPS_PROXY, NO_PROXY), and that --region names the region you mean"
        ),
        (None, _) => format!(
            "{lead}cannot reach {}: check the network and any proxy (HTTPS_PROXY, NO_PROXY), and that --region names the region you mean",
            default_host.as_deref().unwrap_or("the AWS endpoint")
        ),
    }
}

/// Whether `-v` (debug logging) is on: then the full chain is printed too.
fn verbose() -> bool {
    tracing::enabled!(tracing::Level::DEBUG)
}

/// Each error's Display, outermost first, joined by `: `.
fn display_chain(e: &(dyn Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let part = s.to_string();
        if !part.is_empty() && !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cur = s.source();
    }
    text
}

/// The code and message of an `sts:AssumeRole` refusal inside a credentials provider's
/// error (the member-role credentials wrap it).
fn assume_role_refusal(e: &(dyn Error + 'static)) -> Option<(String, Option<String>)> {
    use aws_sdk_sts::operation::assume_role::AssumeRoleError;
    let mut cur: Option<&(dyn Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(inner) = err.downcast_ref::<aws_sdk_sts::error::SdkError<AssumeRoleError>>() {
            if let Some(code) = inner.code() {
                return Some((code.to_string(), inner.message().map(str::to_string)));
            }
            // An answer the SDK did not parse into a code (an error document of another
            // shape): STS's query-protocol errors carry <Code> and <Message> (STS API
            // reference, "Common Errors"), so read them from the body.
            if let Some(body) = inner
                .raw_response()
                .and_then(|r| r.body().bytes())
                .map(String::from_utf8_lossy)
                && let Some(code) = xml_text(&body, "Code")
            {
                return Some((code, xml_text(&body, "Message")));
            }
        }
        cur = err.source();
    }
    None
}

/// The text of the first `<tag>...</tag>` in `body`, unescaped for the five XML entities.
fn xml_text(body: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = body.find(&open)? + open.len();
    let len = body[start..].find(&format!("</{tag}>"))?;
    let text = body[start..start + len].trim();
    (!text.is_empty()).then(|| {
        text.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&")
    })
}

/// The endpoint in force for a service: the override set in code, else
/// `AWS_ENDPOINT_URL_<SERVICE>`, else `AWS_ENDPOINT_URL` (as the SDK reads them), with the
/// name of where it came from.
fn endpoint_override(info: Option<&ServiceInfo>, ctx: &Context) -> Option<(String, String)> {
    if let Some(url) = &ctx.endpoint_url {
        return Some((url.clone(), "the endpoint override".to_string()));
    }
    let mut names = Vec::new();
    if let Some(i) = info {
        names.push(format!("AWS_ENDPOINT_URL_{}", i.env));
    }
    names.push("AWS_ENDPOINT_URL".to_string());
    names.into_iter().find_map(|name| {
        std::env::var(&name)
            .ok()
            .filter(|v| !v.is_empty())
            .map(|v| (v, name))
    })
}

impl AwsFailure {
    /// A failed SDK call: its code, message, HTTP status and chain, classified. The service
    /// is read from the error's type (`aws_sdk_<crate>`).
    pub fn new<E>(operation: &str, e: SdkError<E, HttpResponse>) -> AwsFailure
    where
        E: ProvideErrorMetadata + Error + 'static,
    {
        let info = service_of_type(std::any::type_name::<E>());
        let status = e.raw_response().map(|r| r.status().as_u16());
        let request_id = e.meta().extra("aws_request_id").map(str::to_string);
        let mut operation = operation.to_string();
        let mut service = info.map(|i| i.name).unwrap_or_default();
        let mut code = e.code().map(str::to_string);
        let mut message = e.message().map(str::to_string);
        if code.is_none()
            && let Some((c, m)) = assume_role_refusal(&e)
        {
            // Member-role credentials: STS refused the AssumeRole behind the call.
            operation = "AssumeRole".to_string();
            service = "STS";
            code = Some(c);
            message = m;
        }
        let chain = display_chain(&e);
        let full = DisplayErrorContext(&e).to_string();
        let raw = Raw {
            status,
            request_id: request_id.as_deref(),
            ..Raw::default()
        };
        Self::gathered(
            raw,
            &operation,
            service,
            code.as_deref(),
            message.as_deref(),
            &chain,
            &full,
        )
    }

    /// Any other error met while making an AWS call (reading a response body, a credentials
    /// provider's own error): classified from its chain.
    pub fn from_error<E: Error + 'static>(operation: &str, e: &E) -> AwsFailure {
        let chain = display_chain(e);
        let full = DisplayErrorContext(e).to_string();
        Self::gathered(Raw::default(), operation, "", None, None, &chain, &full)
    }

    fn gathered<'a>(
        raw: Raw<'a>,
        operation: &'a str,
        service: &'a str,
        code: Option<&'a str>,
        message: Option<&'a str>,
        chain: &'a str,
        full: &'a str,
    ) -> AwsFailure {
        let ctx = context();
        let endpoint = endpoint_override(service_by_name(service), &ctx);
        let profile = ctx
            .profile
            .clone()
            .or_else(|| std::env::var("AWS_PROFILE").ok().filter(|p| !p.is_empty()));
        classify(&Raw {
            operation,
            service,
            code,
            message,
            chain,
            full,
            endpoint: endpoint.as_ref().map(|(e, _)| e.as_str()),
            endpoint_source: endpoint.as_ref().map(|(_, s)| s.as_str()),
            profile: profile.as_deref(),
            ..raw
        })
    }

    /// A failure that is not an AWS answer (a request that could not be built, a response
    /// orgwatch refuses): the message as given, no code.
    pub fn build(operation: &str, e: impl fmt::Display) -> AwsFailure {
        Self::from_parts(operation, None, &e.to_string())
    }

    /// A failure from its code and message, classified like an AWS answer.
    pub fn from_parts(operation: &str, code: Option<&str>, message: &str) -> AwsFailure {
        let mut f = classify(&Raw {
            operation,
            code,
            message: Some(message),
            ..Raw::default()
        });
        if code.is_none() {
            // Orgwatch's own words: whole, and no guessing at a kind from them.
            f.0.message = message.to_string();
            f.0.kind = FailureKind::Other;
            f.0.hint = None;
        }
        f
    }

    /// The same failure, located in an account and region (empty values are ignored).
    pub fn at(mut self, account: Option<&str>, region: Option<&str>) -> AwsFailure {
        if let Some(a) = account.filter(|a| !a.is_empty()) {
            self.0.account = Some(a.to_string());
        }
        if let Some(r) = region.filter(|r| !r.is_empty()) {
            self.0.region = Some(r.to_string());
        }
        if self.0.kind == FailureKind::Unreachable {
            // The default endpoint host needs the region.
            let text = self.0.chain.to_lowercase();
            self.0.hint = hint(&self.0, &text);
        }
        self
    }

    /// The same failure with another message (the code, kind and hint stay).
    pub fn with_message(mut self, message: impl Into<String>) -> AwsFailure {
        self.0.message = message.into();
        self
    }

    /// True when AWS's error code is one of `codes`.
    pub fn is(&self, codes: &[&str]) -> bool {
        self.0.code.as_deref().is_some_and(|c| codes.contains(&c))
    }

    pub fn operation(&self) -> &str {
        &self.0.operation
    }

    /// The SDK service name (`CloudTrail`); empty when unknown.
    pub fn service(&self) -> &str {
        &self.0.service
    }

    pub fn account(&self) -> Option<&str> {
        self.0.account.as_deref()
    }

    pub fn region(&self) -> Option<&str> {
        self.0.region.as_deref()
    }

    /// AWS's error code, when AWS answered with one.
    pub fn code(&self) -> Option<&str> {
        self.0.code.as_deref()
    }

    /// AWS's message (whole), or the summary of the chain when there is no code.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    pub fn kind(&self) -> FailureKind {
        self.0.kind
    }

    pub fn hint(&self) -> Option<&str> {
        self.0.hint.as_deref()
    }

    /// The full chain, Debug text included (what `-v` prints).
    pub fn chain(&self) -> &str {
        &self.0.chain
    }

    /// The first line: `OPERATION in ACCOUNT/REGION: CODE: message`.
    pub fn headline(&self) -> String {
        let f = &self.0;
        let mut out = f.operation.clone();
        match (&f.account, &f.region) {
            (Some(a), Some(r)) => out.push_str(&format!(" in {a}/{r}")),
            (Some(x), None) | (None, Some(x)) => out.push_str(&format!(" in {x}")),
            (None, None) => {}
        }
        match (&f.code, f.message.is_empty()) {
            (Some(c), true) => out.push_str(&format!(": {c}")),
            (Some(c), false) => out.push_str(&format!(": {c}: {}", f.message)),
            (None, _) => out.push_str(&format!(": {}", f.message)),
        }
        out
    }
}

impl fmt::Display for AwsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.headline())?;
        if let Some(h) = &self.0.hint {
            write!(f, "\n  hint: {h}")?;
        }
        if verbose() && !self.0.chain.is_empty() {
            write!(f, "\n  full error: {}", self.0.chain)?;
        }
        Ok(())
    }
}

impl Error for AwsFailure {}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the SDK prints for `hub status` without any credentials (issue #13).
    const NO_CREDENTIALS_CHAIN: &str = "dispatch failure: other: the credential provider was not enabled: no credentials found in chain. Attempted:\n  Environment: the credential provider was not enabled: environment variable not set\n  Profile: the credential provider was not enabled\n  WebIdentityToken: the credential provider was not enabled: $AWS_WEB_IDENTITY_TOKEN_FILE was not set\n  EcsContainer: the credential provider was not enabled: ECS provider not configured\n  Ec2InstanceMetadata: the credential provider was not enabled: IMDS disabled by AWS_EC2_METADATA_DISABLED env var set to `true`";
    const NO_CREDENTIALS_DEBUG: &str = " (DispatchFailure(DispatchFailure { source: ConnectorError { kind: Other(None), source: CredentialsNotLoaded(CredentialsNotLoaded { source: Some(ProviderChainError { attempts: [ProviderAttempt { name: \"Environment\", error: CredentialsNotLoaded(CredentialsNotLoaded { source: Some(\"environment variable not set\") }) }] }) }), connection: Unknown } }))";
    /// And for an endpoint where nothing listens (issue #13).
    const REFUSED_CHAIN: &str = "dispatch failure: io error: client error (Connect): tcp connect error: Connection refused (os error 111)";
    const REFUSED_DEBUG: &str = " (DispatchFailure(DispatchFailure { source: ConnectorError { kind: Io, source: hyper_util::client::legacy::Error(Connect, ConnectError(\"tcp connect error\", 127.0.0.1:4566, Os { code: 111, kind: ConnectionRefused, message: \"Connection refused\" })), connection: Unknown } }))";
    const DNS_CHAIN: &str = "dispatch failure: io error: client error (Connect): dns error: failed to lookup address information: Name or service not known";
    const TIMEOUT_CHAIN: &str =
        "request has timed out: timeout: HTTP read timeout occurred after 60s";

    fn raw<'a>(
        operation: &'a str,
        service: &'a str,
        code: Option<&'a str>,
        message: Option<&'a str>,
        chain: &'a str,
    ) -> Raw<'a> {
        Raw {
            operation,
            service,
            code,
            message,
            chain,
            ..Raw::default()
        }
    }

    struct Row {
        raw: Raw<'static>,
        kind: FailureKind,
        /// Every one must be in the hint (none: no hint).
        hint: &'static [&'static str],
    }

    #[test]
    fn kinds_and_hints() {
        let full_no_creds: &'static str =
            Box::leak(format!("{NO_CREDENTIALS_CHAIN}{NO_CREDENTIALS_DEBUG}").into_boxed_str());
        let full_refused: &'static str =
            Box::leak(format!("{REFUSED_CHAIN}{REFUSED_DEBUG}").into_boxed_str());
        let rows = [
            Row {
                raw: Raw {
                    full: full_no_creds,
                    ..raw("GetCallerIdentity", "STS", None, None, NO_CREDENTIALS_CHAIN)
                },
                kind: FailureKind::Credentials,
                hint: &[
                    "aws sso login --profile NAME",
                    "AWS_PROFILE",
                    "--profile",
                    "AWS_ACCESS_KEY_ID",
                ],
            },
            Row {
                raw: Raw {
                    profile: Some("security"),
                    ..raw(
                        "GetCallerIdentity",
                        "STS",
                        None,
                        None,
                        "dispatch failure: other: the credential provider was not enabled: profile `security` was not defined: could not find source profile",
                    )
                },
                kind: FailureKind::Credentials,
                hint: &[
                    "aws sso login --profile security",
                    "profile `security` is not in ~/.aws/config",
                ],
            },
            Row {
                raw: Raw {
                    full: full_refused,
                    endpoint: Some("http://127.0.0.1:4566"),
                    endpoint_source: Some("AWS_ENDPOINT_URL"),
                    ..raw("ListAccounts", "Organizations", None, None, REFUSED_CHAIN)
                },
                kind: FailureKind::Unreachable,
                hint: &["127.0.0.1:4566", "AWS_ENDPOINT_URL", "emulator"],
            },
            Row {
                // No endpoint configured: the address comes from the Debug text.
                raw: Raw {
                    full: full_refused,
                    ..raw("ListAccounts", "Organizations", None, None, REFUSED_CHAIN)
                },
                kind: FailureKind::Unreachable,
                hint: &["127.0.0.1:4566"],
            },
            Row {
                raw: raw("DescribeTrails", "CloudTrail", None, None, DNS_CHAIN),
                kind: FailureKind::Unreachable,
                hint: &["HTTPS_PROXY", "NO_PROXY", "--region"],
            },
            Row {
                raw: raw("ReceiveMessage", "SQS", None, None, TIMEOUT_CHAIN),
                kind: FailureKind::Unreachable,
                hint: &["timed out", "HTTPS_PROXY"],
            },
            Row {
                raw: raw(
                    "CreateTrail",
                    "CloudTrail",
                    Some("AccessDeniedException"),
                    Some(
                        "User: arn:aws:sts::111122223333:assumed-role/Admin/x is not authorized to perform: cloudtrail:CreateTrail on resource: arn:aws:cloudtrail:us-east-1:111122223333:trail/orgwatch because no identity-based policy allows the cloudtrail:CreateTrail action",
                    ),
                    "service error",
                ),
                kind: FailureKind::AccessDenied,
                hint: &[
                    "`cloudtrail:CreateTrail` on arn:aws:cloudtrail:us-east-1:111122223333:trail/orgwatch",
                    "`hub policy --for hub` (statement OrganizationTrail)",
                    "`hub policy --for member` (statement AccountTrail)",
                ],
            },
            Row {
                // No action in the message: derived from the operation.
                raw: raw(
                    "DescribeAlarms",
                    "CloudWatch",
                    Some("AccessDenied"),
                    Some("Access denied"),
                    "",
                ),
                kind: FailureKind::AccessDenied,
                hint: &["`cloudwatch:DescribeAlarms`", "hub policy --for member"],
            },
            Row {
                // A 403 the SDK could not read a code from (S3 HEAD requests answer so).
                raw: Raw {
                    status: Some(403),
                    ..raw(
                        "HeadBucket",
                        "S3",
                        None,
                        None,
                        "service error: unhandled error",
                    )
                },
                kind: FailureKind::AccessDenied,
                hint: &[
                    "S3 HeadBucket",
                    "`hub policy --for central` (statement ArchiveBucket)",
                ],
            },
            Row {
                raw: raw(
                    "AssumeRole",
                    "STS",
                    Some("AccessDenied"),
                    Some(
                        "User: arn:aws:iam::111122223333:user/hub is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::444455556666:role/OrganizationAccountAccessRole",
                    ),
                    "",
                ),
                kind: FailureKind::AccessDenied,
                hint: &[
                    "`hub policy --for hub` (statement AssumeMemberRole)",
                    "trust policy",
                ],
            },
            Row {
                raw: raw(
                    "Publish",
                    "SNS",
                    Some("AuthorizationError"),
                    Some(
                        "User: arn:aws:iam::111122223333:user/agent is not authorized to perform: SNS:Publish on resource: arn:aws:sns:us-east-1:111122223333:x with an explicit deny in a service control policy",
                    ),
                    "",
                ),
                kind: FailureKind::AccessDenied,
                hint: &["`SNS:Publish`", "hub policy --for agent", "explicit Deny"],
            },
            Row {
                raw: raw(
                    "DeleteBucket",
                    "S3",
                    Some("AccessDenied"),
                    Some(
                        "User: x is not authorized to perform: s3:PutObjectAcl on resource: arn:aws:s3:::b/k",
                    ),
                    "",
                ),
                kind: FailureKind::AccessDenied,
                hint: &["`s3:PutObjectAcl`", "is not in orgwatch's IAM action table"],
            },
            Row {
                raw: raw(
                    "GetCallerIdentity",
                    "STS",
                    Some("ExpiredToken"),
                    Some("The security token included in the request is expired"),
                    "",
                ),
                kind: FailureKind::ExpiredToken,
                hint: &["expired", "aws sso login"],
            },
            Row {
                raw: raw(
                    "ListQueues",
                    "SQS",
                    Some("ExpiredTokenException"),
                    Some("The security token included in the request is expired"),
                    "",
                ),
                kind: FailureKind::ExpiredToken,
                hint: &["aws sso login"],
            },
            Row {
                raw: raw(
                    "ListAccounts",
                    "Organizations",
                    Some("RequestExpired"),
                    Some("Request has expired."),
                    "",
                ),
                kind: FailureKind::ExpiredToken,
                hint: &["clock"],
            },
            Row {
                raw: raw(
                    "GetCallerIdentity",
                    "STS",
                    Some("SignatureDoesNotMatch"),
                    Some("Signature expired"),
                    "",
                ),
                kind: FailureKind::ExpiredToken,
                hint: &["clock", "secret key"],
            },
            Row {
                raw: raw(
                    "GetCallerIdentity",
                    "STS",
                    Some("InvalidClientTokenId"),
                    Some("The security token included in the request is invalid."),
                    "",
                ),
                kind: FailureKind::ExpiredToken,
                hint: &["does not know this access key", "AWS_SESSION_TOKEN"],
            },
            Row {
                raw: raw(
                    "Publish",
                    "SNS",
                    Some("UnrecognizedClientException"),
                    Some("The security token included in the request is invalid."),
                    "",
                ),
                kind: FailureKind::ExpiredToken,
                hint: &["does not know this access key"],
            },
            Row {
                raw: raw(
                    "GetCallerIdentity",
                    "STS",
                    None,
                    None,
                    "dispatch failure: other: an error occurred while loading credentials: the SSO token has expired and cannot be refreshed",
                ),
                kind: FailureKind::ExpiredToken,
                hint: &["aws sso login"],
            },
            Row {
                raw: raw(
                    "PutMetricFilter",
                    "CloudWatch Logs",
                    Some("ThrottlingException"),
                    Some("Rate exceeded"),
                    "",
                ),
                kind: FailureKind::Throttled,
                hint: &["--concurrency", "CloudWatch Logs PutMetricFilter"],
            },
            Row {
                raw: raw(
                    "CreateTopic",
                    "SNS",
                    Some("Throttled"),
                    Some("Rate exceeded"),
                    "",
                ),
                kind: FailureKind::Throttled,
                hint: &["--concurrency"],
            },
            Row {
                raw: raw(
                    "ReceiveMessage",
                    "SQS",
                    Some("RequestLimitExceeded"),
                    None,
                    "",
                ),
                kind: FailureKind::Throttled,
                hint: &["retries"],
            },
            Row {
                raw: raw(
                    "TagResource",
                    "EventBridge",
                    Some("TooManyRequestsException"),
                    None,
                    "",
                ),
                kind: FailureKind::Throttled,
                hint: &["rates"],
            },
            Row {
                // A resource limit is not throttling.
                raw: raw(
                    "PutMetricFilter",
                    "CloudWatch Logs",
                    Some("LimitExceededException"),
                    Some("Resource limit exceeded."),
                    "",
                ),
                kind: FailureKind::Other,
                hint: &[],
            },
            Row {
                raw: raw(
                    "GetTrail",
                    "CloudTrail",
                    Some("TrailNotFoundException"),
                    Some("Unknown trail"),
                    "",
                ),
                kind: FailureKind::Other,
                hint: &[],
            },
        ];
        for row in rows {
            let f = classify(&row.raw);
            assert_eq!(f.kind(), row.kind, "{:?}: {f}", row.raw);
            match (row.hint, f.hint()) {
                ([], None) => {}
                ([], Some(h)) => panic!("{:?}: unexpected hint {h}", row.raw.code),
                (want, Some(h)) => {
                    for w in want {
                        assert!(h.contains(w), "{:?}: hint lacks {w:?}: {h}", row.raw);
                    }
                }
                (_, None) => panic!("{:?}: no hint", row.raw),
            }
        }
    }

    #[test]
    fn no_debug_text_and_the_providers_tried() {
        let full = format!("{NO_CREDENTIALS_CHAIN}{NO_CREDENTIALS_DEBUG}");
        let f = classify(&Raw {
            full: &full,
            ..raw("GetCallerIdentity", "STS", None, None, NO_CREDENTIALS_CHAIN)
        })
        .at(None, Some("us-east-1"));
        let text = f.to_string();
        assert_eq!(
            f.headline(),
            "GetCallerIdentity in us-east-1: no credentials found in chain (tried Environment, Profile, WebIdentityToken, EcsContainer, Ec2InstanceMetadata)"
        );
        for debug in [
            "DispatchFailure(",
            "ConnectorError {",
            "CredentialsNotLoaded(",
        ] {
            assert!(!text.contains(debug), "{text}");
        }
        // The whole chain is kept for -v.
        assert!(
            f.chain()
                .contains("DispatchFailure(DispatchFailure { source: ConnectorError {")
        );

        let full = format!("{REFUSED_CHAIN}{REFUSED_DEBUG}");
        let f = classify(&Raw {
            full: &full,
            ..raw("ListAccounts", "Organizations", None, None, REFUSED_CHAIN)
        });
        assert_eq!(
            f.headline(),
            "ListAccounts: tcp connect error: Connection refused (os error 111)"
        );
        assert!(!f.to_string().contains("DispatchFailure("), "{f}");
    }

    #[test]
    fn an_answer_without_a_code_says_its_status_not_the_sdks_metadata() {
        let f = classify(&Raw {
            status: Some(403),
            request_id: Some("Qh3m"),
            ..raw(
                "DescribeAlarms",
                "CloudWatch",
                None,
                None,
                "service error: unhandled error: Error { aws_request_id: \"Qh3m\" }",
            )
        });
        assert_eq!(
            f.headline(),
            "DescribeAlarms: HTTP 403: no error code in the answer (request id Qh3m)"
        );
        assert_eq!(f.kind(), FailureKind::AccessDenied);
        let f = classify(&Raw {
            status: Some(500),
            ..raw(
                "PutRule",
                "EventBridge",
                None,
                None,
                "service error: unhandled error",
            )
        });
        assert_eq!(
            f.headline(),
            "PutRule: HTTP 500: no error code in the answer"
        );
        assert_eq!(f.kind(), FailureKind::Other);
    }

    #[test]
    fn display_is_operation_place_code_message_then_hint() {
        let f = classify(&raw(
            "CreateTrail",
            "CloudTrail",
            Some("AccessDeniedException"),
            Some("User: u is not authorized to perform: cloudtrail:CreateTrail on resource: arn:aws:cloudtrail:us-east-1:111122223333:trail/orgwatch"),
            "",
        ))
        .at(Some("111122223333"), Some("us-east-1"));
        let text = f.to_string();
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some(
                "CreateTrail in 111122223333/us-east-1: AccessDeniedException: User: u is not authorized to perform: cloudtrail:CreateTrail on resource: arn:aws:cloudtrail:us-east-1:111122223333:trail/orgwatch"
            )
        );
        assert!(
            lines.next().is_some_and(|l| l.starts_with("  hint: ")),
            "{text}"
        );
        assert_eq!(lines.next(), None, "no chain without -v: {text}");
    }

    #[test]
    fn aws_messages_are_whole_and_long_chains_cut_at_a_word() {
        let long_aws = "word ".repeat(200);
        let f = classify(&raw(
            "PutRule",
            "EventBridge",
            Some("ValidationException"),
            Some(&long_aws),
            "",
        ));
        assert_eq!(f.message(), long_aws.trim());

        let long_chain = format!("response error: {}", "unexpected-token ".repeat(40));
        let f = classify(&raw("PutRule", "EventBridge", None, None, &long_chain));
        let m = f.message();
        assert!(m.ends_with(" … (-v for the full error)"), "{m}");
        let kept = m.trim_end_matches(" … (-v for the full error)");
        assert!(kept.chars().count() <= MAX_MESSAGE_CHARS, "{m}");
        assert!(kept.ends_with("unexpected-token"), "cut between words: {m}");
        assert_eq!(f.chain(), long_chain);
    }

    #[test]
    fn shorten_cuts_only_at_word_boundaries() {
        assert_eq!(shorten("short", 10), "short");
        assert_eq!(shorten("alpha beta gamma", 16), "alpha beta gamma");
        assert_eq!(
            shorten("alpha beta gamma", 13),
            "alpha beta … (-v for the full error)"
        );
        // The limit between two words keeps the first whole.
        assert_eq!(
            shorten("alpha beta gamma", 10),
            "alpha beta … (-v for the full error)"
        );
        // Multi-byte characters are counted, never split.
        assert_eq!(
            shorten("ééé ééé ééé", 9),
            "ééé ééé … (-v for the full error)"
        );
    }

    #[test]
    fn services_come_from_the_sdk_type() {
        let t = "aws_smithy_runtime_api::client::result::SdkError<aws_sdk_cloudwatchlogs::operation::put_metric_filter::PutMetricFilterError, aws_smithy_runtime_api::http::response::Response>";
        assert_eq!(service_of_type(t).map(|s| s.name), Some("CloudWatch Logs"));
        let t = "aws_sdk_cloudwatch::operation::describe_alarms::DescribeAlarmsError";
        assert_eq!(service_of_type(t).map(|s| s.name), Some("CloudWatch"));
        assert!(service_of_type("std::io::Error").is_none());
    }

    #[test]
    fn the_default_endpoint_is_named_once_the_region_is_known() {
        let f = classify(&raw("DescribeTrails", "CloudTrail", None, None, DNS_CHAIN))
            .at(Some("111122223333"), Some("eu-west-1"));
        assert!(
            f.hint()
                .is_some_and(|h| h.contains("cloudtrail.eu-west-1.amazonaws.com")),
            "{f}"
        );
    }

    #[test]
    fn every_grant_principal_is_a_hub_policy_target() {
        // The hint names `hub policy --for <principal>`: each must be accepted by it.
        for p in iam::Principal::ALL {
            assert_eq!(iam::Principal::parse(p.as_str()), Some(p));
        }
    }
}
