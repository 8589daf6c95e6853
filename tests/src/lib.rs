//! The orgwatch test bed: a local AWS emulator (moto in server mode) per test, and
//! emulated organisations built in it.
//!
//! Nothing here mocks orgwatch code: tests run the real library and binaries against
//! the emulator on a loopback port. See `../shared/EMULATOR.md` in the steering repo for
//! what the emulator does and does not do.
//!
//! The emulator is installed into `<workspace>/.venv` by `scripts/test` (pinned
//! `moto[server]==5.2.5`) and started through `scripts/lib/moto-server.py`, which closes the
//! gaps it names where moto does not model AWS; `ORGWATCH_MOTO_SERVER` may name another
//! `moto_server` executable.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shared::aws::{AwsOptions, ClientFactory};

pub mod cloudwatch;

/// The loopback names, for `NO_PROXY`.
pub const LOOPBACK: &str = "127.0.0.1,localhost,::1";
pub mod demo;
pub mod proxy;
pub mod watch;

/// Credentials the emulator maps to its management account, 123456789012.
pub const TEST_ACCESS_KEY: &str = "testing";
/// Secret of [`TEST_ACCESS_KEY`].
pub const TEST_SECRET_KEY: &str = "testing";
/// The account static credentials belong to in the emulator.
pub const MANAGEMENT_ACCOUNT: &str = "123456789012";
/// The default region of the test bed.
pub const REGION: &str = "us-east-1";

/// Errors of the test bed, with what to do about them.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error(
        "the AWS emulator is not installed at {0}: run scripts/test (it creates .venv with moto[server]==5.2.5) or set ORGWATCH_MOTO_SERVER"
    )]
    NotInstalled(PathBuf),
    #[error("cannot start the AWS emulator: {0}")]
    Spawn(std::io::Error),
    #[error("the AWS emulator exited before answering ({status}); its log: {log}")]
    Exited { status: String, log: String },
    #[error("the AWS emulator did not answer on {addr} within {secs}s; its log: {log}")]
    Timeout {
        addr: SocketAddr,
        secs: u64,
        log: String,
    },
    #[error("emulator call failed: {0}")]
    Aws(String),
}

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(PathBuf::from).unwrap_or(here)
}

/// The emulator's command: `ORGWATCH_MOTO_SERVER` if set, else moto's server from `.venv`
/// through `scripts/lib/moto-server.py`, which closes a gap where moto does not model AWS
/// (it names each).
fn moto_server_command() -> (PathBuf, Vec<PathBuf>) {
    match std::env::var_os("ORGWATCH_MOTO_SERVER") {
        Some(p) => (PathBuf::from(p), Vec::new()),
        None => (
            workspace_root().join(".venv/bin/python"),
            vec![workspace_root().join("scripts/lib/moto-server.py")],
        ),
    }
}

fn free_loopback_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// Options for starting an emulator.
#[derive(Clone, Debug, Default)]
pub struct EmulatorOptions {
    /// Turn on IAM checks (trust policies, external IDs) after this many requests
    /// (`INITIAL_NO_AUTH_ACTION_COUNT`). `None`: never checked.
    pub auth_after_requests: Option<u32>,
}

/// A running moto server on a loopback port, killed (by pid) when dropped.
///
/// Each test starts its own, so tests never see each other's resources. On Linux the server
/// also dies with the thread that started it (`PR_SET_PDEATHSIG`), so a test binary killed
/// by a signal leaves nothing behind.
#[derive(Debug)]
pub struct Emulator {
    child: Child,
    addr: SocketAddr,
    url: String,
    log: PathBuf,
}

impl Emulator {
    /// Starts an emulator with default options and waits until it answers.
    pub fn start() -> Result<Emulator, HarnessError> {
        Emulator::start_with(&EmulatorOptions::default())
    }

    /// Starts an emulator and waits until it answers. Retries on a port race.
    pub fn start_with(options: &EmulatorOptions) -> Result<Emulator, HarnessError> {
        let mut last = None;
        for _ in 0..3 {
            match Emulator::try_start(options) {
                Ok(e) => return Ok(e),
                Err(e @ HarnessError::NotInstalled(_)) => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(HarnessError::Aws("no attempt made".into())))
    }

    fn try_start(options: &EmulatorOptions) -> Result<Emulator, HarnessError> {
        let (program, script) = moto_server_command();
        if !program.exists() {
            return Err(HarnessError::NotInstalled(program));
        }
        let port = free_loopback_port().map_err(HarnessError::Spawn)?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let log = std::env::temp_dir().join(format!("orgwatch-moto-{port}.log"));
        let log_file = std::fs::File::create(&log).map_err(HarnessError::Spawn)?;
        let log_err = log_file.try_clone().map_err(HarnessError::Spawn)?;
        let mut cmd = Command::new(&program);
        cmd.args(&script)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .env("AWS_ACCESS_KEY_ID", TEST_ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", TEST_SECRET_KEY)
            .env("AWS_DEFAULT_REGION", REGION)
            .env("AWS_EC2_METADATA_DISABLED", "true");
        if let Some(n) = options.auth_after_requests {
            cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", n.to_string());
        }
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::process::CommandExt;
            // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().map_err(HarnessError::Spawn)?;
        let mut emulator = Emulator {
            child,
            addr,
            url: format!("http://127.0.0.1:{port}"),
            log,
        };
        emulator.wait_until_ready(Duration::from_secs(60))?;
        Ok(emulator)
    }

    fn wait_until_ready(&mut self, limit: Duration) -> Result<(), HarnessError> {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(HarnessError::Exited {
                    status: status.to_string(),
                    log: self.log_tail(),
                });
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if started.elapsed() > limit {
                return Err(HarnessError::Timeout {
                    addr: self.addr,
                    secs: limit.as_secs(),
                    log: self.log_tail(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last 2,000 bytes of the emulator's own log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(2000);
        text.get(start..).unwrap_or_default().to_string()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The environment a child process (`hub`, `agent`) needs to reach this emulator
    /// through the standard AWS variables, with the management account's credentials.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.url.clone()),
            ("AWS_ACCESS_KEY_ID", TEST_ACCESS_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", TEST_SECRET_KEY.to_string()),
            ("AWS_REGION", REGION.to_string()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
            ("AWS_CONFIG_FILE", "/dev/null".to_string()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".to_string()),
            // The binaries honour the proxy variables; a machine's own proxy must not carry
            // the loopback traffic of the tests (a test of the proxy sets its own).
            ("NO_PROXY", LOOPBACK.to_string()),
            ("no_proxy", LOOPBACK.to_string()),
        ]
    }

    /// Options for a [`ClientFactory`] that reaches this emulator with the management
    /// account's credentials.
    pub fn aws_options(&self) -> AwsOptions {
        AwsOptions {
            region: Some(REGION.to_string()),
            endpoint_url: Some(self.url.clone()),
            static_credentials: Some((TEST_ACCESS_KEY.to_string(), TEST_SECRET_KEY.to_string())),
            ..AwsOptions::default()
        }
    }

    /// A client factory for this emulator (management account credentials).
    pub async fn factory(&self) -> Result<ClientFactory, HarnessError> {
        ClientFactory::new(self.aws_options())
            .await
            .map_err(|e| HarnessError::Aws(e.to_string()))
    }

    /// With `auth_after_requests` set: spends the emulator's remaining unchecked requests
    /// (harmless GetCallerIdentity calls with the static credentials) until it checks IAM,
    /// which the static credentials fail (they are no identity then). Tests that need the
    /// checks on from a given point call this instead of counting requests.
    pub async fn wait_until_checking(&self) -> Result<(), HarnessError> {
        let factory = self.factory().await?;
        let sts = factory.home().sts();
        for _ in 0..2_000 {
            if sts.get_caller_identity().send().await.is_err() {
                return Ok(());
            }
        }
        Err(HarnessError::Aws(
            "the emulator still answers unchecked after 2,000 requests: was it started with auth_after_requests?".into(),
        ))
    }

    /// Creates an organisation (all features) with `members` member accounts.
    pub async fn create_org(&self, members: usize) -> Result<Org, HarnessError> {
        let factory = self.factory().await?;
        create_org(&factory, members).await
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// An emulated organisation.
#[derive(Clone, Debug)]
pub struct Org {
    /// The organisation id (`o-...`).
    pub id: String,
    /// The management account (the emulator's static-credentials account).
    pub management: String,
    /// Member account ids, in creation order.
    pub members: Vec<String>,
}

fn aws_err(e: impl std::error::Error) -> HarnessError {
    HarnessError::Aws(aws_smithy_types_display(&e))
}

fn aws_smithy_types_display(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        text.push_str(": ");
        text.push_str(&s.to_string());
        cur = s.source();
    }
    text
}

/// Creates an organisation with `members` member accounts through `factory`'s home
/// (management) credentials. Every member gets `OrganizationAccountAccessRole`, and every
/// account (the management account too) the member stack ([`deploy_member_stack`]).
pub async fn create_org(factory: &ClientFactory, members: usize) -> Result<Org, HarnessError> {
    use aws_sdk_organizations::types::OrganizationFeatureSet;
    let orgs = factory.home().organizations();
    let org = orgs
        .create_organization()
        .feature_set(OrganizationFeatureSet::All)
        .send()
        .await
        .map_err(aws_err)?;
    let org = org
        .organization
        .ok_or_else(|| HarnessError::Aws("CreateOrganization returned no organization".into()))?;
    let mut ids = Vec::with_capacity(members);
    for i in 0..members {
        let out = orgs
            .create_account()
            .account_name(format!("member-{i}"))
            .email(format!("member-{i}@example.com"))
            .send()
            .await
            .map_err(aws_err)?;
        let id = out
            .create_account_status
            .and_then(|s| s.account_id)
            .ok_or_else(|| HarnessError::Aws("CreateAccount returned no account id".into()))?;
        ids.push(id);
    }
    let org = Org {
        id: org.id.unwrap_or_default(),
        management: org.master_account_id.unwrap_or_default(),
        members: ids,
    };
    if let Some(endpoint) = factory.options().endpoint_url.as_deref() {
        let mut accounts = vec![org.management.clone()];
        accounts.extend(org.members.iter().cloned());
        deploy_member_stack(endpoint, &org.management, &org.management, &accounts)?;
    }
    Ok(org)
}

/// Deploys the member stack (`infra/cloudformation/member-role.yaml`: the member role, the
/// agent's reader role and the service roles CloudTrail and EventBridge assume) into
/// `accounts` of the emulator at `endpoint`, as the StackSet and the management account's
/// stack of a real organisation do. The hub never creates these roles.
pub fn deploy_member_stack(
    endpoint: &str,
    hub_account: &str,
    central_account: &str,
    accounts: &[String],
) -> Result<(), HarnessError> {
    let python = workspace_root().join(".venv/bin/python");
    let out = Command::new(&python)
        .arg(workspace_root().join("scripts/lib/deploy-member-stack.py"))
        .args([endpoint, REGION, hub_account, central_account])
        .args(accounts)
        .env("AWS_ACCESS_KEY_ID", TEST_ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", TEST_SECRET_KEY)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| HarnessError::Aws(format!("cannot run {}: {e}", python.display())))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(HarnessError::Aws(format!(
            "deploying the member stack failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

/// The path of a workspace binary (`hub`, `agent`), built once per test process with the
/// same cargo and profile as the tests, so end-to-end tests never run a stale binary.
pub fn bin(name: &str) -> PathBuf {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static BUILT: OnceLock<Mutex<HashMap<String, Result<PathBuf, String>>>> = OnceLock::new();
    let built = BUILT.get_or_init(|| Mutex::new(HashMap::new()));
    let mut built = match built.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    let result = built
        .entry(name.to_string())
        .or_insert_with(|| build_bin(name))
        .clone();
    match result {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

fn build_bin(name: &str) -> Result<PathBuf, String> {
    let root = workspace_root();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    // `cargo test` runs tests with variables describing the test's own package. Some build
    // scripts (ring's) record CARGO_MANIFEST_DIR, so seeing it here marks them dirty and
    // rebuilds the whole AWS SDK chain (about 4 minutes) — once here, and once more at the
    // next plain cargo command. Build with the environment a shell would have.
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if key == "OUT_DIR"
            || key == "CARGO_MANIFEST_DIR"
            || key == "CARGO_MANIFEST_PATH"
            || key == "CARGO_CRATE_NAME"
            || key == "CARGO_PRIMARY_PACKAGE"
            || key == "CARGO_TARGET_TMPDIR"
            || key == "CARGO_RUSTC_CURRENT_DIR"
            || key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_BIN_")
        {
            command.env_remove(key);
        }
    }
    let status = command
        .current_dir(&root)
        // The same selection `cargo test --workspace` builds: another selection unifies
        // dependency features differently and would rebuild the AWS SDK crates each time.
        .args(["build", "--quiet", "--workspace", "--bins", "--tests"])
        .status()
        .map_err(|e| format!("cannot run cargo to build {name}: {e}"))?;
    if !status.success() {
        return Err(format!("building {name} failed ({status})"));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let path = target.join("debug").join(name);
    if path.exists() {
        Ok(path)
    } else {
        Err(format!("{} was not built", path.display()))
    }
}

/// One request a [`Receiver`] got.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The status the receiver answered with.
    pub status: u16,
    /// When it arrived.
    pub at: std::time::Instant,
}

impl Received {
    /// A header's value (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// A minimal HTTP/1.1 server on a loopback port that records every request and answers
/// with a status the test controls (e.g. 500 to play a destination outage). It speaks just
/// enough HTTP for webhook deliveries: keep-alive, `Content-Length` bodies.
#[derive(Debug)]
pub struct Receiver {
    addr: SocketAddr,
    requests: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
    status: std::sync::Arc<std::sync::atomic::AtomicU16>,
    /// `Retry-After` seconds sent with 429 and 503 answers (0: none).
    retry_after: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Starts a receiver answering 200.
    pub async fn start() -> std::io::Result<Receiver> {
        use std::sync::atomic::AtomicU16;
        use std::sync::{Arc, Mutex};
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(AtomicU16::new(200));
        let retry_after = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (reqs, st, ra) = (requests.clone(), status.clone(), retry_after.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_connection(
                    stream,
                    reqs.clone(),
                    st.clone(),
                    ra.clone(),
                ));
            }
        });
        Ok(Receiver {
            addr,
            requests,
            status,
            retry_after,
            task,
        })
    }

    /// `http://127.0.0.1:PORT<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answer every following request with `status`.
    pub fn set_status(&self, status: u16) {
        self.status
            .store(status, std::sync::atomic::Ordering::SeqCst);
    }

    /// Send `Retry-After: secs` with every following 429 or 503 answer (0: none).
    pub fn set_retry_after(&self, secs: u64) {
        self.retry_after
            .store(secs, std::sync::atomic::Ordering::SeqCst);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Received> {
        match self.requests.lock() {
            Ok(r) => r.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Requests answered with a 2xx status.
    pub fn accepted(&self) -> Vec<Received> {
        self.requests()
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_connection(
    mut stream: tokio::net::TcpStream,
    requests: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
    status: std::sync::Arc<std::sync::atomic::AtomicU16>,
    retry_after: std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf: Vec<u8> = Vec::new();
    loop {
        // Read the head.
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            let mut chunk = [0u8; 8192];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap_or_default().split(' ');
        let method = first.next().unwrap_or_default().to_string();
        let path = first.next().unwrap_or_default().to_string();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let body_start = head_end + 4;
        while buf.len() < body_start + len {
            let mut chunk = [0u8; 8192];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = buf[body_start..body_start + len].to_vec();
        buf.drain(..body_start + len);
        let code = status.load(std::sync::atomic::Ordering::SeqCst);
        if let Ok(mut r) = requests.lock() {
            r.push(Received {
                method,
                path,
                headers,
                body,
                status: code,
                at: std::time::Instant::now(),
            });
        }
        let wait = retry_after.load(std::sync::atomic::Ordering::SeqCst);
        let retry = if wait > 0 && (code == 429 || code == 503) {
            format!("retry-after: {wait}\r\n")
        } else {
            String::new()
        };
        let reply = format!(
            "HTTP/1.1 {code} X\r\ncontent-length: 0\r\n{retry}connection: keep-alive\r\n\r\n"
        );
        if stream.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// The resources a `hub` run's JSON report manages: created, updated, adopted or already
/// as declared, over every result (what calls per resource are counted against).
pub fn managed_resources(report: &serde_json::Value) -> u64 {
    report["results"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            ["created", "updated", "unchanged", "adopted"]
                .iter()
                .map(|k| r[*k].as_u64().unwrap_or(0))
                .sum::<u64>()
        })
        .sum()
}

/// Reads a call log (`ORGWATCH_CALL_LOG`: `program scope service operation`, tab-separated):
/// the (program, scope) pairs that called, and every line whose operation no policy of that
/// identity grants (`shared::iam::covers`). The emulator enforces no IAM, so this is what
/// stands in for AWS refusing a call the generated policy does not allow.
pub fn ungranted_calls(log: &str) -> (std::collections::BTreeSet<(String, String)>, Vec<String>) {
    let mut seen = std::collections::BTreeSet::new();
    let mut ungranted = Vec::new();
    for line in log.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let [program, scope, service, operation] = f[..] else {
            ungranted.push(format!("malformed call log line {line:?}"));
            continue;
        };
        seen.insert((program.to_string(), scope.to_string()));
        let principal = shared::iam::principal_of(program, scope);
        if !principal.is_some_and(|p| shared::iam::covers(p, service, operation)) {
            ungranted.push(line.to_string());
        }
    }
    (seen, ungranted)
}

/// The first target of EventBridge rule `rule` on the default bus of `c`'s account and region.
pub async fn first_target(
    c: &shared::aws::Clients,
    rule: &str,
) -> Option<aws_sdk_eventbridge::types::Target> {
    c.eventbridge()
        .list_targets_by_rule()
        .rule(rule)
        .send()
        .await
        .ok()
        .and_then(|t| t.targets().first().cloned())
}

/// Puts `target` back on `rule` with `role_arn` as its role (same id and ARN), as someone
/// swapping the role of a forwarding target would.
pub async fn swap_target_role(
    c: &shared::aws::Clients,
    rule: &str,
    target: &aws_sdk_eventbridge::types::Target,
    role_arn: &str,
) {
    let swapped = aws_sdk_eventbridge::types::Target::builder()
        .id(target.id())
        .arn(target.arn())
        .role_arn(role_arn)
        .build()
        .expect("target");
    c.eventbridge()
        .put_targets()
        .rule(rule)
        .targets(swapped)
        .send()
        .await
        .expect("swap the role");
}
