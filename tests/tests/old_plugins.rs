//! Plugins built for an older release of their ABI: a plugin built against the frozen copy of
//! ABI 1 as first released (`tests/plugins/abi1`, against `tests/plugins/abi1-api`) loads, runs
//! and passes the conformance suite in this host, which has grown ABI 1 since; plugins of
//! another ABI are refused with a sentence naming both versions and what to do.

use std::path::Path;

use fastlane_tests::{fastlane, parquet_folder, test_plugin_dir, test_plugin_lib};
use serde_json::{Value, json};

fn write_json(path: &Path, value: &Value) {
    std::fs::write(path, serde_json::to_vec_pretty(value).expect("json")).expect("write");
}

#[test]
fn a_plugin_built_against_the_first_release_of_abi_1_is_listed_without_new_capabilities() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let plugins = test_plugin_dir(&["abi1"]);
    let out = fastlane(
        tmp.path(),
        &[
            "plugins",
            "list",
            "--json",
            "--plugin-dir",
            plugins.path().to_str().expect("path"),
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let listed: Value = serde_json::from_str(&out.stdout).expect("json");
    let plugin = listed["plugins"]
        .as_array()
        .expect("plugins")
        .iter()
        .find(|p| p["name"] == "abi1")
        .unwrap_or_else(|| panic!("abi1 not listed: {listed:#}"));
    assert_eq!(plugin["abi_version"], 1, "{plugin:#}");
    let components = plugin["components"].as_array().expect("components");
    let ids: Vec<&str> = components
        .iter()
        .map(|c| c["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["numbers", "shout", "lines"], "{plugin:#}");
    for c in components {
        assert_eq!(c["capabilities"], json!([]), "{c:#}");
    }
}

#[test]
fn a_plugin_built_against_the_first_release_of_abi_1_runs_both_ways() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let plugins = test_plugin_dir(&["abi1"]);
    let plugin_dir = plugins.path().to_str().expect("path");

    // Its source and transform into a bundled target, with resume and verification asked
    // for: the old source cannot do either, and the run says so and goes on.
    write_json(
        &dir.join("out.json"),
        &json!({"replication_mode": "FULL_TABLE", "verify": "count",
                "source": {"numbers": {"rows": 5000, "batch_size": 700, "partitions": 2}},
                "transform": {"shout": {}},
                "target": {"file": {"path": "out"}}}),
    );
    let out = fastlane(
        dir,
        &[
            "--plugin-dir",
            plugin_dir,
            "--transform=shout",
            "--config=out.json",
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("source `numbers` cannot resume a run"),
        "{}",
        out.stderr
    );
    let batches = parquet_folder(&dir.join("out"));
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 5000);
    let text = fastlane_tests::conformance::pretty(&batches);
    assert!(text.contains("NUMBER 4999"), "{text}");

    // A bundled source into its target, FULL_TABLE then INCREMENTAL after its offset.
    let lines = dir.join("lines.tsv");
    let into_lines = |mode: &str, rows: i64| {
        write_json(
            &dir.join("in.json"),
            &json!({"replication_mode": mode,
                    "source": {"numbers": {"rows": rows, "replication_key": "id"}},
                    "target": {"lines": {"path": lines, "key": "id"}}}),
        );
        let out = fastlane(dir, &["--plugin-dir", plugin_dir, "--config=in.json"]);
        assert_eq!(out.code, 0, "{out:?}");
        std::fs::read_to_string(&lines).expect("lines")
    };
    let full = into_lines("FULL_TABLE", 300);
    assert_eq!(full.lines().count(), 300);
    let more = into_lines("INCREMENTAL", 450);
    assert_eq!(
        more.lines().count(),
        450,
        "the rows after offset 300 were appended"
    );
    let mut ids: Vec<i64> = more
        .lines()
        .map(|l| l.split('\t').next().expect("id").parse().expect("number"))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 450, "no row twice");
}

#[test]
fn a_plugin_built_against_the_first_release_of_abi_1_passes_the_conformance_suite() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let check = tmp.path().join("check.json");
    write_json(
        &check,
        &json!({
            "sources": {"numbers": {"config": {"rows": 3000, "batch_size": 400, "partitions": 2}, "key": "id"}},
            "targets": {"lines": {"config": {"path": "{dir}/lines.tsv", "key": "id", "column": "text"}}}
        }),
    );
    let out = fastlane(
        tmp.path(),
        &[
            "plugins",
            "check",
            test_plugin_lib("abi1").to_str().expect("path"),
            "--config",
            check.to_str().expect("path"),
        ],
    );
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    for line in [
        "ok    source `numbers`: INCREMENTAL reads after the start offset",
        "skip  source `numbers`: reads ranges between positions — does not declare `resume`",
        "ok    transform `shout`: the same rows through the engine, two workers",
        "ok    target `lines`: offset is the largest key stored — 31500",
        "ok    target `lines`: a failed run leaves it as it was",
    ] {
        assert!(
            out.stdout.contains(line),
            "`{line}` missing:\n{}",
            out.stdout
        );
    }
}

#[test]
fn plugins_of_another_abi_are_refused_naming_both_versions_and_what_to_do() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let plugins = test_plugin_dir(&["badabi"]);
    let out = fastlane(
        tmp.path(),
        &[
            "plugins",
            "list",
            "--plugin-dir",
            plugins.path().to_str().expect("path"),
        ],
    );
    assert_eq!(out.code, 3, "{out:?}");
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        text.contains("was built for plugin ABI 999, but this fastlane (")
            && text.contains(") loads plugins of ABI 1: the plugin is newer than this fastlane"),
        "{text}"
    );
    assert!(
        text.contains("upgrade fastlane to a release that loads ABI 999 plugins"),
        "{text}"
    );
}
