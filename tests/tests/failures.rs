//! Broken plugins and failing components: each gives one clear sentence and a non-zero exit,
//! never a crash, and a failed run leaves the target as it was.

use std::path::Path;

use fastlane_tests::{fastlane, plugin_lib, redact, test_plugin_dir, test_plugin_lib};
use serde_json::{Value, json};

fn write_json(path: &Path, value: &Value) {
    std::fs::write(path, serde_json::to_string_pretty(value).unwrap()).unwrap();
}

/// A plugin folder with one file, copied under the plugin naming convention.
fn folder_with(name: &str, bytes: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(format!("libfastlane_plugin_{name}.so")),
        bytes,
    )
    .unwrap();
    dir
}

fn plugins_list(dir: &Path) -> fastlane_tests::Output {
    fastlane(
        dir,
        &[
            "plugins",
            "list",
            "--no-default-plugins",
            "--plugin-dir",
            dir.to_str().unwrap(),
        ],
    )
}

#[test]
fn broken_plugin_files_each_get_one_sentence() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("text", b"this is not a library\n".to_vec()),
        ("empty", Vec::new()),
        (
            "truncated",
            std::fs::read(plugin_lib("file")).unwrap()[..4096].to_vec(),
        ),
        ("badabi", std::fs::read(test_plugin_lib("badabi")).unwrap()),
        (
            "nosymbol",
            std::fs::read(test_plugin_lib("nosymbol")).unwrap(),
        ),
        (
            "panicinit",
            std::fs::read(test_plugin_lib("panicinit")).unwrap(),
        ),
        (
            "libm",
            std::fs::read("/lib/x86_64-linux-gnu/libm.so.6").unwrap_or_default(),
        ),
    ];
    let mut report = String::new();
    for (name, bytes) in cases {
        if bytes.is_empty() && name == "libm" {
            continue;
        }
        let dir = folder_with(name, &bytes);
        let out = plugins_list(dir.path());
        assert_eq!(out.code, 3, "{name}: {}", out.stderr);
        let lines: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| l.starts_with("error:"))
            .collect();
        assert_eq!(lines.len(), 1, "{name}: {}", out.stderr);
        report.push_str(&redact(lines[0], dir.path()));
        report.push('\n');
    }
    insta::assert_snapshot!(report);
}

#[test]
fn a_broken_plugin_does_not_stop_other_pipelines() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = folder_with("badabi", &std::fs::read(test_plugin_lib("badabi")).unwrap());
    std::fs::write(tmp.path().join("in.csv"), "a,b\n1,2\n").unwrap();
    write_json(
        &tmp.path().join("p.json"),
        &json!({"replication_mode": "FULL_TABLE",
                "source": {"file": {"path": "in.csv"}},
                "target": {"file": {"path": "out"}}}),
    );
    let out = fastlane(
        tmp.path(),
        &[
            "--plugin-dir",
            plugins.path().to_str().unwrap(),
            "--config=p.json",
            "--progress=off",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("was built for plugin ABI 999"),
        "{}",
        out.stderr
    );
}

fn run_misbehaving(
    source: Value,
    target: Value,
    extra: Value,
) -> (fastlane_tests::Output, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = test_plugin_dir(&["misbehave"]);
    let mut config = json!({
        "replication_mode": "FULL_TABLE",
        "source": source,
        "transform": {"add_op_fields": false},
        "target": target,
    });
    if let (Some(c), Some(e)) = (config.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    write_json(&tmp.path().join("p.json"), &config);
    let out = fastlane(
        tmp.path(),
        &[
            "-q",
            "--plugin-dir",
            plugins.path().to_str().unwrap(),
            "--config=p.json",
        ],
    );
    (out, tmp)
}

#[test]
fn failing_components_give_their_sentence_and_exit_1() {
    let cases = [
        (
            "source fails on open",
            json!({"fail_open": {}}),
            json!({"discard": {}}),
            json!({}),
        ),
        (
            "source panics in read",
            json!({"panic_read": {"after_batches": 3}}),
            json!({"discard": {}}),
            json!({}),
        ),
        (
            "target fails on open",
            json!({"generate": {"rows": 10}}),
            json!({"fail_open": {}}),
            json!({}),
        ),
        (
            "target fails writing",
            json!({"generate": {"rows": 100000, "batch_size": 100}}),
            json!({"fail_write": {"after_batches": 5}}),
            json!({}),
        ),
        (
            "source stalls",
            json!({"stall": {}}),
            json!({"discard": {}}),
            json!({"stall_timeout_secs": 1}),
        ),
    ];
    let mut report = String::new();
    for (what, source, target, extra) in cases {
        let started = std::time::Instant::now();
        let (out, tmp) = run_misbehaving(source, target, extra);
        assert_eq!(out.code, 1, "{what}: {}\n{}", out.stdout, out.stderr);
        assert!(started.elapsed().as_secs() < 30, "{what} took too long");
        let errors: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| l.starts_with("error:") || l.starts_with("  caused by:"))
            .collect();
        report.push_str(&format!(
            "# {what}\n{}\n",
            redact(&errors.join("\n"), tmp.path())
        ));
    }
    insta::assert_snapshot!(report);
}

#[test]
fn a_failed_run_leaves_the_file_target_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let plugins = test_plugin_dir(&["misbehave"]);
    let plugin_dir = plugins.path().to_str().unwrap();
    // A first, good run.
    write_json(
        &dir.join("good.json"),
        &json!({"replication_mode": "FULL_TABLE",
                "source": {"generate": {"rows": 1000}},
                "target": {"file": {"path": "out", "format": "csv"}}}),
    );
    assert_eq!(
        fastlane(
            dir,
            &["-q", "--plugin-dir", plugin_dir, "--config=good.json"]
        )
        .code,
        0
    );
    let before = listing(&dir.join("out"));
    assert_eq!(before.len(), 1);
    // A second run that fails after several batches were written.
    write_json(
        &dir.join("bad.json"),
        &json!({"replication_mode": "FULL_TABLE",
                "source": {"panic_read": {"after_batches": 20}},
                "target": {"file": {"path": "out", "format": "csv", "max_rows_per_file": 500}}}),
    );
    let out = fastlane(
        dir,
        &["-q", "--plugin-dir", plugin_dir, "--config=bad.json"],
    );
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("deliberate panic while reading"),
        "{}",
        out.stderr
    );
    assert_eq!(
        listing(&dir.join("out")),
        before,
        "the target must be unchanged"
    );
}

fn listing(dir: &Path) -> Vec<(String, u64)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    v.sort();
    v
}

fn peak_rss(dir: &Path, plugin_dir: &str, rows: u64, budget: &str) -> u64 {
    write_json(
        &dir.join("mem.json"),
        &json!({"replication_mode": "FULL_TABLE",
                "max_buffered_batches": 1000,
                "max_buffered_bytes": budget,
                "source": {"generate": {"rows": rows, "batch_size": 2048, "payload_bytes": 1024}},
                "transform": {"add_op_fields": false},
                "target": {"discard": {"delay_ms": 2}}}),
    );
    let out = fastlane(
        dir,
        &[
            "-q",
            "--plugin-dir",
            plugin_dir,
            "--config=mem.json",
            "--summary-json=summary.json",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["rows_loaded"], rows);
    summary["peak_rss_bytes"].as_u64().unwrap()
}

/// Memory stays bounded: a source producing ~2 GiB through a slow target with a 32 MiB queue
/// budget must not grow the peak RSS past the budget plus a stated margin over a tiny run.
#[test]
fn memory_stays_within_the_byte_budget() {
    const MIB: u64 = 1024 * 1024;
    let tmp = tempfile::tempdir().unwrap();
    let plugins = test_plugin_dir(&["misbehave"]);
    let plugin_dir = plugins.path().to_str().unwrap();
    let baseline = peak_rss(tmp.path(), plugin_dir, 2048, "32MiB");
    let big = peak_rss(tmp.path(), plugin_dir, 2_000_000, "32MiB");
    // In flight beyond the queue: one batch in the source, one in the target (2 MiB each),
    // plus allocator slack. The margin is stated here and in the README.
    let margin = 48 * MIB;
    let budget = 32 * MIB;
    assert!(
        big <= baseline + budget + margin,
        "peak RSS {} MiB for ~2 GiB of data; baseline {} MiB, budget {} MiB, margin {} MiB",
        big / MIB,
        baseline / MIB,
        budget / MIB,
        margin / MIB
    );
}

#[test]
fn duplicate_ids_warn_and_the_first_folder_wins() {
    let tmp = tempfile::tempdir().unwrap();
    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(
        plugin_lib("file"),
        copy.path().join("libfastlane_plugin_file.so"),
    )
    .unwrap();
    let out = fastlane(
        tmp.path(),
        &[
            "plugins",
            "list",
            "--plugin-dir",
            copy.path().to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let source_line = out
        .stdout
        .lines()
        .find(|l| l.split_whitespace().take(2).eq(["source", "file"]))
        .unwrap();
    assert!(
        source_line.contains(copy.path().to_str().unwrap()),
        "{source_line}"
    );
    let warnings: Vec<_> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(
        warnings.len(),
        2,
        "one per duplicated component: {}",
        out.stderr
    );
    let first = redact(warnings[0], copy.path());
    assert_eq!(
        first,
        "warning: source `file` is provided by both `[TMP]/libfastlane_plugin_file.so` and \
         `[TARGET]/libfastlane_plugin_file.so`; using the first (earlier in the plugin search order)"
    );
}
