//! The `vagt` command line.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use vagt_engine::config::{InputConfig, RunConfig, SourceConfig};
use vagt_engine::signals::StopSignals;
use vagt_engine::{defaults, pipeline};

/// jemalloc: less CPU than glibc's malloc on vagt's batches of column
/// buffers (benches/README.md, "The allocator").
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// vagt: streaming Sigma detection that says which critical processes an
/// attack threatens and which organisations must act.
#[derive(Debug, Parser)]
#[command(name = "vagt", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How operational messages are written to stderr: `text` (default)
    /// or `json` lines (for systemd, Kubernetes and log shippers). Also
    /// `VAGT_LOG_FORMAT`; the level is set with `VAGT_LOG` (`info`, `debug`,
    /// `vagt_engine=debug`).
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a pipeline: from a config file, from flags, or (with neither)
    /// the built-in default over the sample logs in fixtures/.
    Run(Box<RunArgs>),
    /// Hunt: run rules (single-event and windowed) over an archive written
    /// by `vagt run --archive`, some organisations and days of it; the
    /// alerts equal the stream's, with the same ids. Alerts go to stdout
    /// or `--output`, never to a config's outputs.
    Hunt(Box<HuntArgs>),
    /// SQL over an archive (table `events`, partitioned by `actor` and
    /// `date`), Parquet files and JSON-lines files, with the rules'
    /// functions (sigma_match, cidr_contains, event_field, catalog_actor,
    /// catalog_processes). A table on a terminal, JSON lines otherwise.
    Sql(Box<SqlArgs>),
    /// The quarterly cyber weather forecast: one self-contained HTML file
    /// from the alerts sent (and the archive's logs), with each figure
    /// beside the previous period's, and an ATT&CK Navigator layer beside
    /// it (`OUT` with `.layer.json`).
    Report(Box<ReportArgs>),
    /// Work with rules.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Work with routes.
    Routes {
        #[command(subcommand)]
        command: RoutesCommand,
    },
}

#[derive(Debug, Subcommand)]
enum RoutesCommand {
    /// Dry run: for each alert in a file of alerts (JSON lines, as vagt
    /// writes them), print the routes it takes and the outputs it would
    /// reach, with the file, topic or URL there. Exits non-zero if a line
    /// is not an alert.
    Test {
        /// Config file with `outputs` and `routes`.
        config: PathBuf,
        /// Alerts, one JSON object per line (`-` for stdin).
        alerts: PathBuf,
        /// Print one JSON object per alert instead.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Config file (YAML). Flags given as well override its settings.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Sigma rule file or folder (repeatable).
    #[arg(long, num_args = 1..)]
    rules: Vec<PathBuf>,
    /// Input file, `.gz` read transparently, `-` for stdin (repeatable).
    #[arg(long, num_args = 1..)]
    input: Vec<PathBuf>,
    /// Format of the `--input` files: json (default), windows, syslog, cef,
    /// leef, zeek, suricata, logfmt.
    #[arg(long)]
    format: Option<vagt_connectors::Format>,
    /// Alert output file, `-` for stdout.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Events per Arrow batch.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Bytes of events per Arrow batch: a batch is cut at `--batch-size`
    /// events or at this many bytes, whichever comes first.
    #[arg(long)]
    batch_bytes: Option<usize>,
    /// Archive every event taken in as Parquet in this folder (for `vagt
    /// hunt`); the config's other `archive` settings stay.
    #[arg(long)]
    archive: Option<PathBuf>,
    /// Values for a Sigma `|expand` placeholder: `NAME=VALUE[,VALUE...]` (repeatable).
    #[arg(long = "placeholder", value_parser = parse_placeholder)]
    placeholders: Vec<(String, Vec<String>)>,
    /// Serve Prometheus metrics on this address, e.g. `127.0.0.1:9898`.
    #[arg(long = "metrics")]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Also write the run summary as JSON to this file (for scripts and benchmarks).
    #[arg(long)]
    stats: Option<PathBuf>,
    #[command(flatten)]
    pipeline: PipelineFlags,
}

/// Settings of a pipeline that `vagt run` and `vagt hunt` both take as
/// flags, over the config file's.
#[derive(Debug, Args)]
struct PipelineFlags {
    /// Critical-process catalog (YAML).
    #[arg(long)]
    catalog: Option<PathBuf>,
    /// Dead-letter output file (default: stderr).
    #[arg(long)]
    dead_letters: Option<PathBuf>,
    /// Field/logsource profile: `windows`, `passthrough`, or a profile file.
    #[arg(long)]
    profile: Option<String>,
    /// Where unchanged rules files' parses are kept between runs: `auto`
    /// (the user's cache folder, the default), `off`, or a folder.
    #[arg(long, value_name = "auto|off|DIR")]
    rules_cache: Option<vagt_engine::config::RulesCacheSetting>,
    /// Detection workers evaluating batches at the same time (default: the
    /// machine's cores).
    #[arg(long)]
    workers: Option<usize>,
    /// Progress display on stderr: a bar on a terminal; `always` also prints
    /// a line every few seconds when stderr is not a terminal.
    #[arg(long, value_enum)]
    progress: Option<vagt_engine::progress::ProgressMode>,
}

impl PipelineFlags {
    /// Overrides the config's settings with the flags given.
    fn apply(self, config: &mut RunConfig) {
        if let Some(c) = self.catalog {
            config.catalog = Some(c);
        }
        if let Some(d) = self.dead_letters {
            config.dead_letters = Some(d);
        }
        if let Some(p) = self.profile {
            config.profile = p;
        }
        if let Some(setting) = self.rules_cache {
            config.rules_cache = setting;
        }
        if let Some(w) = self.workers {
            config.workers = Some(w);
        }
        if let Some(mode) = self.progress {
            config.progress = mode;
        }
    }
}

#[derive(Debug, Args)]
struct HuntArgs {
    /// The archive's folder.
    archive: PathBuf,
    /// Config file: its rules, catalog, profile, placeholders and window
    /// settings (not its inputs, outputs, archive or state file).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Sigma rule file or folder (repeatable).
    #[arg(long, num_args = 1..)]
    rules: Vec<PathBuf>,
    /// From: a date (2026-03-01), a time (2026-03-01T12:00:00Z) or a span
    /// back from now (7d, 12h).
    #[arg(long)]
    since: Option<String>,
    /// Until: a date (its whole day), a time, or a span back from now.
    #[arg(long)]
    until: Option<String>,
    /// Only this organisation's events (repeatable; `_none` for events of
    /// no known organisation).
    #[arg(long = "actor")]
    actors: Vec<String>,
    /// Alert output file, `-` for stdout (the default).
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Also write the run summary as JSON to this file.
    #[arg(long)]
    stats: Option<PathBuf>,
    #[command(flatten)]
    pipeline: PipelineFlags,
}

#[derive(Debug, Args)]
struct SqlArgs {
    /// The query.
    query: String,
    /// An archive folder, Parquet or JSON-lines files: one is the table
    /// `events`; several are tables named by their file stems.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Critical-process catalog for catalog_actor and catalog_processes
    /// (default: the built-in fixtures' catalog).
    #[arg(long)]
    catalog: Option<PathBuf>,
    /// JSON lines even on a terminal.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Parser)]
struct ReportArgs {
    /// First day of the period (`2026-07-01`).
    #[arg(long)]
    from: chrono::NaiveDate,
    /// Last day of the period, included (`2026-09-30`).
    #[arg(long)]
    to: chrono::NaiveDate,
    /// Alerts files (JSON lines, as vagt writes them).
    #[arg(long = "alerts", num_args = 1..)]
    alerts: Vec<PathBuf>,
    /// The archive (a folder or `s3://bucket/prefix`), for the coverage:
    /// which organisations and sources sent logs, and which fell silent.
    #[arg(long)]
    archive: Option<PathBuf>,
    /// `sector`, or an organisation's id for its own edition.
    #[arg(long, default_value = "sector")]
    edition: String,
    /// `da` or `en`.
    #[arg(long, default_value = "da")]
    lang: String,
    /// The report's marking; alerts above it are left out (default: GREEN
    /// for the sector edition, AMBER+STRICT for an organisation's).
    #[arg(long)]
    tlp: Option<String>,
    /// Critical-process catalog (default: the built-in fixtures').
    #[arg(long)]
    catalog: Option<PathBuf>,
    /// The HTML file to write.
    #[arg(long)]
    out: PathBuf,
    /// Also write the report's figures as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn parse_placeholder(s: &str) -> Result<(String, Vec<String>), String> {
    let (name, values) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not NAME=VALUE[,VALUE...]"))?;
    let name = name.trim().trim_matches('%').to_string();
    let values: Vec<String> = values
        .split(',')
        .map(str::to_string)
        .filter(|v| !v.is_empty())
        .collect();
    if name.is_empty() || values.is_empty() {
        return Err(format!("'{s}' needs a name and at least one value"));
    }
    Ok((name, values))
}

#[derive(Debug, Subcommand)]
enum RulesCommand {
    /// Load and compile rules; print what loaded and every rejection with
    /// its reason. Exits non-zero if any rule was rejected.
    Check {
        /// Rule files or folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Profile to compile against.
        #[arg(long, default_value = "windows")]
        profile: String,
        /// Also list rules whose logsource the profile cannot route.
        #[arg(long, short)]
        verbose: bool,
        /// Values for a Sigma `|expand` placeholder: `NAME=VALUE[,VALUE...]` (repeatable).
        #[arg(long = "placeholder", value_parser = parse_placeholder)]
        placeholders: Vec<(String, Vec<String>)>,
    },
    /// Run rule tests: `*.test.yml` files beside the rules (events a rule
    /// must and must not match) and SigmaHQ's regression data
    /// (`info.yml` and events). Every rule in PATH is loaded at once.
    /// Exits non-zero if a test fails.
    Test {
        /// Rule files or folders (their `*.test.yml` files are tests).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// More folders with tests (e.g. SigmaHQ's regression_data).
        #[arg(long, num_args = 1..)]
        tests: Vec<PathBuf>,
        /// Profile to compile against.
        #[arg(long, default_value = "windows")]
        profile: String,
        /// Values for a Sigma `|expand` placeholder (repeatable).
        #[arg(long = "placeholder", value_parser = parse_placeholder)]
        placeholders: Vec<(String, Vec<String>)>,
        /// One JSON object per case on stdout instead.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Run(args) => run(*args),
        Command::Hunt(args) => hunt(*args),
        Command::Sql(args) => sql(*args),
        Command::Report(args) => report(*args),
        Command::Routes {
            command:
                RoutesCommand::Test {
                    config,
                    alerts,
                    json,
                },
        } => routes_test(&config, &alerts, json),
        Command::Rules {
            command:
                RulesCommand::Check {
                    paths,
                    profile,
                    verbose,
                    placeholders,
                },
        } => check(paths, &profile, verbose, placeholders.into_iter().collect()),
        Command::Rules {
            command:
                RulesCommand::Test {
                    paths,
                    tests,
                    profile,
                    placeholders,
                    json,
                },
        } => rules_test(
            paths,
            tests,
            &profile,
            placeholders.into_iter().collect(),
            json,
        ),
    };
    match result {
        Ok(code) => code,
        // A reader that went away (`vagt routes test ... | head`): done.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vagt: error: {}", describe(&e));
            ExitCode::from(2)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}

/// Operational messages (outputs retrying, outboxes filling, files
/// rotating) go to stderr through `tracing`: readable lines, or JSON lines.
fn init_logging(format: Option<LogFormat>) {
    use tracing_subscriber::EnvFilter;
    let format = format.unwrap_or_else(|| match std::env::var("VAGT_LOG_FORMAT").as_deref() {
        Ok("json") => LogFormat::Json,
        _ => LogFormat::Text,
    });
    let filter = EnvFilter::try_from_env("VAGT_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_target(false);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}

/// `vagt routes test`: where each alert in `alerts` would go.
fn routes_test(
    config: &std::path::Path,
    alerts: &std::path::Path,
    json: bool,
) -> anyhow::Result<ExitCode> {
    use std::io::BufRead;
    let config = RunConfig::from_file(config)?;
    let mut dry_run = vagt_engine::dry_run::DryRun::new(&config)?;
    let input: Box<dyn BufRead> = if alerts.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let file = std::fs::File::open(alerts)
            .with_context(|| format!("cannot read {}", alerts.display()))?;
        Box::new(std::io::BufReader::new(file))
    };
    let mut stdout = std::io::stdout().lock();
    let (mut tested, mut unrouted, mut bad) = (0u64, 0u64, 0u64);
    for (n, line) in input.lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {}", alerts.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let test = match dry_run.test(&line) {
            Ok(test) => test,
            Err(e) => {
                bad += 1;
                eprintln!("vagt: {}:{}: not an alert: {e}", alerts.display(), n + 1);
                continue;
            }
        };
        tested += 1;
        if test.outputs.is_empty() {
            unrouted += 1;
        }
        if json {
            writeln!(stdout, "{}", serde_json::to_string(&test)?)?;
        } else {
            writeln!(stdout, "{}", describe_route(&test))?;
        }
    }
    for follow_up in dry_run.finish() {
        if json {
            writeln!(stdout, "{}", serde_json::json!({"follow_up": follow_up}))?;
        } else {
            writeln!(
                stdout,
                "at the end: a follow-up of {} to {}: {} repeats held back",
                follow_up.of, follow_up.output, follow_up.suppressed
            )?;
        }
    }
    eprintln!("vagt: {tested} alerts tested, {unrouted} taken by no route, {bad} lines not alerts");
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// One line of `vagt routes test`: the alert, its TLP and routes, and
/// what each output does with it.
fn describe_route(test: &vagt_engine::dry_run::RouteTest) -> String {
    if test.outputs.is_empty() {
        return format!("{} ({}): no route takes it: dead letter", test.id, test.tlp);
    }
    let targets: Vec<String> = test
        .outputs
        .iter()
        .map(|t| {
            let target = t.target.as_deref().unwrap_or("");
            let reason = t.reason.as_deref().unwrap_or("");
            let follow_up = t
                .follow_up
                .map(|n| format!(", after a follow-up of {n} repeats"))
                .unwrap_or_default();
            match t.verdict {
                "send" => format!("{} ({target}{follow_up})", t.output),
                "held" => format!("{} (held back: a repeat)", t.output),
                "refused" => format!("{} (refused: {reason})", t.output),
                _ => format!("{} (dead letter: {reason})", t.output),
            }
        })
        .collect();
    let routes = if test.routes.is_empty() {
        "(none configured: every output)".to_string()
    } else {
        test.routes.join(", ")
    };
    format!(
        "{} ({}): routes {routes} -> {}",
        test.id,
        test.tlp,
        targets.join(", ")
    )
}

/// An error and its causes, each said once: most of vagt's errors already
/// name their cause.
fn describe(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

fn build_config(args: RunArgs) -> anyhow::Result<RunConfig> {
    let flags_given = !args.rules.is_empty() || !args.input.is_empty();
    let mut config = match &args.config {
        Some(path) => RunConfig::from_file(path)?,
        None if flags_given => {
            if args.rules.is_empty() || args.input.is_empty() {
                anyhow::bail!("without --config, both --rules and --input are needed");
            }
            let mut c = defaults::default_config();
            c.catalog = None;
            c
        }
        None => defaults::default_config(),
    };
    if !args.rules.is_empty() {
        config.rules = args.rules;
    }
    if !args.input.is_empty() {
        config.inputs = args.input.into_iter().map(InputConfig::file).collect();
    }
    if let Some(format) = args.format {
        config.inputs.iter_mut().for_each(|i| i.format = format);
    }
    if let Some(o) = args.output {
        // The flag replaces the config's outputs.
        config.output = Some(o);
        config.outputs.clear();
        config.routes.clear();
    }
    if let Some(b) = args.batch_size {
        config.decoder.batch_size = b;
    }
    if let Some(b) = args.batch_bytes {
        config.decoder.batch_bytes = b;
    }
    if let Some(dir) = args.archive {
        match config.archive.as_mut() {
            Some(archive) => archive.dir = dir,
            None => config.archive = Some(vagt_engine::archive::ArchiveConfig::in_dir(dir)),
        }
    }
    config.placeholders.extend(args.placeholders);
    if let Some(addr) = args.metrics_listen {
        config.metrics_listen = Some(addr);
    }
    args.pipeline.apply(&mut config);
    config.validate()?;
    Ok(config)
}

fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let stats = args.stats.clone();
    let config = build_config(args)?;
    run_config(config, stats)
}

/// A hunt's config: the archive as the one input; alerts to stdout or
/// `--output`; nothing archived, no state file, no reloads.
fn build_hunt_config(args: HuntArgs) -> anyhow::Result<RunConfig> {
    let mut config = match &args.config {
        Some(path) => RunConfig::from_file(path)?,
        None => {
            if args.rules.is_empty() {
                anyhow::bail!("without --config, --rules is needed");
            }
            let mut c = defaults::default_config();
            c.catalog = None;
            c
        }
    };
    if !args.rules.is_empty() {
        config.rules = args.rules;
    }
    config.inputs = vec![InputConfig {
        source: SourceConfig::Archive(vagt_engine::archive::input::ArchiveInput {
            dir: args.archive,
            since: args.since,
            until: args.until,
            actors: args.actors,
            store: None,
        }),
        format: vagt_connectors::Format::default(),
        actor: None,
        timestamp: None,
    }];
    config.outputs.clear();
    config.routes.clear();
    config.output = args.output;
    config.archive = None;
    config.windows.state_file = None;
    config.source = None;
    args.pipeline.apply(&mut config);
    config.validate()?;
    Ok(config)
}

/// The catalog at `path`, else the built-in fixtures'.
fn catalog_or_default(path: Option<&Path>) -> anyhow::Result<vagt_engine::Catalog> {
    Ok(match path {
        Some(path) => vagt_engine::Catalog::from_file(path)?,
        None => match defaults::default_config().catalog {
            Some(path) if path.is_file() => vagt_engine::Catalog::from_file(&path)?,
            _ => vagt_engine::Catalog::empty(),
        },
    })
}

fn report(args: ReportArgs) -> anyhow::Result<ExitCode> {
    use vagt_engine::report::{Edition, Lang, ReportOptions};
    use vagt_engine::warning::tlp::Tlp;
    let catalog = std::sync::Arc::new(catalog_or_default(args.catalog.as_deref())?);
    let edition = match args.edition.as_str() {
        "sector" => Edition::Sector,
        id if catalog.actor(id).is_some() => Edition::Actor(id.to_string()),
        other => anyhow::bail!(
            "--edition '{other}' is neither 'sector' nor an organisation of the catalog"
        ),
    };
    let lang = match args.lang.as_str() {
        "da" => Lang::Da,
        "en" => Lang::En,
        other => anyhow::bail!("--lang '{other}' is neither 'da' nor 'en'"),
    };
    let tlp = match args.tlp.as_deref() {
        Some(text) => Tlp::parse(text).ok_or_else(|| {
            anyhow::anyhow!(
                "--tlp '{text}' is not a TLP 2.0 label (clear, green, amber, amber+strict, red)"
            )
        })?,
        None if edition == Edition::Sector => Tlp::Green,
        None => Tlp::AmberStrict,
    };
    if args.to < args.from {
        anyhow::bail!("--to {} is before --from {}", args.to, args.from);
    }
    if args.alerts.is_empty() && args.archive.is_none() {
        anyhow::bail!(
            "nothing to report on: give --alerts FILE... (and --archive DIR for the coverage)"
        );
    }
    let options = ReportOptions {
        from: args.from,
        to: args.to,
        alerts: args.alerts,
        archive: args.archive,
        edition,
        lang,
        tlp,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let written = runtime.block_on(vagt_engine::report::write(
        &options,
        catalog,
        &args.out,
        args.json.as_deref(),
    ))?;
    eprintln!(
        "vagt report: {} and {} written ({} alerts in the two periods, {} above {} left out)",
        args.out.display(),
        written.layer.display(),
        written.alerts,
        written.above_tlp,
        tlp.label()
    );
    Ok(ExitCode::SUCCESS)
}

fn sql(args: SqlArgs) -> anyhow::Result<ExitCode> {
    let catalog = catalog_or_default(args.catalog.as_deref())?;
    let scratch = tempfile::tempdir().context("a temporary folder")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let answer = runtime.block_on(vagt_engine::sql::query(
        &args.query,
        &args.paths,
        std::sync::Arc::new(catalog),
        scratch.path(),
    ))?;
    let rows: usize = answer.batches.iter().map(|b| b.num_rows()).sum();
    let mut stdout = std::io::stdout().lock();
    if args.json || !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        let mut writer = datafusion::arrow::json::LineDelimitedWriter::new(&mut stdout);
        for batch in &answer.batches {
            writer.write(batch)?;
        }
        writer.finish()?;
    } else {
        writeln!(
            stdout,
            "{}",
            datafusion::arrow::util::pretty::pretty_format_batches(&answer.batches)?
        )?;
    }
    for skipped in &answer.skipped {
        eprintln!("vagt sql: skipped {skipped}");
    }
    eprintln!(
        "vagt sql: {rows} rows; {} archive files skipped",
        answer.skipped.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn hunt(args: HuntArgs) -> anyhow::Result<ExitCode> {
    let stats = args.stats.clone();
    let config = build_hunt_config(args)?;
    run_config(config, stats)
}

/// Runs a pipeline to its end (or a stop signal); the summary on stderr
/// and in `stats`.
fn run_config(config: RunConfig, stats: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    // The first SIGTERM or Ctrl-C stops the run gracefully; a second one
    // exits at once, for a stop that cannot finish.
    let (first_signal, stop_requested) = tokio::sync::oneshot::channel::<()>();
    let signal_handler = {
        let _entered = runtime.enter();
        let mut signals = StopSignals::listen().context("listening for stop signals")?;
        runtime.spawn(async move {
            signals.next().await;
            eprintln!(
                "vagt: stopping: finishing what was taken in (a second SIGTERM or Ctrl-C exits at once)"
            );
            let _ = first_signal.send(());
            let number = signals.next().await;
            eprintln!(
                "vagt: exiting at once on a second stop signal: what was taken in but not yet written is not processed; files and Kafka resume from their last saved positions"
            );
            std::process::exit(128 + number);
        })
    };
    let summary = runtime.block_on(pipeline::run_until(config, &StderrObserver, async {
        if stop_requested.await.is_err() {
            std::future::pending::<()>().await;
        }
    }));
    signal_handler.abort();
    // After a stop signal a reader may still be blocked on its input.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    let summary = summary?;
    eprintln!("{summary}");
    if let Some(path) = stats {
        let json = serde_json::to_string_pretty(&summary)?;
        std::fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(if summary.failed_inputs.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Reports rejected rules and readiness on stderr.
struct StderrObserver;

impl pipeline::RunObserver for StderrObserver {
    fn rejected(&self, r: &vagt_rules::Rejection) {
        eprintln!("vagt: rule rejected: {r}");
    }

    fn restored(&self, r: &vagt_rules::window::RestoreReport) {
        eprintln!(
            "vagt: window state restored: {} rules ({} dropped: no longer loaded or changed), {} sources, {} events waiting for their sources",
            r.rules, r.dropped_rules, r.sources, r.pending
        );
    }

    fn notice(&self, message: &str) {
        eprintln!("vagt: {message}");
    }

    fn listening(&self, input: &str, addr: std::net::SocketAddr) {
        eprintln!("vagt: listening: {input} on {addr}");
    }

    fn ready(&self, s: &pipeline::RunSummary) {
        eprintln!(
            "vagt: ready: {} rules loaded ({} rejected, {} not routable, {} windowed) in {:.2}s",
            s.rules_loaded,
            s.rules_rejected,
            s.rules_unroutable,
            s.windowed_rules,
            s.startup.as_secs_f64()
        );
    }
}

fn rules_test(
    paths: Vec<PathBuf>,
    tests: Vec<PathBuf>,
    profile: &str,
    placeholders: vagt_rules::Placeholders,
    json: bool,
) -> anyhow::Result<ExitCode> {
    use vagt_engine::rule_tests;
    let profile = pipeline::load_profile(profile)?;
    let collection = vagt_rules::load_paths(&paths, &placeholders)?;
    // Feeds come from a run's config: a rule naming one reads an empty set.
    let compiled = vagt_rules::RuleSetBuilder::new(profile)
        .feeds(std::sync::Arc::new(vagt_rules::UncheckedFeeds))
        .build_from(collection);
    let mut where_tests = paths;
    where_tests.extend(tests);
    let cases = rule_tests::discover(&where_tests)?;
    let outcomes = rule_tests::run(&cases, &compiled);
    let mut stdout = std::io::stdout().lock();
    for o in &outcomes {
        if json {
            writeln!(stdout, "{}", serde_json::to_string(o)?)?;
        } else if !o.passed {
            writeln!(
                stdout,
                "FAIL {} [{}] {}: {} matches, expected {}",
                o.file.display(),
                o.case,
                o.rule,
                o.matched,
                o.expected
            )?;
            for d in &o.detail {
                writeln!(stdout, "    {d}")?;
            }
        }
    }
    let passed = outcomes.iter().filter(|o| o.passed).count();
    let rules: std::collections::BTreeSet<&str> = cases.iter().map(|c| c.rule.as_str()).collect();
    eprintln!(
        "rule tests: {passed} of {} cases passed ({} failed), {} rules tested",
        outcomes.len(),
        outcomes.len() - passed,
        rules.len()
    );
    Ok(if passed == outcomes.len() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn check(
    paths: Vec<PathBuf>,
    profile: &str,
    verbose: bool,
    placeholders: vagt_rules::Placeholders,
) -> anyhow::Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    let profile = pipeline::load_profile(profile)?;
    let collection = vagt_rules::load_paths(&paths, &placeholders)?;
    let filters = collection.filters.len();
    // Feeds come from a run's config: any name passes the check.
    let compiled = vagt_rules::RuleSetBuilder::new(profile.clone())
        .feeds(std::sync::Arc::new(vagt_rules::UncheckedFeeds))
        .build_from(collection);
    for r in &compiled.rejected {
        writeln!(stdout, "rejected: {r}")?;
    }
    if verbose {
        for u in &compiled.unroutable {
            writeln!(
                stdout,
                "not routable: {} [{}] {}: profile '{}' has no {}",
                u.info.origin,
                u.info.meta.id.as_deref().unwrap_or("no id"),
                u.info.meta.title,
                profile.name,
                u.reason
            )?;
        }
    }
    if verbose {
        for a in compiled.set.automata_summary().iter().take(10) {
            writeln!(
                stdout,
                "automaton: {} literals over {} ({}, {}{}), {:.1} MB",
                a.literals,
                a.columns.join(" | "),
                match a.kind {
                    None => "hash map".to_string(),
                    Some(kind) if a.becomes_dfa => format!(
                        "{kind:?}, a DFA once it has searched {} KiB",
                        vagt_rules::compile::upgrade::DFA_AFTER_BYTES / 1024
                    ),
                    Some(kind) => format!("{kind:?}"),
                },
                if a.all_rows {
                    "every row"
                } else {
                    "its logsources' rows"
                },
                if a.fingerprints {
                    ", long values by fingerprints"
                } else {
                    ""
                },
                a.bytes as f64 / 1e6
            )?;
        }
    }
    let loaded = compiled.set.len() + compiled.unroutable.len();
    writeln!(
        stdout,
        "{loaded} rules loaded ({} routable under profile '{}', {} with a logsource it does not route{}), {} windowed rules, {} filters, {} rejected; {} literals in the prefilter, whose automata take {:.1} MB",
        compiled.set.len(),
        profile.name,
        compiled.unroutable.len(),
        if verbose || compiled.unroutable.is_empty() { "" } else { ": list them with --verbose" },
        compiled.windows.active(),
        filters,
        compiled.rejected.len(),
        compiled.set.literal_count(),
        compiled.set.automata_memory() as f64 / 1e6,
    )?;
    Ok(if compiled.rejected.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
