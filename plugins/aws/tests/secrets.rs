//! `secret` / `secret_region` in a connector's section, resolved by the `fastlane` command
//! through AWS Secrets Manager (moto's server on loopback): the secret's keys fill the section,
//! and its values appear nowhere else.

mod common;

use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
use common::{S3, endpoint};
use serde_json::json;

fn create_secret(name: &str, value: &str) {
    let config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(Region::new("eu-west-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .build();
    let client = aws_sdk_secretsmanager::Client::from_conf(config);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(
            client
                .create_secret()
                .name(name)
                .secret_string(value)
                .send(),
        )
        .expect("create secret");
}

fn aws_env(store: &std::path::Path) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER", endpoint()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("FASTLANE_STORE", store.display().to_string()),
    ]
}

#[test]
fn a_secret_fills_the_connector_and_stays_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let s3 = S3::new("secrets");
    let name = format!("fastlane/test/{}", s3.bucket);
    // The bucket, prefix and credentials of the target come from the secret; the file names
    // only the secret.
    let distinctive = "sk-fastlane-7f3a9c1e";
    create_secret(
        &name,
        &json!({"bucket": s3.bucket, "prefix": "from-secret", "access_key_id": "test",
                "secret_access_key": distinctive, "engine": "ignored"})
        .to_string(),
    );
    std::fs::write(dir.join("in.csv"), "id,name\n1,a\n2,b\n3,c\n").unwrap();
    std::fs::write(
        dir.join("p.json"),
        json!({
            "name": "secret-fill",
            "replication_mode": "FULL_TABLE",
            "source": {"file": {"path": "in.csv"}},
            "target": {"s3": {"table": "t", "endpoint_url": endpoint(), "region": "us-east-1",
                              "secret": name, "secret_region": "eu-west-1"}}
        })
        .to_string(),
    )
    .unwrap();
    let store = dir.join("monitor.db");
    let env = aws_env(&store);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = fastlane_tests::fastlane_with_env(
        dir,
        &["--target=s3", "--config=p.json", "--logs_to_file=run.log"],
        &env,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let manifests = s3.manifests("from-secret/t");
    assert_eq!(manifests.len(), 1, "published under the secret's prefix");
    assert_eq!(manifests[0]["rows"], 3);

    // The secret's values are nowhere: not in the output, the log file or the store.
    let log = std::fs::read_to_string(dir.join("run.log")).unwrap_or_default();
    // The store's file and its write-ahead log, whichever holds the rows now.
    let mut stored = std::fs::read(&store).expect("the monitoring store");
    stored.extend(std::fs::read(dir.join("monitor.db-wal")).unwrap_or_default());
    for (what, text) in [
        ("stdout", out.stdout.as_bytes()),
        ("stderr", out.stderr.as_bytes()),
        ("log file", log.as_bytes()),
        ("monitoring store", stored.as_slice()),
    ] {
        assert!(
            !text
                .windows(distinctive.len())
                .any(|w| w == distinctive.as_bytes()),
            "the secret leaked into the {what}"
        );
    }
    assert!(
        stored.windows(name.len()).any(|w| w == name.as_bytes()),
        "the store keeps the secret's name"
    );
}

#[test]
fn a_missing_secret_is_a_configuration_problem_with_its_path() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("in.csv"), "id\n1\n").unwrap();
    std::fs::write(
        dir.join("p.json"),
        json!({
            "source": {"file": {"path": "in.csv"}},
            "target": {"s3": {"table": "t", "bucket": "b-1", "secret": "fastlane/no-such-secret"}}
        })
        .to_string(),
    )
    .unwrap();
    let env = aws_env(&dir.join("monitor.db"));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = fastlane_tests::fastlane_with_env(dir, &["--target=s3", "--config=p.json"], &env);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("target.s3.secret: the secret `fastlane/no-such-secret` does not exist"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_secret_that_is_not_a_json_object_is_refused_without_showing_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let name = format!("fastlane/plain-{}", std::process::id());
    create_secret(&name, "hunter2-plain-text");
    std::fs::write(dir.join("in.csv"), "id\n1\n").unwrap();
    std::fs::write(
        dir.join("p.json"),
        json!({
            "source": {"file": {"path": "in.csv", "secret": name, "secret_region": "eu-west-1"}},
            "target": {"file": {"path": "out"}}
        })
        .to_string(),
    )
    .unwrap();
    let env = aws_env(&dir.join("monitor.db"));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = fastlane_tests::fastlane_with_env(dir, &["--config=p.json"], &env);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("source.file.secret:"), "{}", out.stderr);
    assert!(
        out.stderr.contains("is not a JSON object"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("hunter2"), "{}", out.stderr);
}
