//! `fastlane plugins check`: the conformance suite run from the command line against plugin
//! files. Every check of the suite fails on a component built to break its rule, each with
//! its own message; well-behaved components pass.

use std::fs::File;
use std::path::Path;

use fastlane_tests::conformance::{ALL_COLUMNS, standard_batches};
use fastlane_tests::{Output, fastlane, plugin_lib, test_plugin_lib};
use parquet::arrow::ArrowWriter;
use serde_json::{Value, json};

/// Runs `plugins check` on `plugin` with the check file `spec` and `extra` arguments.
fn run_check(plugin: &Path, spec: &Value, extra: &[&str]) -> Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("check.json");
    std::fs::write(&file, spec.to_string()).expect("write check file");
    let (plugin, file) = (plugin.display().to_string(), file.display().to_string());
    let mut args = vec!["plugins", "check", &plugin, "--config", &file];
    args.extend_from_slice(extra);
    fastlane(dir.path(), &args)
}

/// Runs `plugins check` on `plugin` with the check file `spec`, with JSON output.
fn check(plugin: &Path, spec: &Value, timeout_secs: u32) -> (Output, Value) {
    let timeout = timeout_secs.to_string();
    let out = run_check(plugin, spec, &["--timeout", &timeout, "--json"]);
    let report = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("not a JSON report ({e}): {out:?}"));
    (out, report)
}

fn checks<'a>(report: &'a Value, outcome: &str) -> Vec<&'a Value> {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["outcome"] == outcome)
        .collect()
}

/// The failed check `name` of `subject`, with its detail.
fn failure(report: &Value, subject: &str, name: &str) -> Option<String> {
    checks(report, "failed")
        .into_iter()
        .find(|c| c["subject"] == subject && c["name"] == name)
        .map(|c| c["detail"].as_str().unwrap_or_default().to_owned())
}

fn misbehave() -> std::path::PathBuf {
    test_plugin_lib("misbehave")
}

#[test]
fn well_behaved_components_pass_every_check() {
    let spec = json!({
        "sources": {"ranged": {"config": {"rows": 6000, "batch_size": 500}, "key": "id"}},
        "targets": {
            "store": {
                "config": {"path": "{dir}/out"},
                "read_back": {"source": "stored", "config": {"path": "{dir}/out"}}
            },
            "kept": {
                "config": {"path": "{dir}/out"},
                "read_back": {"source": "stored", "config": {"path": "{dir}/out"}}
            }
        }
    });
    let (out, report) = check(&misbehave(), &spec, 30);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(checks(&report, "failed").is_empty(), "{report:#}");
    let passed: Vec<String> = checks(&report, "passed")
        .iter()
        .map(|c| {
            format!(
                "{}: {}",
                c["subject"].as_str().unwrap(),
                c["name"].as_str().unwrap()
            )
        })
        .collect();
    for expected in [
        "plugin: loads",
        "manifest: described, schemas valid and closed",
        "source `ranged`: one schema across batches",
        "source `ranged`: unique key",
        "source `ranged`: the same rows when read twice",
        "source `ranged`: INCREMENTAL reads after the start offset",
        "source `ranged`: INCREMENTAL reads nothing after the last key",
        "source `ranged`: verification",
        "source `ranged`: reads ranges between positions",
        "source `ranged`: stops when the run is cancelled",
        "transform `double`: one output schema",
        "transform `double`: the same rows through the engine, two workers",
        "target `store`: an empty run",
        "target `store`: stores every row once, with its values",
        "target `store`: offset is the largest key stored",
        "target `store`: FULL_TABLE replaces what was there",
        "target `store`: INCREMENTAL appends",
        "target `store`: a failed run leaves it as it was",
        "target `store`: a cancelled run leaves it as it was",
        "target `kept`: stores every row once, with its values",
        "target `kept`: a failed checkpointed run resumes to exactly its rows",
    ] {
        assert!(
            passed.iter().any(|p| p == expected),
            "`{expected}` did not pass: {report:#}"
        );
    }
    // Components without a configuration are reported as not run, not as passed.
    let skipped = checks(&report, "skipped");
    assert!(
        skipped.iter().any(|c| c["subject"] == "source `stall`"
            && c["detail"]
                .as_str()
                .unwrap()
                .contains("sources.stall.config")),
        "{report:#}"
    );

    // The text report says the same.
    let out = run_check(&misbehave(), &spec, &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .contains("  ok    source `ranged`: reads ranges between positions — partition"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.trim_end().ends_with(
            "; no check failed, but 10 components were not exercised (give them a configuration \
             in the check file)"
        ),
        "{}",
        out.stdout
    );
}

#[test]
fn each_broken_rule_fails_its_own_check_with_its_own_message() {
    let source = |flaw: &str| json!({"sources": {"ranged": {"config": {"rows": 4000, "batch_size": 500, "flaw": flaw}, "key": "id"}}});
    let kept = |flaw: &str| {
        json!({"targets": {"kept": {
            "config": {"path": "{dir}/out", "flaw": flaw},
            "read_back": {"source": "stored", "config": {"path": "{dir}/out"}}
        }}})
    };
    let store = |flaw: &str| {
        json!({"targets": {"store": {
            "config": {"path": "{dir}/out", "flaw": flaw},
            "read_back": {"source": "stored", "config": {"path": "{dir}/out"}}
        }}})
    };
    let double = |flaw: &str| json!({"transforms": {"double": {"config": {"flaw": flaw}}}});
    let cases: Vec<(Value, &str, &str, &str)> = vec![
        (
            source("shifting_schema"),
            "source `ranged`",
            "one schema across batches",
            "must share one schema",
        ),
        (
            source("repeat_batch"),
            "source `ranged`",
            "unique key",
            "is read 2 times",
        ),
        (
            source("unstable"),
            "source `ranged`",
            "the same rows when read twice",
            "the second",
        ),
        (
            source("ignore_offset"),
            "source `ranged`",
            "INCREMENTAL reads after the start offset",
            "strictly after",
        ),
        (
            source("ignore_offset"),
            "source `ranged`",
            "INCREMENTAL reads nothing after the last key",
            "after the start offset 3999 it read `id` = ",
        ),
        (
            source("off_by_one"),
            "source `ranged`",
            "INCREMENTAL reads after the start offset",
            "it read `id` = 1999",
        ),
        (
            source("miscount"),
            "source `ranged`",
            "verification",
            "the source holds 2001 rows, the run read 2000",
        ),
        (
            source("bad_range"),
            "source `ranged`",
            "reads ranges between positions",
            "the range after position",
        ),
        (
            source("no_position"),
            "source `ranged`",
            "reads ranges between positions",
            "no position after batch 0",
        ),
        (
            source("slow_stop"),
            "source `ranged`",
            "stops when the run is cancelled",
            "to stop after it was cancelled",
        ),
        (
            json!({"sources": {"fail_open": {"config": {}}}}),
            "source `fail_open`",
            "reads its data",
            "connection refused",
        ),
        (
            json!({"sources": {"panic_read": {"config": {"after_batches": 2}}}}),
            "source `panic_read`",
            "reads its data",
            "deliberate panic while reading",
        ),
        (
            json!({"sources": {"stall": {"config": {}}}}),
            "source `stall`",
            "reads its data",
            "no progress for",
        ),
        (
            json!({"sources": {"ranged": {"config": {"rows": "many"}}}}),
            "source `ranged`",
            "configuration",
            "rows",
        ),
        (
            json!({"transforms": {"double": {"config": {"column": 5}}}}),
            "transform `double`",
            "configuration",
            "column",
        ),
        (
            json!({"transforms": {"double": {"config": {"column": "nope"}}}}),
            "transform `double`",
            "transforms batches",
            "no column `nope`",
        ),
        (
            double("instance_salt"),
            "transform `double`",
            "the same rows through the engine, two workers",
            "where the batches transformed one by one gave",
        ),
        (
            double("shifting_schema"),
            "transform `double`",
            "one output schema",
            "batch 1 became",
        ),
        (
            double("unstable"),
            "transform `double`",
            "the same output for the same input",
            "then",
        ),
        (
            double("fail_empty"),
            "transform `double`",
            "a batch without rows",
            "nothing to double",
        ),
        (
            store("drop_last_row"),
            "target `store`",
            "stores every row once, with its values",
            "missing ids",
        ),
        (
            store("wrong_offset"),
            "target `store`",
            "offset is the largest key stored",
            "it reports 1 after storing keys up to 20000",
        ),
        (
            store("append_always"),
            "target `store`",
            "FULL_TABLE replaces what was there",
            "21000 rows where 1000 were expected",
        ),
        (
            store("replace_always"),
            "target `store`",
            "INCREMENTAL appends",
            "500 rows where 1500 were expected",
        ),
        (
            json!({"targets": {"store": {"config": {"path": "{dir}/out", "flaws": []}}}}),
            "target `store`",
            "configuration",
            "flaws",
        ),
        (
            store("publish_on_abort"),
            "target `store`",
            "a failed run leaves it as it was",
            "changed the published rows",
        ),
        (
            store("leaky_abort"),
            "target `store`",
            "a failed run leaves it as it was",
            "left files behind",
        ),
        (
            kept("discard_staging"),
            "target `kept`",
            "a failed checkpointed run resumes to exactly its rows",
            "the next run of the same pipeline did not resume the failed one",
        ),
        (
            kept("forget_checkpoints"),
            "target `kept`",
            "a failed checkpointed run resumes to exactly its rows",
            "repeated rows",
        ),
        (
            kept("lose_rows"),
            "target `kept`",
            "a failed checkpointed run resumes to exactly its rows",
            "missing",
        ),
        (
            json!({"targets": {"fail_open": {"config": {}}}}),
            "target `fail_open`",
            "an empty run",
            "no route to host",
        ),
        (
            json!({"targets": {"fail_write": {"config": {"after_batches": 1}}}}),
            "target `fail_write`",
            "loads many batches from two writers",
            "disk full",
        ),
        (
            json!({"targets": {"lossy": {"config": {"lose_batch": 3, "path": "{dir}/count"}}}}),
            "target `lossy`",
            "loads many batches from two writers",
            "the staging holds 19500 rows, but 20000 were written into it",
        ),
        (
            json!({"targets": {"altering": {"config": {"alter_batch": 2}}}}),
            "target `altering`",
            "loads many batches from two writers",
            "the staging's checksum is",
        ),
    ];
    let mut problems = Vec::new();
    for (spec, subject, name, needle) in &cases {
        let (out, report) = check(&misbehave(), spec, 3);
        if out.code != 1 {
            problems.push(format!(
                "{spec}: exit code {} (expected 1): {out:?}",
                out.code
            ));
            continue;
        }
        match failure(&report, subject, name) {
            Some(detail) if detail.contains(needle) => {}
            Some(detail) => problems.push(format!(
                "{spec}: `{subject}: {name}` failed with `{detail}`, expected `{needle}`"
            )),
            None => problems.push(format!(
                "{spec}: `{subject}: {name}` did not fail: {report:#}"
            )),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

#[test]
fn a_loose_manifest_fails_naming_each_problem() {
    let (out, report) = check(&test_plugin_lib("openschema"), &json!({}), 5);
    assert_eq!(out.code, 1, "{out:?}");
    let detail = failure(&report, "manifest", "described, schemas valid and closed")
        .unwrap_or_else(|| panic!("{report:#}"));
    assert!(
        detail.contains("source `loose` has no description"),
        "{detail}"
    );
    assert!(
        detail.contains("source `loose`: its schema must refuse unknown fields"),
        "{detail}"
    );
}

#[test]
fn plugins_that_do_not_load_fail_naming_the_file_and_the_reason() {
    for (name, needle) in [
        ("badabi", "was built for plugin ABI 999"),
        ("nosymbol", "it was not built with `export_plugin!`"),
        ("panicinit", "deliberate panic during initialisation"),
    ] {
        let path = test_plugin_lib(name);
        let (out, report) = check(&path, &json!({}), 5);
        assert_eq!(out.code, 3, "{name}: {out:?}");
        assert!(report["plugin"].is_null(), "{report:#}");
        let detail = failure(&report, "plugin", "loads").unwrap_or_else(|| panic!("{report:#}"));
        assert!(detail.contains(needle), "{name}: {detail}");
        assert!(
            detail.contains(&path.display().to_string()),
            "{name}: {detail}"
        );
    }
}

#[test]
fn a_bad_check_file_is_refused_listing_every_problem() {
    let spec = json!({"sources": {"ranged": {"config": {}, "keys": "id"}}, "target": {}});
    let out = run_check(&misbehave(), &spec, &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("sources.ranged.keys: is not a known field"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("target: is not a known field"),
        "{}",
        out.stderr
    );

    // A component the plugin does not offer.
    let (out, report) = check(
        &misbehave(),
        &json!({"targets": {"mysql": {"config": {}}}}),
        5,
    );
    assert_eq!(out.code, 1, "{out:?}");
    let detail = failure(&report, "check file", "names the plugin's components").expect("failure");
    assert!(
        detail.contains("target `mysql`, which plugin `misbehave` does not offer"),
        "{detail}"
    );
}

fn write_parquet(path: &Path, rows: usize) {
    let batches = standard_batches(1, rows, 1_000, ALL_COLUMNS);
    let file = File::create(path).expect("create");
    let mut writer = ArrowWriter::try_new(file, batches[0].schema(), None).expect("writer");
    for b in &batches {
        writer.write(b).expect("write");
    }
    writer.close().expect("close");
}

#[test]
fn the_file_plugin_passes_with_its_own_source_reading_back_its_target() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    write_parquet(&data.join("part-0.parquet"), 5_000);
    let spec = json!({
        "sources": {"file": {
            "config": {"path": format!("{}/*.parquet", data.display()), "replication_key": "id"},
            "key": "id",
            "expect": {"rows": 5000}
        }},
        "targets": {"file": {
            "config": {"path": "{dir}/out", "format": "parquet", "key": "id"},
            "read_back": {"source": "file", "config": {"path": "{dir}/out/*.parquet"}}
        }}
    });
    let (out, report) = check(&plugin_lib("file"), &spec, 30);
    assert_eq!(out.code, 0, "{report:#}");
    assert!(
        checks(&report, "skipped")
            .iter()
            .all(|c| c["name"] != "contract"),
        "{report:#}"
    );
    for (subject, name) in [
        ("source `file`", "reads the expected rows"),
        ("target `file`", "stores every row once, with its values"),
        (
            "target `file`",
            "a failed checkpointed run resumes to exactly its rows",
        ),
    ] {
        assert!(
            checks(&report, "passed")
                .iter()
                .any(|c| c["subject"] == subject && c["name"] == name),
            "{subject}: {name}: {report:#}"
        );
    }

    // The same file with one row fewer than the check file expects fails, naming the row.
    write_parquet(&data.join("part-0.parquet"), 4_999);
    let (out, report) = check(&plugin_lib("file"), &spec, 30);
    assert_eq!(out.code, 1, "{out:?}");
    let detail = failure(&report, "source `file`", "reads the expected rows").expect("failure");
    assert!(
        detail.contains("4999 rows where 5000 were expected (missing ids [\"5000\"]"),
        "{detail}"
    );
}
