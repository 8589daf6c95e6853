//! `hub status --output csv|ocsf|html`: the compliance reports of a real organisation on
//! the emulator, after one member's alarm was deleted. The OCSF findings pass
//! py-ocsf-models (Prowler's OCSF models, `scripts/lib/ocsf-check.py`); the HTML report is
//! opened in headless Chromium (Debian's package, which `scripts/test` installs): the DOM
//! it builds has one row per account, and its screenshot shows the heat map's colours.

use std::path::{Path, PathBuf};
use std::process::Command;

use orgwatch_tests::{Emulator, bin, workspace_root};

use super::hub::{hub, tempfile_dir, write_config};

/// The colours of a passing and a failing cell (compliance/html.rs).
const PASS_RGB: [u8; 3] = [0xc8, 0xe6, 0xc9];
const FAIL_RGB: [u8; 3] = [0xef, 0x9a, 0x9a];

fn status(emu: &Emulator, config: &Path, output: &str) -> (i32, String, String) {
    let out = Command::new(bin("hub"))
        .args(["status", "--output", output, "--config"])
        .arg(config)
        .envs(emu.env())
        .output()
        .expect("run hub");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn chromium() -> PathBuf {
    let path = std::env::var_os("ORGWATCH_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/test, which installs Debian's chromium (or set ORGWATCH_CHROMIUM)",
        path.display()
    );
    path
}

/// Headless Chromium on a local file, with the flags a closed network needs (no
/// background connections) and a profile of its own.
fn browse(profile: &Path, args: &[String]) -> std::process::Output {
    Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("run chromium")
}

/// Pixels of `png` within 6 of `rgb` on every channel.
fn pixels_near(png_path: &Path, rgb: [u8; 3]) -> usize {
    let file = std::fs::File::open(png_path).expect("screenshot");
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().expect("png header");
    let mut buf = vec![0; reader.output_buffer_size().expect("png size")];
    let info = reader.next_frame(&mut buf).expect("png frame");
    let channels = info.color_type.samples();
    assert!(channels >= 3, "{:?}", info.color_type);
    buf[..info.buffer_size()]
        .chunks(channels)
        .filter(|p| p.iter().zip(rgb).all(|(a, b)| a.abs_diff(b) <= 6))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_csv_ocsf_and_an_html_report_a_browser_renders() {
    let emu = Emulator::start().expect("emulator");
    let org = emu.create_org(2).await.expect("organisation");
    let dir = tempfile_dir::Dir::new();
    let config = write_config(dir.path(), "trail");
    let enroll = hub(&emu, &config, &["enroll"]);
    assert_eq!(enroll.code, 0, "{:#}\n{}", enroll.json, enroll.stderr);
    let rules = enroll.json["rules"].as_array().expect("rules").len();
    assert!(rules >= 16, "{}", enroll.json["rules"]);

    // Member 0 loses cis-4.3's alarm.
    let factory = emu.factory().await.expect("factory");
    let broken = &org.members[0];
    factory
        .for_account(broken)
        .await
        .expect("member")
        .cloudwatch()
        .delete_alarms()
        .alarm_names("orgwatch-cis-4.3")
        .send()
        .await
        .expect("delete alarm");
    // Member 1's cis-4.4 filter is changed (deleted and put back: the emulator's
    // PutMetricFilter adds a duplicate where AWS replaces).
    let other = &org.members[1];
    let logs = factory.for_account(other).await.expect("member").logs();
    let filter = logs
        .describe_metric_filters()
        .log_group_name(shared::naming::LOG_GROUP)
        .filter_name_prefix("orgwatch-cis-4.4")
        .send()
        .await
        .expect("filters")
        .metric_filters()
        .first()
        .cloned()
        .expect("cis-4.4 filter");
    logs.delete_metric_filter()
        .log_group_name(shared::naming::LOG_GROUP)
        .filter_name("orgwatch-cis-4.4")
        .send()
        .await
        .expect("delete filter");
    logs.put_metric_filter()
        .log_group_name(shared::naming::LOG_GROUP)
        .filter_name("orgwatch-cis-4.4")
        .filter_pattern("{ $.eventName = \"Nothing\" }")
        .set_metric_transformations(Some(filter.metric_transformations().to_vec()))
        .send()
        .await
        .expect("change filter");
    let accounts = org.members.len() + 1;
    let keep = std::env::var_os("ORGWATCH_KEEP_REPORT").map(PathBuf::from);

    // The plan names each changed field with its old and new value (Terraform's ~).
    let plan = Command::new(bin("hub"))
        .args(["plan", "--config"])
        .arg(&config)
        .envs(emu.env())
        .output()
        .expect("run hub plan");
    let plan_text = String::from_utf8_lossy(&plan.stdout).to_string();
    assert!(
        plan_text.contains(&format!(
            "  {other} us-east-1 metric-filter orgwatch-cis-4.4: would update pattern\n      ~ pattern:\n          - {{ $.eventName = \"Nothing\" }}\n          + {}\n",
            filter.filter_pattern().unwrap_or_default()
        )),
        "{plan_text}"
    );
    assert!(
        plan_text.contains(&format!(
            "  {broken} us-east-1 alarm orgwatch-cis-4.3: would create\n"
        )),
        "{plan_text}"
    );
    assert!(
        plan_text.contains("Plan: 1 to create, 1 to update, 0 to delete."),
        "{plan_text}"
    );

    // CSV: a header, then one row per account and rule (trail delivery: the home region).
    let (code, csv, stderr) = status(&emu, &config, "csv");
    assert_eq!(code, 3, "drift exits 3 whatever the format: {stderr}");
    let rows: Vec<&str> = csv.split("\r\n").filter(|l| l.starts_with("20")).collect();
    assert_eq!(rows.len(), accounts * rules, "{csv}");
    let fail: Vec<&&str> = rows.iter().filter(|r| r.contains(",FAIL,")).collect();
    assert_eq!(fail.len(), 2, "{fail:#?}");
    assert!(
        fail.iter()
            .any(|r| r.contains(&format!(",{other},us-east-1,"))
                && r.contains("metric-filter orgwatch-cis-4.4 differs (pattern)")),
        "{fail:#?}"
    );
    let fail: Vec<&&str> = fail
        .into_iter()
        .filter(|r| r.contains(broken.as_str()))
        .collect();
    assert!(
        fail[0].contains(&format!(
            ",{broken},us-east-1,CIS AWS Foundations Benchmark v3.0.0,4.3,cis-4.3,"
        )),
        "{}",
        fail[0]
    );
    assert!(fail[0].contains("alarm orgwatch-cis-4.3 is missing"));

    // OCSF: valid Compliance Findings, the failing one with status Fail.
    let (code, ocsf, stderr) = status(&emu, &config, "ocsf");
    assert_eq!(code, 3, "{stderr}");
    let path = dir.path().join("findings.ocsf.json");
    std::fs::write(&path, &ocsf).expect("write findings");
    let check = Command::new(workspace_root().join(".venv/bin/python"))
        .arg(workspace_root().join("scripts/lib/ocsf-check.py"))
        .arg(&path)
        .output()
        .expect("run ocsf-check (scripts/test installs py-ocsf-models into .venv)");
    assert!(
        check.status.success(),
        "OCSF findings invalid:\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let findings: serde_json::Value = serde_json::from_str(&ocsf).expect("json");
    let failing: Vec<&serde_json::Value> = findings
        .as_array()
        .expect("array")
        .iter()
        .filter(|f| f["compliance"]["status_id"] == 3)
        .collect();
    assert_eq!(failing.len(), 2);
    assert!(
        failing
            .iter()
            .any(|f| f["cloud"]["account"]["uid"] == broken.as_str()
                && f["metadata"]["event_code"] == "cis-4.3")
    );
    assert_eq!(failing[0]["cloud"]["org"]["uid"], org.id.as_str());

    // HTML, rendered by a real browser.
    let (code, html, stderr) = status(&emu, &config, "html");
    assert_eq!(code, 3, "{stderr}");
    let page = dir.path().join("coverage.html");
    std::fs::write(&page, &html).expect("write report");
    let url = format!("file://{}", page.display());
    let dom = browse(
        &dir.path().join("profile-dom"),
        &["--dump-dom".into(), url.clone()],
    );
    let dom_text = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.status.success() && dom_text.contains("<table id=\"coverage\">"),
        "chromium built no DOM ({:?}): {}",
        dom.status,
        String::from_utf8_lossy(&dom.stderr)
    );
    assert_eq!(
        dom_text.matches("<tr class=\"account\"").count(),
        accounts,
        "{dom_text}"
    );
    for account in org.members.iter().chain([&org.management]) {
        assert!(
            dom_text.contains(&format!("data-account=\"{account}\"")),
            "{account}"
        );
    }
    assert!(dom_text.contains(&format!(
        "{} of {accounts} accounts fully covered",
        accounts - 2
    )));
    let shot = dir.path().join("coverage.png");
    let out = browse(
        &dir.path().join("profile-shot"),
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1600,1000".into(),
            url,
        ],
    );
    assert!(
        out.status.success() && shot.exists(),
        "no screenshot ({:?}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // Not blank: the passing cells' green covers much of the heat map, the two failing
    // cells' red is there too.
    let (green, red) = (pixels_near(&shot, PASS_RGB), pixels_near(&shot, FAIL_RGB));
    assert!(
        green > 10 * red && red > 400,
        "green {green} px, red {red} px"
    );
    // ORGWATCH_KEEP_REPORT=DIR keeps the screenshot and the plan (README shows both).
    if let Some(keep) = keep {
        let _ = std::fs::create_dir_all(&keep);
        let _ = std::fs::copy(&shot, keep.join("coverage-report.png"));
        let _ = std::fs::write(keep.join("plan.txt"), &plan_text);
    }

    // A compliance format is refused by the other commands, before any AWS call.
    for command in ["plan", "enroll", "doctor"] {
        let out = Command::new(bin("hub"))
            .args([command, "--output", "html", "--config"])
            .arg(&config)
            .envs(emu.env())
            .output()
            .expect("run hub");
        assert_eq!(out.status.code(), Some(2), "{command}");
        assert!(
            String::from_utf8_lossy(&out.stderr)
                .contains("--output html is a compliance report of hub status"),
            "{command}"
        );
    }
}
