//! `--logs_to_slack` end to end: the `fastlane` binary posts its error lines and the run's
//! summary to a Slack incoming webhook, here a local receiver (`tests/aws/slack_receiver.py`)
//! that records every request and answers as Slack does (`ok`, `no_service`, 429 with
//! `Retry-After`, 500).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fastlane_tests::{fastlane_with_env, test_plugin_dir};
use serde_json::{Value, json};

/// The receiver, stopped when dropped.
struct Receiver {
    child: Child,
    port: u16,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Receiver {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port_file = dir.path().join("port");
        let out = dir.path().join("posts.jsonl");
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("aws/slack_receiver.py");
        let child = Command::new("python3")
            .arg(&script)
            .arg("--port-file")
            .arg(&port_file)
            .arg("--out")
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the Slack receiver");
        let deadline = Instant::now() + Duration::from_secs(20);
        let port = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file)
                && let Ok(port) = text.trim().parse()
            {
                break port;
            }
            assert!(
                Instant::now() < deadline,
                "the Slack receiver did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        Self {
            child,
            port,
            out,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/services/T000/B000/{path}", self.port)
    }

    /// The requests received on paths ending with `path`.
    fn posts(&self, path: &str) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("json line"))
            .filter(|p| p["path"].as_str().is_some_and(|p| p.ends_with(path)))
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_json(path: &Path, v: &Value) {
    std::fs::write(path, serde_json::to_string_pretty(v).expect("json")).expect("write");
}

fn text(post: &Value) -> &str {
    post["body"]["text"].as_str().unwrap_or_default()
}

#[test]
fn a_failed_run_posts_its_errors_and_summary() {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let plugins = test_plugin_dir(&["misbehave"]);
    write_json(
        &dir.path().join("p.json"),
        &json!({"name": "nightly <orders>",
                "replication_mode": "FULL_TABLE",
                "source": {"generate": {"rows": 10000, "batch_size": 1000}},
                "target": {"fail_write": {"after_batches": 2}},
                "monitoring": {"enabled": false}}),
    );
    let url = receiver.url("hook-secret-7f3a");
    let out = fastlane_with_env(
        dir.path(),
        &[
            "--plugin-dir",
            plugins.path().to_str().expect("utf-8"),
            "--config=p.json",
            &format!("--logs_to_slack={url}"),
        ],
        &[],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    let posts = receiver.posts("/hook-secret-7f3a");
    assert_eq!(posts.len(), 2, "{posts:#?}");
    let errors = text(&posts[0]);
    assert!(
        errors.starts_with(":rotating_light: *nightly &lt;orders&gt;* run `"),
        "{errors}"
    );
    assert!(errors.contains("disk full (deliberate)"), "{errors}");
    assert!(errors.contains("*ERROR*"), "{errors}");
    let summary = text(&posts[1]);
    assert!(
        summary.starts_with(":x: *nightly &lt;orders&gt;* run `") && summary.contains("failed"),
        "{summary}"
    );
    assert!(summary.contains("disk full (deliberate)"), "{summary}");
    assert_eq!(posts[1]["body"]["username"], "fastlane");
    assert_eq!(posts[1]["content_type"], "application/json");
    // The webhook URL is a secret: it is never printed.
    assert!(!out.stderr.contains("hook-secret-7f3a"), "{}", out.stderr);
    assert!(!out.stdout.contains("hook-secret-7f3a"), "{}", out.stdout);
}

#[test]
fn a_good_run_posts_only_its_summary_with_the_configured_name() {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let plugins = test_plugin_dir(&["misbehave"]);
    write_json(
        &dir.path().join("p.json"),
        &json!({"replication_mode": "FULL_TABLE",
                "source": {"generate": {"rows": 5000}},
                "target": {"discard": {}},
                "logs": {"error_log_to_slack": true,
                         "slack": {"webhook_url": "${HOOK}", "username": "etl bot",
                                   "channel": "#data", "icon_emoji": ":truck:"}},
                "monitoring": {"enabled": false}}),
    );
    let url = receiver.url("ratelimit");
    let out = fastlane_with_env(
        dir.path(),
        &[
            "--plugin-dir",
            plugins.path().to_str().expect("utf-8"),
            "--config=p.json",
        ],
        &[("HOOK", url.as_str())],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    // The first answer is 429 with Retry-After: 1; the message goes again and gets through.
    let posts = receiver.posts("/ratelimit");
    assert_eq!(posts.len(), 2, "{posts:#?}");
    assert_eq!(posts[0]["status"], 429);
    assert_eq!(posts[1]["status"], 200);
    assert_eq!(posts[0]["body"], posts[1]["body"]);
    let summary = text(&posts[1]);
    assert!(
        summary.starts_with(":white_check_mark: *") && summary.contains("succeeded: 5,000 rows"),
        "{summary}"
    );
    assert_eq!(posts[1]["body"]["username"], "etl bot");
    assert_eq!(posts[1]["body"]["channel"], "#data");
    assert_eq!(posts[1]["body"]["icon_emoji"], ":truck:");
}

#[test]
fn slack_answers_do_not_change_the_run_and_a_missing_url_is_a_config_error() {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let plugins = test_plugin_dir(&["misbehave"]);
    let plugin_dir = plugins.path().to_str().expect("utf-8");
    write_json(
        &dir.path().join("p.json"),
        &json!({"replication_mode": "FULL_TABLE",
                "source": {"generate": {"rows": 100}},
                "target": {"discard": {}},
                "monitoring": {"enabled": false}}),
    );
    // A refused webhook (404 no_service): a warning, the run still succeeds.
    let out = fastlane_with_env(
        dir.path(),
        &[
            "--plugin-dir",
            plugin_dir,
            "--config=p.json",
            "--logs_to_slack",
        ],
        &[("FASTLANE_SLACK_WEBHOOK_URL", receiver.url("fail").as_str())],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("no_service"), "{}", out.stderr);
    assert!(!out.stderr.contains("T000/B000"), "{}", out.stderr);
    assert_eq!(receiver.posts("/fail").len(), 1, "no retry of a 404");

    // A server error is retried.
    let out = fastlane_with_env(
        dir.path(),
        &[
            "--plugin-dir",
            plugin_dir,
            "--config=p.json",
            &format!("--logs_to_slack={}", receiver.url("flaky")),
        ],
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let flaky = receiver.posts("/flaky");
    assert_eq!(
        flaky
            .iter()
            .map(|p| p["status"].as_u64())
            .collect::<Vec<_>>(),
        [Some(500), Some(200)]
    );

    // No URL anywhere: a configuration error naming where to put one; nothing runs.
    let out = fastlane_with_env(
        dir.path(),
        &[
            "--plugin-dir",
            plugin_dir,
            "--config=p.json",
            "--logs_to_slack",
        ],
        &[("FASTLANE_SLACK_WEBHOOK_URL", "")],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("logs.slack.webhook_url"),
        "{}",
        out.stderr
    );

    // A bad setting in the section is listed with its path.
    write_json(
        &dir.path().join("q.json"),
        &json!({"replication_mode": "FULL_TABLE",
                "source": {"generate": {"rows": 100}},
                "target": {"discard": {}},
                "logs": {"slack": {"webhook_url": "hooks.slack.com/x", "level": "loud",
                                   "max_messages_per_minute": 0}}}),
    );
    let out = fastlane_with_env(
        dir.path(),
        &["--plugin-dir", plugin_dir, "--config=q.json"],
        &[],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    for path in [
        "logs.slack.webhook_url",
        "logs.slack.level",
        "logs.slack.max_messages_per_minute",
    ] {
        assert!(
            out.stderr.contains(path),
            "{path} missing from {}",
            out.stderr
        );
    }
}
