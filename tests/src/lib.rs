//! End-to-end test support for fastlane: locating the built binary and plugins, running the
//! command line, and the plugin conformance suite ([`conformance`]) that every plugin crate
//! runs against its real `.so` through the engine.
//!
//! Build the workspace first (`cargo build --workspace`): the tests use the `fastlane` binary
//! and the plugin libraries from the same target folder as the test executables.

pub mod conformance;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The target folder holding the binary and the plugins (`target/debug`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/<test> → target/debug
    let mut dir = exe.parent().expect("deps folder").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// The virtual environment of the Python test servers (moto, BriskDB, bqemulator) that
/// `tests/services.sh start` installs: `services-venv` in the test cache (`tests/cache.sh`:
/// `$FASTLANE_TEST_CACHE`, else `${XDG_CACHE_HOME:-~/.cache}/fastlane-tests`).
pub fn services_venv() -> PathBuf {
    let env = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let cache = env("FASTLANE_TEST_CACHE").unwrap_or_else(|| {
        env("XDG_CACHE_HOME")
            .or_else(|| env("HOME").map(|h| h.join(".cache")))
            .unwrap_or_else(|| PathBuf::from(".cache"))
            .join("fastlane-tests")
    });
    cache.join("services-venv")
}

/// The `fastlane` binary.
pub fn fastlane_bin() -> PathBuf {
    built("fastlane")
}

fn built(file_name: &str) -> PathBuf {
    let path = target_dir().join(file_name);
    let build = if file_name.contains("abi1") {
        // A workspace of its own (see tests/plugins/abi1/Cargo.toml).
        "cargo build --manifest-path tests/plugins/abi1/Cargo.toml"
    } else {
        "cargo build --workspace"
    };
    assert!(
        path.exists(),
        "{} is missing: run `{build}` before the tests",
        path.display()
    );
    path
}

/// A built plugin library, by crate suffix (`file` → `libfastlane_plugin_file.so`).
pub fn plugin_lib(name: &str) -> PathBuf {
    built(&format!("libfastlane_plugin_{name}.so"))
}

/// A built test-only plugin library (`misbehave` → `libfastlane_testplugin_misbehave.so`).
pub fn test_plugin_lib(name: &str) -> PathBuf {
    built(&format!("libfastlane_testplugin_{name}.so"))
}

/// A temporary plugin folder holding the given test-only plugins under plugin names.
pub fn test_plugin_dir(names: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for name in names {
        std::fs::copy(
            test_plugin_lib(name),
            dir.path().join(format!("libfastlane_plugin_{name}.so")),
        )
        .expect("copy test plugin");
    }
    dir
}

/// What a command printed and how it exited.
#[derive(Debug)]
pub struct Output {
    /// Exit code (`-1` when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs `fastlane` with `args` in `cwd`, with colours and progress lines off.
pub fn fastlane(cwd: &Path, args: &[&str]) -> Output {
    fastlane_with_env(cwd, args, &[])
}

/// Like [`fastlane`], with extra environment variables.
pub fn fastlane_with_env(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let out = Command::new(fastlane_bin())
        .args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .env_remove("FASTLANE_PLUGIN_PATH")
        .env_remove("RUST_LOG")
        .env("XDG_DATA_HOME", cwd.join(".no-user-plugins"))
        .envs(env.iter().copied())
        .output()
        .expect("run fastlane");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Replaces what changes from run to run (paths, run ids, timings, rates, sizes) with
/// placeholders, for snapshots.
pub fn redact(text: &str, tmp: &Path) -> String {
    let mut out = text.replace(&tmp.display().to_string(), "[TMP]");
    out = out.replace(&target_dir().display().to_string(), "[TARGET]");
    let rules: [(&str, &str); 8] = [
        (r"\d{8}T\d{6}Z-[0-9a-f]{6}", "[RUN]"),
        (r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d+Z", "[TIME]"),
        (r"[\d,]+(\.\d+)?M? rows/s", "[RATE]"),
        (r"\d+(\.\d+)? s\b", "[SECS]"),
        (r"\d+(\.\d+)? (B|KiB|MiB|GiB)\b", "[BYTES]"),
        (r"\(at [^)]*\)", "(at [LOCATION])"),
        (r"no progress for \d+\.\d", "no progress for [N]"),
        (r"peak \d+/", "peak [N]/"),
    ];
    for (pattern, replacement) in rules {
        out = regex_lite::Regex::new(pattern)
            .expect("pattern")
            .replace_all(&out, replacement)
            .into_owned();
    }
    out
}

/// Waits (up to 20 s) for a test server to write its port, digits and a newline, to `path`,
/// and returns the port.
pub fn read_port_file(path: &Path) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && text.ends_with('\n')
        {
            return text.trim().to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no port in {} after 20 s: the test server did not start",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The TCP proxy of the tests that cuts connections (`tests/mongodb/tcp_cut.py`), to play a
/// server lost in the middle of a read; stopped when dropped.
pub struct TcpCutter {
    child: std::process::Child,
    /// The port the proxy listens on, on 127.0.0.1.
    pub port: String,
    stats: PathBuf,
    _dir: tempfile::TempDir,
}

impl TcpCutter {
    /// Relays to `upstream` (`host:port`) and closes a connection once it has relayed more than
    /// `cut_after` bytes from the upstream, for the first `cuts` connections (every one when
    /// negative).
    pub fn start(upstream: &str, cut_after: usize, cuts: i32) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("mongodb/tcp_cut.py");
        let port_file = dir.path().join("port");
        let stats = dir.path().join("stats.json");
        let child = Command::new("python3")
            .arg(script)
            .args(["--upstream", upstream])
            .arg(format!("--cut-after={cut_after}"))
            .arg(format!("--cuts={cuts}"))
            .arg("--port-file")
            .arg(&port_file)
            .arg("--stats")
            .arg(&stats)
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("python3 runs the TCP proxy");
        let port = read_port_file(&port_file);
        Self {
            child,
            port,
            stats,
            _dir: dir,
        }
    }

    /// `{"connections": n, "cuts": n}` so far.
    pub fn stats(&self) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(&self.stats).expect("proxy stats"))
            .expect("proxy stats are JSON")
    }
}

impl Drop for TcpCutter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `fastlane run --no-monitor --progress=off --config CONFIG` (and `extra`) in `cwd` to its
/// end, asserting that it succeeds; its `--summary-json`, parsed.
pub fn run_to_end(cwd: &Path, config: &Path, extra: &[&str]) -> serde_json::Value {
    let summary = cwd.join("summary.json");
    let _ = std::fs::remove_file(&summary);
    let mut args = vec![
        "run".to_owned(),
        "--no-monitor".to_owned(),
        "--progress=off".to_owned(),
        format!("--config={}", config.display()),
        format!("--summary-json={}", summary.display()),
    ];
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = fastlane(cwd, &args);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let text = std::fs::read_to_string(&summary).expect("the run's summary");
    serde_json::from_str(&text).expect("summary JSON")
}

/// Starts `fastlane run --no-monitor --progress=off --config CONFIG` in `cwd`, and kills it with
/// SIGKILL as soon as `kill_now()` says so; whether it was still running then (false: it ended
/// first).
pub fn run_killed_when(cwd: &Path, config: &Path, kill_now: &dyn Fn() -> bool) -> bool {
    let mut child = Command::new(fastlane_bin())
        .args(["run", "--no-monitor", "--progress=off", "--config"])
        .arg(config)
        .current_dir(cwd)
        .env("XDG_DATA_HOME", cwd.join(".no-user-plugins"))
        .env_remove("FASTLANE_PLUGIN_PATH")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run fastlane");
    let started = std::time::Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return false;
        }
        if kill_now() {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(300),
            "the load made no progress"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
    true
}

/// The batches of every `.parquet` file of `dir` (not its subfolders), files in name order.
pub fn parquet_folder(dir: &Path) -> Vec<arrow_array::RecordBatch> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("the output folder")
        .map(|e| e.expect("a folder entry").path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    files.sort();
    let mut batches = Vec::new();
    for file in files {
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(&file).expect("open a parquet file"),
        )
        .expect("a parquet file")
        .build()
        .expect("a parquet reader");
        batches.extend(reader.map(|b| b.expect("a parquet batch")));
    }
    batches
}
