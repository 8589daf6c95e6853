//! A generated CloudTrail corpus, deterministic and dependency-free but for serde_json and
//! flate2: records as real trails have them (reads dominate; root, IAM users, assumed roles
//! and services; errors; console sign-ins), and gzip-compressed log files in the central
//! bucket's layout. One generator for the benches and for the test that compares the
//! scanned and the plain replay on "the bench corpus"; included by path
//! (`#[path = ...] mod corpus;`) where it is used, so that no production crate carries it.

#![allow(dead_code)]

use std::io::Write;

use serde_json::{Value, json};

/// xorshift64*: deterministic, dependency-free.
pub struct Rng(pub u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    /// A UUID-shaped id (8-4-4-4-12 hex digits).
    fn uuid(&mut self) -> String {
        let parts = [8, 4, 4, 4, 12].map(|n| self.hex(n));
        parts.join("-")
    }
    fn hex(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b"0123456789abcdef"[self.below(16)]))
            .collect()
    }
}

const REGIONS: &[&str] = &[
    "us-east-1",
    "us-east-1",
    "us-east-1",
    "us-west-2",
    "eu-west-1",
    "eu-central-1",
    "ap-southeast-2",
    "ap-northeast-1",
];
const ACCOUNTS: &[&str] = &[
    "111122223333",
    "444455556666",
    "777788889999",
    "123456789012",
    "210987654321",
];

/// (eventSource, eventName, readOnly); reads dominate as in real trails.
const CALLS: &[(&str, &str, bool)] = &[
    ("ec2.amazonaws.com", "DescribeInstances", true),
    ("ec2.amazonaws.com", "DescribeInstances", true),
    ("ec2.amazonaws.com", "DescribeSecurityGroups", true),
    ("ec2.amazonaws.com", "DescribeVpcs", true),
    ("ec2.amazonaws.com", "DescribeRouteTables", true),
    ("ec2.amazonaws.com", "RunInstances", false),
    ("ec2.amazonaws.com", "AuthorizeSecurityGroupIngress", false),
    ("ec2.amazonaws.com", "CreateRoute", false),
    ("ec2.amazonaws.com", "CreateTags", false),
    ("s3.amazonaws.com", "GetBucketPolicy", true),
    ("s3.amazonaws.com", "ListBuckets", true),
    ("s3.amazonaws.com", "GetBucketLocation", true),
    ("s3.amazonaws.com", "PutBucketPolicy", false),
    ("s3.amazonaws.com", "HeadBucket", true),
    ("sts.amazonaws.com", "AssumeRole", false),
    ("sts.amazonaws.com", "AssumeRole", false),
    ("sts.amazonaws.com", "GetCallerIdentity", true),
    ("iam.amazonaws.com", "GetRole", true),
    ("iam.amazonaws.com", "ListRoles", true),
    ("iam.amazonaws.com", "PutRolePolicy", false),
    ("iam.amazonaws.com", "CreateAccessKey", false),
    ("kms.amazonaws.com", "Decrypt", true),
    ("kms.amazonaws.com", "Decrypt", true),
    ("kms.amazonaws.com", "GenerateDataKey", true),
    ("kms.amazonaws.com", "ScheduleKeyDeletion", false),
    ("lambda.amazonaws.com", "Invoke", false),
    ("lambda.amazonaws.com", "GetFunction", true),
    ("dynamodb.amazonaws.com", "DescribeTable", true),
    ("logs.amazonaws.com", "CreateLogStream", false),
    ("logs.amazonaws.com", "DescribeLogGroups", true),
    ("cloudtrail.amazonaws.com", "LookupEvents", true),
    ("cloudtrail.amazonaws.com", "StopLogging", false),
    ("config.amazonaws.com", "PutEvaluations", false),
    ("organizations.amazonaws.com", "DescribeOrganization", true),
    ("organizations.amazonaws.com", "ListAccounts", true),
    ("organizations.amazonaws.com", "CreateAccount", false),
    ("signin.amazonaws.com", "ConsoleLogin", false),
    ("ssm.amazonaws.com", "GetParameter", true),
    ("secretsmanager.amazonaws.com", "GetSecretValue", true),
    ("ecr.amazonaws.com", "GetAuthorizationToken", true),
];

const AGENTS: &[&str] = &[
    "aws-cli/2.15.30 Python/3.11.8 Linux/6.1.79 exe/x86_64.amzn.2023 prompt/off",
    "Boto3/1.34.69 md/Botocore#1.34.69 ua/2.0 os/linux#5.10.213 md/arch#x86_64 lang/python#3.12.2",
    "aws-sdk-go-v2/1.26.1 os/linux lang/go#1.22.2 md/GOOS#linux md/GOARCH#amd64 api/ec2#1.152.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Terraform/1.7.5 (+https://www.terraform.io) terraform-provider-aws/5.43.0",
];

fn identity(rng: &mut Rng, account: &str) -> Value {
    match rng.below(100) {
        0..=1 => json!({"type": "Root", "principalId": account,
            "arn": format!("arn:aws:iam::{account}:root"), "accountId": account}),
        2..=21 => {
            let user = format!("user-{}", rng.below(50));
            json!({"type": "IAMUser", "principalId": format!("AIDA{}", rng.hex(17).to_uppercase()),
                "arn": format!("arn:aws:iam::{account}:user/{user}"), "accountId": account,
                "accessKeyId": format!("AKIA{}", rng.hex(16).to_uppercase()), "userName": user})
        }
        22..=29 => json!({"type": "AWSService", "invokedBy": rng.pick(&[
            "ec2.amazonaws.com", "lambda.amazonaws.com", "config.amazonaws.com",
            "cloudformation.amazonaws.com"])}),
        _ => {
            let role = rng
                .pick(&[
                    "AWSReservedSSO_AdministratorAccess_0123456789abcdef",
                    "github-actions-deploy",
                    "app-runtime",
                    "eks-node-group",
                    "OrganizationAccountAccessRole",
                ])
                .to_string();
            let session = format!("session-{}", rng.hex(8));
            let pid = format!("AROA{}", rng.hex(17).to_uppercase());
            json!({"type": "AssumedRole", "principalId": format!("{pid}:{session}"),
                "arn": format!("arn:aws:sts::{account}:assumed-role/{role}/{session}"),
                "accountId": account, "accessKeyId": format!("ASIA{}", rng.hex(16).to_uppercase()),
                "sessionContext": {
                    "sessionIssuer": {"type": "Role", "principalId": pid,
                        "arn": format!("arn:aws:iam::{account}:role/{role}"),
                        "accountId": account, "userName": role},
                    "attributes": {"creationDate": "2024-05-14T08:02:11Z",
                        "mfaAuthenticated": if rng.chance(20) { "true" } else { "false" }}}})
        }
    }
}

pub fn record(rng: &mut Rng, i: usize) -> Value {
    let account = *rng.pick(ACCOUNTS);
    let (source, name, read_only) = *rng.pick(CALLS);
    let user = identity(rng, account);
    let mut r = json!({
        "eventVersion": "1.09",
        "userIdentity": user,
        "eventTime": format!("2024-05-{:02}T{:02}:{:02}:{:02}Z", 1 + i % 28, rng.below(24), rng.below(60), rng.below(60)),
        "eventSource": source,
        "eventName": name,
        "awsRegion": rng.pick(REGIONS),
        "sourceIPAddress": format!("{}.{}.{}.{}", 1 + rng.below(223), rng.below(256), rng.below(256), rng.below(256)),
        "userAgent": rng.pick(AGENTS),
    });
    let m = r.as_object_mut().expect("object");
    if rng.chance(6) {
        let (code, msg) = *rng.pick(&[
            ("AccessDenied", "Access Denied"),
            (
                "Client.UnauthorizedOperation",
                "You are not authorized to perform this operation.",
            ),
            (
                "AccessDeniedException",
                "User is not authorized to perform this action",
            ),
            ("ThrottlingException", "Rate exceeded"),
            ("ResourceNotFoundException", "Requested resource not found"),
        ]);
        m.insert("errorCode".into(), json!(code));
        m.insert("errorMessage".into(), json!(msg));
    }
    let params = match rng.below(4) {
        0 => Value::Null,
        1 => json!({"maxResults": 50, "filterSet": {}}),
        2 => json!({"roleArn": format!("arn:aws:iam::{account}:role/app-runtime"),
                     "roleSessionName": format!("s-{}", rng.hex(10)), "durationSeconds": 3600}),
        _ => json!({"bucketName": format!("acme-{}", rng.hex(6)), "Host": "s3.amazonaws.com",
                     "tagSpecificationSet": {"items": [{"resourceType": "instance",
                        "tags": [{"key": "team", "value": "payments"}, {"key": "env", "value": "prod"}]}]}}),
    };
    m.insert("requestParameters".into(), params);
    m.insert(
        "responseElements".into(),
        if read_only || rng.chance(50) {
            Value::Null
        } else {
            json!({"requestId": rng.hex(32), "_return": true})
        },
    );
    if name == "ConsoleLogin" {
        m.insert(
            "responseElements".into(),
            json!({"ConsoleLogin": if rng.chance(85) { "Success" } else { "Failure" }}),
        );
        m.insert(
            "additionalEventData".into(),
            json!({"LoginTo": "https://console.aws.amazon.com/console/home",
                "MobileVersion": "No", "MFAUsed": if rng.chance(70) { "Yes" } else { "No" }}),
        );
    }
    m.insert("requestID".into(), json!(rng.uuid()));
    m.insert("eventID".into(), json!(rng.uuid()));
    m.insert("readOnly".into(), json!(read_only));
    m.insert(
        "eventType".into(),
        json!(if name == "ConsoleLogin" {
            "AwsConsoleSignIn"
        } else {
            "AwsApiCall"
        }),
    );
    m.insert("managementEvent".into(), json!(true));
    m.insert("recipientAccountId".into(), json!(account));
    m.insert("eventCategory".into(), json!("Management"));
    m.insert(
        "tlsDetails".into(),
        json!({"tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256",
            "clientProvidedHostHeader": format!("{}.{}", source.trim_end_matches(".amazonaws.com"), "amazonaws.com")}),
    );
    r
}

/// `n` records, the same for the same seed.
pub fn records(n: usize, seed: u64) -> Vec<Value> {
    let mut rng = Rng(seed | 1);
    (0..n).map(|i| record(&mut rng, i)).collect()
}

/// The records as gzip-compressed CloudTrail log files of `per_file` records each, with
/// their keys in the central bucket's layout
/// (`AWSLogs/<org>/<account>/CloudTrail/<region>/YYYY/MM/DD/<account>_CloudTrail_<region>_...json.gz`).
/// Each file holds records of one account, as CloudTrail delivers them.
pub fn log_files(records: &[Value], per_file: usize) -> Vec<(String, Vec<u8>)> {
    records
        .chunks(per_file.max(1))
        .enumerate()
        .map(|(i, chunk)| {
            let first = &chunk[0];
            let account = first["recipientAccountId"].as_str().unwrap_or("111122223333");
            let region = first["awsRegion"].as_str().unwrap_or("us-east-1");
            let day = 1 + i % 28;
            let key = format!(
                "AWSLogs/o-exampleorgid/{account}/CloudTrail/{region}/2024/05/{day:02}/{account}_CloudTrail_{region}_202405{day:02}T0000Z_{i:06}.json.gz"
            );
            let doc = json!({ "Records": chunk }).to_string();
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            let _ = enc.write_all(doc.as_bytes());
            (key, enc.finish().unwrap_or_default())
        })
        .collect()
}
