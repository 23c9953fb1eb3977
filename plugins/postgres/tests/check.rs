//! Runs fastlane's conformance suite on the built plugin, as a third party would:
//! `fastlane plugins check` with `check.json`, over a table made in a fresh database on the
//! PostgreSQL server on 127.0.0.1:5432 (user `postgres`, trust; tests/services.sh starts it).

use std::process::Command;

use fastlane_tests::fastlane_bin;

mod common;
use common::psql;

#[test]
fn the_plugin_passes_fastlane_plugins_check() {
    // check.json reads the table `items` of this database.
    let db = "fastlane_plugin_check";
    psql(
        "postgres",
        &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
    );
    psql("postgres", &format!("CREATE DATABASE {db}"));
    psql(
        db,
        "CREATE TABLE items (id int8 PRIMARY KEY, name text, price numeric(10,2), seen timestamptz);
         INSERT INTO items SELECT g, 'item ' || g, g * 1.25, '2026-01-01'::timestamptz + g * interval '1 minute'
         FROM generate_series(1, 5000) g;",
    );
    let library = fastlane_tests::target_dir().join("libfastlane_plugin_postgres.so");
    let out = Command::new(fastlane_bin())
        .args(["plugins", "check"])
        .arg(&library)
        .arg("--config")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/check.json"))
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("the plugin conforms"), "{report}");
    psql("postgres", &format!("DROP DATABASE {db} WITH (FORCE)"));
}
