"""The `fastlane` command installed by the package, and the original's `driver()`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

import fastlane
from fastlane import Source, Target
from fastlane.run_pipeline import driver


def fastlane_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "fastlane"
    assert exe.exists(), f"the package did not install the `fastlane` command next to {sys.executable}"
    return [str(exe)]


def test_cli_version_and_help():
    out = subprocess.run([*fastlane_cmd(), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"fastlane {fastlane.__version__}"
    out = subprocess.run([*fastlane_cmd(), "--help"], capture_output=True, text=True, check=True)
    assert "--source" in out.stdout


def test_cli_finds_the_plugins_shipped_in_the_package():
    out = subprocess.run([*fastlane_cmd(), "plugins", "list", "--json"], capture_output=True, text=True, check=True)
    listed = json.loads(out.stdout)
    text = json.dumps(listed)
    package_plugins = Path(fastlane.__file__).parent / "plugins"
    for name in ("file", "sqlite", "mysql", "postgres"):
        assert (package_plugins / f"libfastlane_plugin_{name}.so").exists()
        assert f"libfastlane_plugin_{name}.so" in text
    assert "Python package" in text or str(package_plugins) in text


def test_cli_checks_a_shipped_plugin_with_the_conformance_suite(tmp_path):
    """The conformance suite ships in the package: `fastlane plugins check` on its sqlite plugin."""
    import sqlite3

    plugin = Path(fastlane.__file__).parent / "plugins" / "libfastlane_plugin_sqlite.so"
    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, total REAL, note TEXT)")
        conn.executemany(
            "INSERT INTO orders VALUES (?, ?, ?)", [(i, i / 4, f"order {i}") for i in range(1, 3001)]
        )
    check = {
        "sources": {
            "sqlite": {"config": {"path": str(db), "table": "orders", "replication_key": "id"}, "key": "id"}
        },
        "targets": {
            "sqlite": {
                "config": {"path": "{dir}/out.db", "table": "{name}", "key": "id"},
                "read_back": {"source": "sqlite", "config": {"path": "{dir}/out.db", "table": "{name}"}},
            }
        },
    }
    spec = tmp_path / "check.json"
    spec.write_text(json.dumps(check))
    out = subprocess.run(
        [*fastlane_cmd(), "plugins", "check", str(plugin), "--config", str(spec), "--json"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout)
    passed = {(c["subject"], c["name"]) for c in report["checks"] if c["outcome"] == "passed"}
    assert ("source `sqlite`", "INCREMENTAL reads after the start offset") in passed, report
    assert ("target `sqlite`", "stores every row once, with its values") in passed, report
    assert ("target `sqlite`", "a failed run leaves it as it was") in passed, report

    # A check file naming a column the source lacks as its key fails, and says so.
    check["sources"]["sqlite"]["key"] = "missing"
    spec.write_text(json.dumps(check))
    out = subprocess.run(
        [*fastlane_cmd(), "plugins", "check", str(plugin), "--config", str(spec)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert "FAIL  source `sqlite`: unique key — no key column `missing`" in out.stdout, out.stdout


def test_a_plugin_project_made_by_plugins_new_loads_through_the_package(repo, tmp_path):
    """`fastlane plugins new` writes a project that builds against the local plugin API and whose
    plugin the package loads and runs."""
    import os

    from fastlane import Pipeline

    project = tmp_path / "pyrows"
    subprocess.run(
        [*fastlane_cmd(), "plugins", "new", "pyrows", "--kind", "source", "--path", str(project)],
        check=True,
        capture_output=True,
    )
    manifest = project / "Cargo.toml"
    manifest.write_text(
        manifest.read_text()
        + f'\n[patch.crates-io]\nfastlane-plugin-api = {{ path = "{repo / "plugin-api"}" }}\n'
    )
    shutil.copy(repo / "Cargo.lock", project / "Cargo.lock")
    # Beside the workspace's target folder, never in it: its libraries must not land where the
    # tests' fastlane looks for plugins.
    target_root = Path(os.environ.get("CARGO_TARGET_DIR", tmp_path / "target")) / "plugin-projects"
    built = subprocess.run(
        ["cargo", "build", "--offline"],
        cwd=project,
        env={**os.environ, "CARGO_TARGET_DIR": str(target_root)},
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    shutil.copy(target_root / "debug" / "libfastlane_plugin_pyrows.so", plugins)

    listed = subprocess.run(
        [*fastlane_cmd(), "plugins", "list", "--json", "--plugin-dir", str(plugins)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "pyrows" in [p["name"] for p in json.loads(listed.stdout)["plugins"]]

    out = tmp_path / "out"
    Pipeline(
        source="pyrows",
        target="file",
        configuration={
            "replication_mode": "FULL_TABLE",
            "source": {"pyrows": {"rows": 1200, "partitions": 3}},
            "target": {"file": {"path": str(out)}},
        },
        plugin_dirs=[plugins],
        progress="off",
    ).run()
    table = pq.read_table(out)
    assert table.num_rows == 1200
    assert sorted(table.column("id").to_pylist()) == list(range(1, 1201))


def test_cli_runs_the_shipped_sqlite_example(repo, tmp_path):
    shutil.copytree(repo / "examples", tmp_path / "examples")
    out = subprocess.run(
        [*fastlane_cmd(), "--source=sqlite", "--target=file", "--config=examples/sqlite_to_parquet.json", "--progress=off"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    rows = sum(pq.read_metadata(f).num_rows for f in (tmp_path / "out/orders").rglob("*.parquet"))
    assert rows > 0
    assert "rows" in out.stdout


def test_cli_usage_error_exit_code(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"replication_mode": "FULL_TABLE"}')
    out = subprocess.run([*fastlane_cmd(), "--config", str(bad)], capture_output=True, text=True)
    assert out.returncode == 2
    assert "source" in out.stderr


def test_python_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "fastlane.run_pipeline", "--version"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("fastlane ")


class Letters(Source):
    source_type = "letters"

    def __init__(self, configuration):
        super().__init__(configuration)
        self.left = list(configuration["letters"])

    @classmethod
    def configuration_schema(cls):
        from fastlane.source import json_schema

        return json_schema({"letters": {"type": "string"}}, required=["letters"])

    def extract(self):
        if not self.left:
            return []
        batch, self.left = self.left[:2], self.left[2:]
        return [{"letter": c} for c in batch]


class Memory(Target):
    target_type = "memory"
    seen: list = []

    def load(self, df):
        Memory.seen.extend(df["letter"])


def test_driver_with_a_json_config_and_type_names(tmp_path):
    cfg = tmp_path / "pipeline.json"
    cfg.write_text(
        json.dumps(
            {
                "replication_mode": "FULL_TABLE",
                "source": {"letters": {"letters": "abcde"}},
                "transform": {"add_op_fields": False},
                "target": {"memory": {"batch_size": 1}},
            }
        )
    )
    Memory.seen = []
    summary = driver("letters", "default", "memory", str(cfg), progress="off")
    assert summary["rows_loaded"] == 5
    assert sorted(Memory.seen) == list("abcde")


def test_driver_mixes_a_python_source_with_a_plugin_target(tmp_path):
    cfg = tmp_path / "pipeline.json"
    out = tmp_path / "out"
    cfg.write_text(
        json.dumps(
            {
                "replication_mode": "FULL_TABLE",
                "source": {"letters": {"letters": "xyz"}},
                "target": {"file": {"path": str(out), "format": "jsonl"}},
            }
        )
    )
    driver(Letters, "default", "file", cfg, progress="off")
    lines = [json.loads(line) for f in sorted(out.rglob("*.jsonl")) for line in f.read_text().splitlines()]
    assert sorted(r["letter"] for r in lines) == ["x", "y", "z"]
    assert all(r["_op_type"] == "i" for r in lines)


def test_the_example_script_runs(repo, tmp_path):
    out = tmp_path / "orders"
    done = subprocess.run(
        [sys.executable, str(repo / "examples/python_pipeline.py"), str(out)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "loaded 100000 rows" in done.stdout
    table = pq.read_table(sorted(out.rglob("*.parquet"))[0])
    assert "amount_with_tax" in table.column_names
