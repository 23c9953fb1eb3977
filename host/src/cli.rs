//! The `fastlane` command line.
//!
//! ```text
//! fastlane --source=file --target=file --config=pipeline.json     run a pipeline (the original's flags)
//! fastlane run --config=pipeline.json                             the same; --source/--target may be
//!                                                                 left out when the config has one of each
//! fastlane run --config=pipeline.json --resume RUN_ID | --fresh  continue an unfinished run, or start over
//! fastlane validate --config=pipeline.json                        check a configuration, run nothing
//! fastlane plugins list [--json]                                  plugins found, and those that failed
//! fastlane plugins schema <source|transform|target> <id>          a component's configuration schema
//! fastlane plugins check PATH.so [--config FILE] [--json]        the conformance suite on a plugin file
//! fastlane plugins new NAME [--kind source|transform|target] [--path DIR]  a new plugin project
//! fastlane serve [--bind=127.0.0.1:8001] [--store=URL] [--token=T] [--read-token=T] the monitoring API and web UI
//! fastlane store prune --older-than-days=N [--store=URL]    remove old samples and log lines
//! fastlane store migrate --from=URL --to=URL               copy a store (or the original's) into another
//! ```
//!
//! Exit codes: 0 success, 1 the run failed (or a conformance check failed), 2 bad usage or
//! configuration, 3 plugins failed to load (`plugins list`, `plugins check`), 4 the run was stopped (SIGINT, SIGTERM or a stop request), 5 the
//! service could not start.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};
use fastlane_plugin_api::ComponentKind;

use crate::config::{self, Selection};
use crate::engine::{self, RunSummary};
use crate::plugins::{Registry, search_dirs};
use crate::progress::{self, Progress, ProgressMode};
use crate::{log_sinks, logging, monitoring, runner, transforms};

/// Move data from a source through a transform into a target.
#[derive(Debug, Parser)]
#[command(
    name = "fastlane",
    version,
    args_conflicts_with_subcommands = true,
    after_help = "Run a pipeline: fastlane --source=file --target=file --config=pipeline.json"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    global: GlobalArgs,
}

#[derive(Debug, Args)]
struct GlobalArgs {
    /// Search this folder for plugins before the others (repeatable).
    #[arg(long = "plugin-dir", value_name = "DIR", global = true)]
    plugin_dirs: Vec<PathBuf>,
    /// Search only --plugin-dir and FASTLANE_PLUGIN_PATH, not the executable's or user folder.
    #[arg(long, global = true)]
    no_default_plugins: bool,
    /// More log output (repeatable).
    #[arg(short, long, action = ArgAction::Count, global = true)]
    verbose: u8,
    /// Less log output (repeatable).
    #[arg(short, long, action = ArgAction::Count, global = true)]
    quiet: u8,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The source type (a source id, e.g. `file`, `sqlite`).
    #[arg(long, value_name = "ID")]
    source: Option<String>,
    /// The transform type [default: default].
    #[arg(long, value_name = "ID")]
    transform: Option<String>,
    /// The target type (a target id, e.g. `file`).
    #[arg(long, value_name = "ID")]
    target: Option<String>,
    /// The pipeline's JSON configuration file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Also append logs to this file.
    #[arg(long = "logs_to_file", alias = "logs-to-file", value_name = "PATH")]
    logs_to_file: Option<PathBuf>,
    /// Also send logs to CloudWatch Logs (needs the aws plugin; `logs.cloudwatch` in the
    /// configuration sets the group, stream, level and region).
    #[arg(long = "logs_to_cloudwatch", alias = "logs-to-cloudwatch")]
    logs_to_cloudwatch: bool,
    /// The CloudWatch log group [default: the pipeline's id].
    #[arg(
        long = "cloudwatch_log_group",
        alias = "cloudwatch-log-group",
        value_name = "GROUP"
    )]
    cloudwatch_log_group: Option<String>,
    /// The CloudWatch log stream [default: the run's start time and id].
    #[arg(
        long = "cloudwatch_log_stream",
        alias = "cloudwatch-log-stream",
        value_name = "STREAM"
    )]
    cloudwatch_log_stream: Option<String>,
    /// Also send error logs and the run summary to a Slack incoming webhook: the URL given
    /// here, or `logs.slack.webhook_url`, or FASTLANE_SLACK_WEBHOOK_URL.
    #[arg(
        long = "logs_to_slack",
        alias = "logs-to-slack",
        value_name = "URL",
        num_args = 0..=1,
        require_equals = true
    )]
    logs_to_slack: Option<Option<String>>,
    /// How to show progress.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    progress: ProgressMode,
    /// Seconds between progress log lines when not on a terminal.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    progress_interval: f64,
    /// Write the run summary as JSON to this file.
    #[arg(long, value_name = "FILE")]
    summary_json: Option<PathBuf>,
    /// Report the run to this monitoring service (default: the local store, or
    /// `monitoring` in the configuration, or FASTLANE_MONITOR_URL).
    #[arg(long, value_name = "URL")]
    monitor_url: Option<String>,
    /// Do not report the run to the monitor.
    #[arg(long)]
    no_monitor: bool,
    /// Continue this unfinished run (its id, as the summary of the failed run printed it);
    /// fail if it cannot be resumed.
    #[arg(long, value_name = "RUN_ID", conflicts_with = "fresh")]
    resume: Option<String>,
    /// Start afresh, discarding the staging of any unfinished run of this pipeline.
    #[arg(long)]
    fresh: bool,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:8001",
        env = "FASTLANE_BIND"
    )]
    bind: std::net::SocketAddr,
    /// The store: a SQLite file, a postgres:// or a mysql:// URL [default: the local store, as
    /// runs use].
    #[arg(long, value_name = "URL", env = "FASTLANE_STORE")]
    store: Option<String>,
    /// Bearer token of full access; with any token set, every route but /healthz needs one.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "FASTLANE_API_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// Bearer token that may only read (dashboards, Prometheus scrapes of /metrics).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "FASTLANE_API_READ_TOKEN",
        hide_env_values = true
    )]
    read_token: Option<String>,
    /// A file of named tokens, one per line: `<name> <read|write> <token>`.
    #[arg(long, value_name = "FILE", env = "FASTLANE_API_TOKENS_FILE")]
    tokens_file: Option<PathBuf>,
    /// Remove samples and log lines older than this many days, at start and every hour.
    #[arg(long, value_name = "DAYS", env = "FASTLANE_RETENTION_DAYS")]
    retention_days: Option<f64>,
    /// Refused tokens a client may present per minute before it is answered 429 (0: no limit).
    #[arg(long, value_name = "N", default_value_t = fastlane_monitor::server::MAX_FAILURES)]
    max_token_failures: u32,
    /// Serve without any token on an address other than loopback (anyone who reaches it can
    /// read, change and delete pipelines and runs).
    #[arg(long)]
    insecure_no_auth: bool,
    /// The largest request body accepted, bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 1024 * 1024)]
    body_limit: usize,
}

#[derive(Debug, Args)]
struct ValidateArgs {
    /// The source type.
    #[arg(long, value_name = "ID")]
    source: Option<String>,
    /// The transform type [default: default].
    #[arg(long, value_name = "ID")]
    transform: Option<String>,
    /// The target type.
    #[arg(long, value_name = "ID")]
    target: Option<String>,
    /// The configuration file to check.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a pipeline (the same as the top-level flags).
    Run(RunArgs),
    /// Check a configuration against the plugins' schemas without running anything.
    Validate(ValidateArgs),
    /// Inspect plugins.
    #[command(subcommand)]
    Plugins(PluginsCommand),
    /// Serve the monitoring API, Prometheus metrics and web UI.
    Serve(ServeArgs),
    /// Maintain a monitoring store.
    #[command(subcommand)]
    Store(StoreCommand),
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Remove the samples and log lines older than some days (runs and pipelines stay), in
    /// bounded batches, so that runs reporting meanwhile are not held up.
    Prune {
        /// Remove what is older than this many days.
        #[arg(long, value_name = "DAYS")]
        older_than_days: f64,
        /// The store: a SQLite file, a postgres:// or a mysql:// URL [default: the local store].
        #[arg(long, value_name = "URL", env = "FASTLANE_STORE")]
        store: Option<String>,
        /// Rows removed per statement.
        #[arg(long, value_name = "ROWS", default_value_t = 5000)]
        batch_size: i64,
    },
    /// Copy a store into another, empty one (SQLite, PostgreSQL, MySQL), keeping every id; or read a
    /// database laid out as the original fastlane's store into one.
    Migrate {
        /// The store (or the original's database) to read.
        #[arg(long, value_name = "URL")]
        from: String,
        /// The store to write; it must be empty.
        #[arg(long, value_name = "URL")]
        to: String,
    },
}

#[derive(Debug, Subcommand)]
enum PluginsCommand {
    /// List the plugins found and their components, and the files that failed to load.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run the conformance suite against a plugin file and report every check; exits non-zero
    /// when a check fails.
    Check {
        /// The plugin library (`.so`).
        path: PathBuf,
        /// A check file giving configurations for the plugin's sources and targets (JSON:
        /// `{"sources": {ID: {"config": …, "key": …}}, "targets": {ID: {"config": …,
        /// "read_back": {"source": ID, "config": …}}}, "transforms": {ID: {"config": …}}}`;
        /// `{dir}` and `{name}` in a configuration stand for a fresh folder and a fresh name).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Fail a check when one call into the plugin takes longer than this many seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a new plugin project: a cargo crate building `libfastlane_plugin_NAME.so` with one
    /// working component, a check file and a test running `fastlane plugins check` on it.
    New {
        /// The plugin's name (and its component's id): lower-case letters, digits and `_`.
        name: String,
        /// The component: source, transform or target.
        #[arg(long, default_value = "source")]
        kind: String,
        /// The project folder (default: `fastlane-plugin-NAME` here); it must not exist or be
        /// empty.
        #[arg(long)]
        path: Option<PathBuf>,
    },
    /// Print the JSON Schema of a component's configuration.
    Schema {
        /// source, transform or target.
        kind: String,
        /// The component id.
        id: String,
    },
}

const EXIT_RUN_FAILED: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_PLUGINS: u8 = 3;
const EXIT_STOPPED: u8 = 4;
const EXIT_SERVICE: u8 = 5;

/// How long each log sink may take to send its last lines at the end of a run.
const SINK_FINISH_LIMIT: Duration = Duration::from_secs(15);

/// Runs the command line with `args` (including the program name).
pub fn main<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    ExitCode::from(exit_code(args))
}

/// Runs the command line with `args` (including the program name) and returns the exit code.
pub fn exit_code<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { EXIT_USAGE } else { 0 };
        }
    };
    logging::init(cli.global.verbose as i8 - cli.global.quiet as i8);
    match cli.command {
        Some(Command::Run(args)) => run(&args, &cli.global),
        Some(Command::Validate(args)) => validate(&args, &cli.global),
        Some(Command::Plugins(PluginsCommand::List { json })) => plugins_list(json, &cli.global),
        Some(Command::Plugins(PluginsCommand::Check {
            path,
            config,
            timeout,
            json,
        })) => plugins_check(&path, config.as_deref(), timeout, json),
        Some(Command::Plugins(PluginsCommand::New { name, kind, path })) => {
            plugins_new(&name, &kind, path)
        }
        Some(Command::Plugins(PluginsCommand::Schema { kind, id })) => {
            plugins_schema(&kind, &id, &cli.global)
        }
        Some(Command::Serve(args)) => serve(&args, &cli.global),
        Some(Command::Store(StoreCommand::Prune {
            older_than_days,
            store,
            batch_size,
        })) => store_prune(older_than_days, store.as_deref(), batch_size),
        Some(Command::Store(StoreCommand::Migrate { from, to })) => store_migrate(&from, &to),
        None if cli.run.config.is_none()
            && cli.run.source.is_none()
            && cli.run.target.is_none() =>
        {
            use clap::CommandFactory;
            let _ = Cli::command().print_help();
            EXIT_USAGE
        }
        None => run(&cli.run, &cli.global),
    }
}

fn registry(global: &GlobalArgs) -> Registry {
    let dirs = search_dirs(&global.plugin_dirs, !global.no_default_plugins);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get() as u32);
    Registry::load(dirs, transforms::builtin_components(), threads)
}

fn report_registry(registry: &Registry) {
    for w in &registry.warnings {
        tracing::warn!("{w}");
    }
    for f in &registry.failures {
        tracing::warn!("{f}");
    }
}

fn print_error(error: &dyn std::error::Error) {
    eprintln!("error: {error}");
    for cause in crate::error::causes(error) {
        eprintln!("  caused by: {cause}");
    }
}

fn run(args: &RunArgs, global: &GlobalArgs) -> u8 {
    match CheckedRun::check(args, global) {
        Ok(checked) => checked.execute(args),
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_USAGE
        }
    }
}

/// Why a run cannot start: bad usage or configuration (exit code 2).
#[derive(Debug, thiserror::Error)]
enum UsageError {
    /// No `--config`.
    #[error(
        "no configuration given\n  hint: fastlane --source=<id> --target=<id> --config=pipeline.json"
    )]
    NoConfig,
    /// `--logs_to_file` or `logs.log_file` cannot be opened.
    #[error("cannot open the log file `{path}`{field}: {source}")]
    LogFile {
        /// The file.
        path: String,
        /// ` (logs.log_file)` when the configuration named it.
        field: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration has problems.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
}

/// A run whose flags and configuration were checked, with the plugins found: what
/// [`CheckedRun::execute`] builds and runs.
struct CheckedRun {
    config: config::PipelineConfig,
    registry: Registry,
}

impl CheckedRun {
    /// Checks the flags, opens the log files, finds the plugins and loads the configuration.
    fn check(args: &RunArgs, global: &GlobalArgs) -> Result<Self, UsageError> {
        let config_path = args.config.as_ref().ok_or(UsageError::NoConfig)?;
        if let Some(path) = &args.logs_to_file {
            logging::log_to_file(path).map_err(|source| UsageError::LogFile {
                path: path.display().to_string(),
                field: "",
                source,
            })?;
        }
        let (registry, config) = load_config(
            config_path,
            [&args.source, &args.transform, &args.target],
            global,
        );
        let config = config?;
        if let Some(path) = &config.logs.log_file {
            logging::log_to_file(std::path::Path::new(path)).map_err(|source| {
                UsageError::LogFile {
                    path: path.clone(),
                    field: " (logs.log_file)",
                    source,
                }
            })?;
        }
        Ok(Self { config, registry })
    }

    /// Starts the log sinks and the monitor, builds the components, runs the pipeline and
    /// reports how it went; the exit code.
    fn execute(self, args: &RunArgs) -> u8 {
        let Self { config, registry } = self;
        let mut options = runner::engine_options(&config);
        if let Some(checkpoint) = options.checkpoint.as_mut() {
            if let Some(run) = &args.resume {
                checkpoint.resume = engine::Resume::Run(run.clone());
            } else if args.fresh {
                checkpoint.resume = engine::Resume::Never;
            }
        }
        let sinks = match start_sinks(&config, &registry, args, &options.run_id) {
            Ok(s) => s,
            Err(code) => return code,
        };
        let stop = stop_flag();
        options.stop = Some(stop.clone());
        let mut monitor = start_monitor(&config, args, &options.run_id, &stop, &sinks);
        // Components connect when they are built: a failure here is a failed run, and recorded.
        let pipeline = match runner::build(&config, &registry) {
            Ok((p, _)) => p,
            Err(e) => {
                print_error(&e);
                let error = crate::error::chain(&e);
                if let Some(m) = monitor {
                    m.fail(&error);
                }
                sinks.finish(log_sinks::RunEnd::NotStarted(&error), SINK_FINISH_LIMIT);
                return EXIT_RUN_FAILED;
            }
        };
        tracing::info!(
            run_id = %options.run_id,
            "running {} `{}` → {} → {} `{}` ({})",
            "source",
            config.source.id,
            if pipeline.transforms.is_empty() {
                "no transform".to_owned()
            } else {
                format!("transform `{}`", config.transform.id)
            },
            "target",
            config.target.id,
            options.mode,
        );
        let mut progress = Progress::new(
            args.progress,
            Duration::from_secs_f64(args.progress_interval.max(0.1)),
        );
        let result = match monitor.as_mut() {
            Some(m) => engine::run(pipeline, &options, &mut monitoring::Tee(&mut progress, m)),
            None => engine::run(pipeline, &options, &mut progress),
        };
        progress.finish();
        let (summary, code) = match &result {
            Ok(s) => (s, 0),
            Err(f) if f.summary.status == engine::RunStatus::Stopped => {
                (f.summary.as_ref(), EXIT_STOPPED)
            }
            Err(f) => (f.summary.as_ref(), EXIT_RUN_FAILED),
        };
        if let Some(m) = monitor
            && let Some(n) = m.finish(summary)
        {
            let pipeline_id = monitoring::pipeline_id(&config);
            tracing::info!(run_id = %options.run_id, "recorded as run {n} of `{pipeline_id}`");
        }
        sinks.finish(log_sinks::RunEnd::Ran(summary), SINK_FINISH_LIMIT);
        report_run(summary, args.summary_json.as_deref());
        if let Err(failed) = &result {
            print_error(failed);
            if let Some(abort) = &failed.abort_error {
                eprintln!("  note: the target's abort failed too: {abort}");
            }
        }
        code
    }
}

/// Starts the run's log sinks (CloudWatch, Slack); on failure, the exit code.
fn start_sinks(
    config: &config::PipelineConfig,
    registry: &Registry,
    args: &RunArgs,
    run_id: &str,
) -> Result<log_sinks::Sinks, u8> {
    let flags = log_sinks::SinkFlags {
        cloudwatch: args.logs_to_cloudwatch,
        cloudwatch_log_group: args.cloudwatch_log_group.clone(),
        cloudwatch_log_stream: args.cloudwatch_log_stream.clone(),
        slack: args.logs_to_slack.clone(),
    };
    let pipeline_id = monitoring::pipeline_id(config);
    log_sinks::Sinks::start(config, &flags, registry, &pipeline_id, run_id).map_err(|e| {
        eprintln!("error: {e}");
        match e {
            log_sinks::SinkError::Config { .. } => EXIT_USAGE,
            _ => EXIT_RUN_FAILED,
        }
    })
}

/// Starts reporting the run to the monitor the flags and configuration name, if any.
fn start_monitor(
    config: &config::PipelineConfig,
    args: &RunArgs,
    run_id: &str,
    stop: &std::sync::Arc<std::sync::atomic::AtomicBool>,
    sinks: &log_sinks::Sinks,
) -> Option<monitoring::RunMonitor> {
    let overrides = monitoring::Overrides {
        url: args.monitor_url.clone(),
        disabled: args.no_monitor,
    };
    monitoring::destination(&config.monitoring, &overrides).and_then(|(dest, interval)| {
        tracing::debug!("reporting to the {dest}");
        monitoring::RunMonitor::start(
            config,
            run_id,
            dest,
            interval,
            stop.clone(),
            sinks.cloudwatch_place(),
        )
    })
}

/// Prints the run summary, and writes it as JSON where `--summary-json` asks.
fn report_run(summary: &RunSummary, summary_json: Option<&std::path::Path>) {
    out(format_args!("{}", render_summary(summary)));
    if let Some(path) = summary_json {
        let text = serde_json::to_string_pretty(summary).unwrap_or_default();
        if let Err(e) = std::fs::write(path, text) {
            eprintln!(
                "error: cannot write the summary to `{}`: {e}",
                path.display()
            );
        }
    }
}

/// The run summary as text.
pub fn render_summary(s: &RunSummary) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let status = match s.status {
        engine::RunStatus::Succeeded => "succeeded",
        engine::RunStatus::Failed => "failed",
        engine::RunStatus::Stopped => "stopped",
    };
    let _ = writeln!(
        out,
        "run {} {status}: {} rows loaded in {:.2} s ({}), {} partition(s)",
        s.run_id,
        progress::count(s.rows_loaded),
        s.duration_secs,
        progress::rate(s.rows_per_sec),
        s.partitions,
    );
    if let Some(o) = &s.start_offset {
        let _ = writeln!(out, "  started after offset {o}");
    }
    if let Some(c) = &s.checkpoint {
        if c.resumed {
            let _ = writeln!(
                out,
                "  resumed run {}: {} rows already loaded, {} read now",
                c.staging_run_id,
                progress::count(c.rows_already_loaded),
                progress::count(s.rows_extracted),
            );
        }
        if c.kept {
            let _ = writeln!(
                out,
                "  the staging of run {} is kept: the next run of this pipeline resumes it (or \
                 run with --fresh to start over)",
                c.staging_run_id
            );
        }
    }
    if let Some(v) = &s.verification {
        let counted = |n: Option<u64>| n.map_or("?".to_owned(), progress::count);
        let status = match v.status {
            engine::VerificationStatus::Passed => "verified",
            engine::VerificationStatus::Failed => "verification failed",
            engine::VerificationStatus::Skipped => "not verified",
        };
        let _ = writeln!(
            out,
            "  {status}: the source counts {} rows, {} were read, the staging counts {}",
            counted(v.source_rows),
            progress::count(v.read_rows),
            counted(v.target_rows),
        );
        if v.source_checksum.is_some() || v.target_checksum.is_some() {
            let sum = |c: &Option<String>| c.clone().unwrap_or_else(|| "?".to_owned());
            let _ = writeln!(
                out,
                "    checksums: the source's {}, the staging's {}",
                sum(&v.source_checksum),
                sum(&v.target_checksum),
            );
        }
        if let Some(note) = &v.note
            && v.status != engine::VerificationStatus::Failed
        {
            let _ = writeln!(out, "    ({note})");
        }
    }
    for st in &s.stages {
        let _ = writeln!(
            out,
            "  {:<9} {:<12} {} worker(s), {} batches, {} rows, {}, {}, busy {:.2} s",
            st.stage.to_string(),
            format!("`{}`", st.component),
            st.workers,
            progress::count(st.totals.batches),
            progress::count(st.totals.rows),
            progress::bytes(st.totals.bytes),
            progress::rate(st.rows_per_sec),
            st.totals.busy.as_secs_f64(),
        );
    }
    for q in &s.queues {
        let _ = writeln!(
            out,
            "  queue {}: peak {}/{} batches, {} of {}",
            q.name,
            q.peak_batches,
            q.max_batches,
            progress::bytes(q.peak_bytes as u64),
            progress::bytes(q.max_bytes as u64),
        );
    }
    let _ = writeln!(out, "  peak memory {}", progress::bytes(s.peak_rss_bytes));
    out
}

/// Finds the plugins (reporting those that failed to load), then loads the configuration with
/// the source, transform and target the flags select.
fn load_config(
    path: &std::path::Path,
    [source, transform, target]: [&Option<String>; 3],
    global: &GlobalArgs,
) -> (
    Registry,
    Result<config::PipelineConfig, config::ConfigError>,
) {
    let registry = registry(global);
    report_registry(&registry);
    let selection = Selection {
        source: source.clone(),
        transform: transform.clone(),
        target: target.clone(),
    };
    let loaded = config::load_file(path, &selection, &registry);
    (registry, loaded)
}

fn validate(args: &ValidateArgs, global: &GlobalArgs) -> u8 {
    let stages = [&args.source, &args.transform, &args.target];
    match load_config(&args.config, stages, global).1 {
        Ok(c) => {
            out(format_args!(
                "`{}` is valid: source `{}` → transform `{}` → target `{}`, {}\n",
                args.config.display(),
                c.source.id,
                c.transform.id,
                c.target.id,
                c.replication_mode
            ));
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_USAGE
        }
    }
}

fn plugins_list(json: bool, global: &GlobalArgs) -> u8 {
    let registry = registry(global);
    if json {
        let value = serde_json::json!({
            "search_path": registry.dirs.iter().map(|d| serde_json::json!({
                "path": d.path, "origin": d.origin,
            })).collect::<Vec<_>>(),
            "plugins": registry.plugins.iter().map(|p| serde_json::json!({
                "name": p.name,
                "version": p.version,
                "abi_version": p.abi_version,
                "description": p.description,
                "path": p.path,
                "origin": p.origin,
                "components": p.components,
            })).collect::<Vec<_>>(),
            "builtin": registry.components().filter(|c| c.plugin.is_none()).map(|c| &c.info).collect::<Vec<_>>(),
            "failures": registry.failures.iter().map(|f| serde_json::json!({
                "path": f.path(), "error": f.to_string(),
            })).collect::<Vec<_>>(),
            "warnings": registry.warnings,
        });
        out(format_args!(
            "{}\n",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        ));
    } else {
        let rows: Vec<[String; 6]> = registry
            .components()
            .map(|c| {
                let (plugin, version, from) = match &c.plugin {
                    Some(p) => (
                        p.name.clone(),
                        p.version.clone(),
                        p.path.display().to_string(),
                    ),
                    None => (
                        "fastlane".into(),
                        env!("CARGO_PKG_VERSION").into(),
                        "built-in".into(),
                    ),
                };
                let capabilities = match c.info.kind {
                    ComponentKind::Transform => "-".to_owned(),
                    _ if c.info.capabilities.is_empty() => "none".to_owned(),
                    _ => c
                        .info
                        .capabilities
                        .iter()
                        .map(|c| c.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                };
                [
                    c.info.kind.as_str().to_owned(),
                    c.info.id.clone(),
                    plugin,
                    version,
                    capabilities,
                    from,
                ]
            })
            .collect();
        // Each column as wide as its longest entry (at least its heading).
        let headings = ["KIND", "ID", "PLUGIN", "VERSION", "CAPABILITIES"];
        let widths: Vec<usize> = (0..5)
            .map(|i| {
                rows.iter()
                    .map(|r| r[i].chars().count())
                    .chain([headings[i].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: [&str; 6]| {
            let mut text = String::new();
            for (cell, width) in cells.iter().zip(&widths) {
                text.push_str(&format!("{cell:<width$} "));
            }
            text.push_str(cells[5]);
            text.push('\n');
            text
        };
        out(format_args!(
            "{}",
            line(["KIND", "ID", "PLUGIN", "VERSION", "CAPABILITIES", "FROM"])
        ));
        for r in &rows {
            out(format_args!(
                "{}",
                line([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5]])
            ));
        }
        for w in &registry.warnings {
            eprintln!("warning: {w}");
        }
        for f in &registry.failures {
            eprintln!("error: {f}");
        }
    }
    if registry.failures.is_empty() {
        0
    } else {
        EXIT_PLUGINS
    }
}

fn plugins_new(name: &str, kind: &str, path: Option<PathBuf>) -> u8 {
    let kind = match kind {
        "source" => ComponentKind::Source,
        "transform" => ComponentKind::Transform,
        "target" => ComponentKind::Target,
        other => {
            eprintln!("error: --kind must be source, transform or target, not `{other}`");
            return EXIT_USAGE;
        }
    };
    let dir = path.unwrap_or_else(|| PathBuf::from(format!("fastlane-plugin-{name}")));
    match crate::scaffold::new_plugin(name, kind, &dir) {
        Ok(files) => {
            out(format_args!(
                "wrote the plugin project `{}` ({} files), with the {kind} `{name}`:\n",
                dir.display(),
                files.len()
            ));
            for f in files {
                out(format_args!("  {}\n", f.display()));
            }
            out(format_args!(
                "next: cd {} && cargo test   (builds libfastlane_plugin_{name}.so and runs `fastlane \
                 plugins check` on it)\n",
                dir.display()
            ));
            0
        }
        Err(e) => {
            print_error(&e);
            EXIT_USAGE
        }
    }
}

fn plugins_check(path: &Path, config: Option<&Path>, timeout: u64, json: bool) -> u8 {
    use crate::conformance::{CheckOptions, CheckSpec, check_file};
    let spec = match config.map(CheckSpec::read).transpose() {
        Ok(spec) => spec.unwrap_or_default(),
        Err(e) => {
            print_error(&e);
            return EXIT_USAGE;
        }
    };
    let options = CheckOptions {
        stall_timeout: Duration::from_secs(timeout.max(1)),
        ..CheckOptions::default()
    };
    let report = check_file(path, &spec, &options);
    if json {
        out(format_args!(
            "{}\n",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        ));
    } else {
        out(format_args!("{report}\n"));
    }
    if report.plugin.is_none() {
        EXIT_PLUGINS
    } else if report.passed() {
        0
    } else {
        EXIT_RUN_FAILED
    }
}

fn plugins_schema(kind: &str, id: &str, global: &GlobalArgs) -> u8 {
    let Some(kind) = ComponentKind::parse(kind) else {
        eprintln!("error: unknown kind `{kind}`; expected source, transform or target");
        return EXIT_USAGE;
    };
    let registry = registry(global);
    report_registry(&registry);
    match registry.find(kind, id) {
        Some(c) => {
            out(format_args!(
                "{}\n",
                serde_json::to_string_pretty(&c.info.schema).unwrap_or_default()
            ));
            0
        }
        None => {
            let p = config::unknown_component(kind, id, &registry, "");
            eprintln!("error: {}", p.message);
            EXIT_USAGE
        }
    }
}

/// Writes to standard output. A reader that went away (`fastlane plugins list | head`) ends the
/// command quietly, as other command-line tools do, instead of a panic.
fn out(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

/// The stop flag of runs in this process, set by SIGINT or SIGTERM (a second signal quits at
/// once). Reset for each run.
fn stop_flag() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, OnceLock};
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    let flag = FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let f = flag.clone();
        let installed = ctrlc::set_handler(move || {
            if f.swap(true, Ordering::SeqCst) {
                eprintln!("\nstopping now");
                std::process::exit(130);
            }
            eprintln!(
                "\nstopping: finishing in-flight batches (press Ctrl-C again to quit at once)"
            );
        });
        if let Err(e) = installed {
            tracing::debug!("no signal handler: {e}");
        }
        flag
    });
    flag.store(false, Ordering::SeqCst);
    flag.clone()
}

fn serve(args: &ServeArgs, global: &GlobalArgs) -> u8 {
    let url = args
        .store
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(fastlane_monitor::store::default_url);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the service's runtime: {e}");
            return EXIT_SERVICE;
        }
    };
    runtime.block_on(async {
        let store = match open_store(&url).await {
            Ok(s) => s,
            Err(code) => return code,
        };
        let tokens = match &args.tokens_file {
            Some(path) => match std::fs::read_to_string(path)
                .map_err(|e| e.to_string())
                .and_then(|text| fastlane_monitor::server::ApiToken::parse_file(&text))
            {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("error: the tokens file `{}`: {e}", path.display());
                    return EXIT_USAGE;
                }
            },
            None => Vec::new(),
        };
        let opts = fastlane_monitor::server::ServeOptions {
            bind: args.bind,
            token: args.token.clone().filter(|t| !t.is_empty()),
            read_tokens: args.read_token.iter().filter(|t| !t.is_empty()).cloned().collect(),
            tokens,
            body_limit: args.body_limit,
            max_token_failures: args.max_token_failures,
            external_logs: crate::monitoring::CloudWatchRunLogs::new(registry(global)).map(|r| {
                fastlane_monitor::server::ExternalLogsHandle(std::sync::Arc::new(r))
            }),
        };
        if opts.all_tokens().is_empty() && !args.bind.ip().is_loopback() {
            if !args.insecure_no_auth {
                eprintln!(
                    "error: refusing to serve without a token on {}: anyone who can reach it could read, change and delete pipelines and runs\n  hint: set --token (or FASTLANE_API_TOKEN), or give --insecure-no-auth",
                    args.bind
                );
                return EXIT_USAGE;
            }
            tracing::warn!(
                "SERVING WITHOUT A TOKEN ON {} (--insecure-no-auth): anyone who can reach this address can read, change and delete pipelines and runs",
                args.bind
            );
        }
        let (addr, stop) = match fastlane_monitor::server::spawn(store.clone(), opts).await {
            Ok(x) => x,
            Err(e) => {
                eprintln!("error: cannot listen on {}: {e}", args.bind);
                return EXIT_SERVICE;
            }
        };
        tracing::info!(
            "serving the monitoring API and web UI on http://{addr} (store: {})",
            fastlane_monitor::store::display_url(&url)
        );
        out(format_args!("listening on http://{addr}\n"));
        let retention = args.retention_days.map(|days| {
            let store = store.clone();
            tokio::spawn(async move {
                loop {
                    prune_once(&store, days, 5000).await;
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
            })
        });
        shutdown_signal().await;
        if let Some(task) = retention {
            task.abort();
        }
        tracing::info!("shutting down");
        let _ = stop.send(());
        tokio::time::sleep(Duration::from_millis(200)).await;
        store.close().await;
        0
    })
}

/// A runtime for a store command, or the exit code when none can start.
fn command_runtime() -> Result<tokio::runtime::Runtime, u8> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start a runtime: {e}");
            EXIT_SERVICE
        })
}

/// Opens the monitoring store at `url`, or says why not (the exit code).
async fn open_store(url: &str) -> Result<fastlane_monitor::Store, u8> {
    fastlane_monitor::Store::open(url).await.map_err(|e| {
        print_error(&e);
        eprintln!(
            "  hint: the store is `{}`",
            fastlane_monitor::store::display_url(url)
        );
        EXIT_SERVICE
    })
}

/// The store's cut-off for samples and log lines kept `days` days.
fn retention_cutoff(days: f64) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    now - (days * 86_400_000.0) as i64
}

/// One pass of `serve --retention-days`: logged, never fatal.
async fn prune_once(store: &fastlane_monitor::Store, days: f64, batch: i64) {
    match store.prune(retention_cutoff(days), batch).await {
        Ok(p) => tracing::info!(
            "retention: removed {} samples and {} log lines older than {days} days",
            p.samples,
            p.log_lines
        ),
        Err(e) => tracing::warn!("retention: cannot remove old samples and log lines: {e}"),
    }
}

/// `fastlane store migrate`.
fn store_migrate(from: &str, to: &str) -> u8 {
    if from == to {
        eprintln!("error: --from and --to name the same store");
        return EXIT_USAGE;
    }
    let sqlite_path = from
        .strip_prefix("sqlite://")
        .or(from.strip_prefix("sqlite:"))
        .unwrap_or(from);
    if !from.contains("://") && !Path::new(sqlite_path).exists() || sqlite_path == ":memory:" {
        eprintln!("error: there is no store at `{from}`");
        return EXIT_USAGE;
    }
    let runtime = match command_runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    runtime.block_on(async {
        use fastlane_monitor::store::{connect, display_url, migrate};
        let original = match connect(from).await {
            Ok((pool, backend)) => {
                let original = migrate::is_original(&pool).await;
                if original {
                    Some((pool, backend))
                } else {
                    pool.close().await;
                    None
                }
            }
            Err(e) => {
                print_error(&e);
                eprintln!("  hint: --from is `{}`", display_url(from));
                return EXIT_SERVICE;
            }
        };
        let target = match open_store(to).await {
            Ok(s) => s,
            Err(code) => return code,
        };
        let copied = match &original {
            Some((pool, backend)) => target.import_original(pool, *backend).await,
            None => match open_store(from).await {
                Ok(source) => {
                    let copied = source.copy_into(&target).await;
                    source.close().await;
                    copied
                }
                Err(code) => return code,
            },
        };
        target.close().await;
        match copied {
            Ok(c) => {
                let what = c
                    .tables
                    .iter()
                    .map(|(t, n)| format!("{n} {t}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                out(format_args!(
                    "copied {what} from {}{} into {}\n",
                    display_url(from),
                    if original.is_some() {
                        " (the original fastlane's store)"
                    } else {
                        ""
                    },
                    display_url(to)
                ));
                0
            }
            Err(e) => {
                print_error(&e);
                EXIT_SERVICE
            }
        }
    })
}

/// `fastlane store prune`.
fn store_prune(days: f64, store: Option<&str>, batch: i64) -> u8 {
    if !days.is_finite() || days < 0.0 {
        eprintln!("error: --older-than-days must be a number of days, 0 or more");
        return EXIT_USAGE;
    }
    let url = store
        .filter(|s| !s.is_empty())
        .map_or_else(fastlane_monitor::store::default_url, str::to_owned);
    let runtime = match command_runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    runtime.block_on(async {
        let store = match open_store(&url).await {
            Ok(s) => s,
            Err(code) => return code,
        };
        let result = store.prune(retention_cutoff(days), batch.max(1)).await;
        store.close().await;
        match result {
            Ok(p) => {
                out(format_args!(
                    "removed {} samples and {} log lines older than {days} days from {}\n",
                    p.samples,
                    p.log_lines,
                    fastlane_monitor::store::display_url(&url)
                ));
                0
            }
            Err(e) => {
                print_error(&e);
                EXIT_SERVICE
            }
        }
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
