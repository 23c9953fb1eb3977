//! `fastlane plugins new`: a generated project, outside the workspace, builds against the local
//! `fastlane-plugin-api` (a `[patch]` to its path), passes its own test (which runs `fastlane
//! plugins check` on the built library), and its plugin loads and runs in the CLI.
//!
//! The projects build into a target folder of their own (`plugin-projects` beside the
//! workspace's), so that their libraries never land in the folder the tests' `fastlane` searches
//! for plugins.

use std::path::{Path, PathBuf};
use std::process::Command;

use fastlane_tests::{fastlane, fastlane_bin, parquet_folder, target_dir};
use serde_json::{Value, json};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_path_buf()
}

/// The target folder of generated projects, shared by the tests so that dependencies build once.
fn projects_target() -> PathBuf {
    target_dir()
        .parent()
        .expect("target folder")
        .join("plugin-projects")
}

/// Generates plugin `name` of `kind` under `dir` with the CLI, pointed at the local plugin API
/// with the workspace's lock file.
fn generate(dir: &Path, name: &str, kind: &str) -> PathBuf {
    let project = dir.join(name);
    let out = fastlane(
        dir,
        &[
            "plugins",
            "new",
            name,
            "--kind",
            kind,
            "--path",
            project.to_str().expect("path"),
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("cargo test"), "{}", out.stdout);
    let manifest = project.join("Cargo.toml");
    let mut text = std::fs::read_to_string(&manifest).expect("Cargo.toml");
    assert!(
        text.contains("crate-type = [\"cdylib\", \"rlib\"]"),
        "{text}"
    );
    text.push_str(&format!(
        "\n[patch.crates-io]\nfastlane-plugin-api = {{ path = \"{}\" }}\n",
        repo_root().join("plugin-api").display()
    ));
    std::fs::write(&manifest, text).expect("write Cargo.toml");
    std::fs::copy(repo_root().join("Cargo.lock"), project.join("Cargo.lock")).expect("lock");
    project
}

fn cargo(project: &Path, args: &[&str]) {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(args)
        .arg("--offline")
        .current_dir(project)
        .env("CARGO_TARGET_DIR", projects_target())
        .env("FASTLANE", fastlane_bin())
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "cargo {args:?} in {}:\n{}\n{}",
        project.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn built(name: &str) -> PathBuf {
    projects_target()
        .join("debug")
        .join(format!("libfastlane_plugin_{name}.so"))
}

#[test]
fn generated_plugins_build_pass_the_suite_and_run() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();

    // A source: its own test runs `fastlane plugins check` on the library it built.
    let source = generate(dir, "scaffold_rows", "source");
    cargo(&source, &["test"]);
    cargo(&source, &["build"]);

    // A target and a transform: built, then checked with their check files.
    for (name, kind) in [
        ("scaffold_lines", "target"),
        ("scaffold_upper", "transform"),
    ] {
        let project = generate(dir, name, kind);
        cargo(&project, &["build"]);
        let check = project.join("check.json");
        let out = fastlane(
            dir,
            &[
                "plugins",
                "check",
                built(name).to_str().expect("path"),
                "--config",
                check.to_str().expect("path"),
            ],
        );
        assert_eq!(out.code, 0, "{name}: {}\n{}", out.stdout, out.stderr);
        assert!(
            out.stdout.trim_end().ends_with("; the plugin conforms"),
            "{}",
            out.stdout
        );
    }

    // All three in a plugin folder: listed, and a pipeline through them.
    let plugins = dir.join("plugins");
    std::fs::create_dir(&plugins).expect("mkdir");
    for name in ["scaffold_rows", "scaffold_lines", "scaffold_upper"] {
        std::fs::copy(
            built(name),
            plugins.join(format!("libfastlane_plugin_{name}.so")),
        )
        .expect("copy");
    }
    let plugin_dir = plugins.to_str().expect("path");
    let out = fastlane(
        dir,
        &["plugins", "list", "--json", "--plugin-dir", plugin_dir],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let listed: Value = serde_json::from_str(&out.stdout).expect("json");
    let names: Vec<&str> = listed["plugins"]
        .as_array()
        .expect("plugins")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for name in ["scaffold_rows", "scaffold_lines", "scaffold_upper"] {
        assert!(names.contains(&name), "{name} not listed: {names:?}");
    }
    std::fs::write(
        dir.join("p.json"),
        json!({"replication_mode": "FULL_TABLE",
               "source": {"scaffold_rows": {"rows": 2500, "partitions": 2}},
               "transform": {"scaffold_upper": {}},
               "target": {"file": {"path": "out"}}})
        .to_string(),
    )
    .expect("write");
    let out = fastlane(
        dir,
        &[
            "--plugin-dir",
            plugin_dir,
            "--transform=scaffold_upper",
            "--config=p.json",
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let batches = parquet_folder(&dir.join("out"));
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 2500);
    let text = fastlane_tests::conformance::pretty(&batches);
    assert!(text.contains("ROW 2500"), "{text}");
}

#[test]
fn bad_names_and_taken_folders_are_refused() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = fastlane(tmp.path(), &["plugins", "new", "My-Plugin"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("`My-Plugin` cannot name a plugin"),
        "{}",
        out.stderr
    );
    let out = fastlane(tmp.path(), &["plugins", "new", "rows", "--kind", "sink"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("--kind must be source, transform or target")
    );
    std::fs::create_dir(tmp.path().join("taken")).expect("mkdir");
    std::fs::write(tmp.path().join("taken/file"), "x").expect("write");
    let out = fastlane(tmp.path(), &["plugins", "new", "rows", "--path", "taken"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("`taken` already exists and is not empty"),
        "{}",
        out.stderr
    );
    // The default folder.
    let out = fastlane(tmp.path(), &["plugins", "new", "rows"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(tmp.path().join("fastlane-plugin-rows/src/lib.rs").exists());
}
