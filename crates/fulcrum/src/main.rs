//! The `fulcrum` binary: command line, configuration and wiring of the
//! engine and protocol servers.

/// `println!` for command output: when stdout is a pipe whose reader has
/// gone (`fulcrum backup list | head -1`), the command ends quietly with
/// exit code 141, as a program killed by SIGPIPE, instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($arg)*) {
            $crate::stdout_failed(e);
        }
    }};
}

mod backup_cli;
mod cluster;
mod commands;
mod dicom_cli;
mod jobs;
mod serve;
mod tier_cli;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use fulcrum::config::{FileConfig, Flags, Settings};

#[derive(Parser)]
#[command(
    name = "fulcrum",
    version,
    about = "Fulcrum: one storage platform for a hospital consortium's medical data"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: Command,
}

/// Settings shared by every command (flags > environment > config file).
#[derive(Args, Clone)]
struct Common {
    /// TOML config file (see `fulcrum config init`).
    #[arg(long, global = true, env = "FULCRUM_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (catalog and local packs) [default: ./fulcrum-data].
    #[arg(long, global = true, env = "FULCRUM_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Pack backend: "fs" (the data dir's store/), fs:///PATH or
    /// s3://BUCKET[/ROOT]?endpoint=URL&region=R.
    #[arg(long, global = true, env = "FULCRUM_BACKEND")]
    backend: Option<String>,
    /// Catalog URL: sqlite://PATH or postgres://USER@HOST/DB.
    #[arg(long, global = true, env = "FULCRUM_CATALOG_URL")]
    catalog_url: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: S3 API, DICOMweb and admin HTTP port, DICOM DIMSE.
    Serve(serve::ServeArgs),
    /// Show logical vs physical bytes, dedup and compression ratios.
    Stats {
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Re-read and re-hash all stored data; exit 1 when damage is found.
    Verify {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Collect unreferenced chunks and repack sparse packs.
    Gc {
        /// Keep retired and orphan packs younger than this many seconds.
        #[arg(long, default_value_t = commands::GC_GRACE_SECS)]
        grace_secs: u64,
        /// Abort multipart uploads begun more than this many days ago (their
        /// parts hold space until then); 0 keeps them all.
        #[arg(long, default_value_t = commands::GC_ABORT_UPLOADS_DAYS)]
        abort_uploads_after_days: u64,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Re-hash all stored data and repair damaged or missing chunks from
    /// the backup repository; exit 1 when damage remains.
    Scrub {
        /// Read at most this many MiB/s [default: unthrottled].
        #[arg(long)]
        rate_mib: Option<u64>,
        /// Only report; do not repair.
        #[arg(long)]
        no_repair: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The imaging archive: import, export and send DICOM studies, legal
    /// holds.
    Dicom {
        #[command(subcommand)]
        command: DicomCommand,
    },
    /// Backups: incremental, deduplicated, encrypted snapshots of the whole
    /// platform (catalog and data) in a repository on a second backend.
    Backup {
        #[command(flatten)]
        target: backup_cli::Target,
        #[command(subcommand)]
        command: backup_cli::BackupCommand,
    },
    /// The archive tier: apply lifecycle rules.
    Tier {
        #[command(subcommand)]
        command: TierCommand,
    },
    /// Configuration files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum DicomCommand {
    /// Store DICOM Part 10 files (folders are searched recursively); files
    /// that are not DICOM are listed; instances already stored are skipped.
    Import {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Write a study's instances byte-exact as OUT/<study>/<series>/<sop>.dcm.
    Export {
        #[arg(long)]
        study: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Send a study to another DICOM node (C-STORE), e.g. a partner PACS.
    Send {
        #[arg(long)]
        study: String,
        /// Destination as AET@HOST:PORT.
        #[arg(long)]
        to: String,
    },
    /// Read the headers of stored instances again and rewrite the
    /// QIDO-RS/C-FIND index where they now give other values: after
    /// dicom_default_charset was set or changed, or to repair rows an
    /// older version wrote. Safe while a server runs.
    Reindex {
        /// Only this study.
        #[arg(long)]
        study: Option<String>,
    },
    /// Put a legal hold on a study (or one series of it): no protocol can
    /// delete its instances (or their kept versions) until it is released.
    Hold {
        #[arg(long)]
        study: String,
        /// Only this series of the study.
        #[arg(long)]
        series: Option<String>,
        /// Lift the hold instead.
        #[arg(long)]
        release: bool,
    },
}

#[derive(Subcommand)]
enum TierCommand {
    /// Move what the lifecycle rules (config file and S3 bucket rules)
    /// select to the archive tier.
    Apply {
        /// Only show what would move (objects and bytes per rule).
        #[arg(long)]
        dry_run: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Write a commented default config file.
    Init {
        /// Where to write it.
        #[arg(default_value = "fulcrum.toml")]
        path: PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn settings(common: &Common, serve: Option<&serve::ServeArgs>) -> Result<Settings> {
    let file = match &common.config {
        Some(p) => FileConfig::load(p)?,
        None => FileConfig::default(),
    };
    let flags = Flags {
        data_dir: common.data_dir.clone(),
        backend: common.backend.clone(),
        catalog_url: common.catalog_url.clone(),
        http_addr: serve.and_then(|s| s.http_addr.clone()),
        s3_addr: serve.and_then(|s| s.s3_addr.clone()),
        dicom_addr: serve.and_then(|s| s.dicom_addr.clone()),
        max_object_size: serve.and_then(|s| s.max_object_size),
    };
    let s = Settings::resolve(file, flags, &env)?;
    if let Some(term) = &s.dicom.default_charset {
        fulcrum_dicom::charset::set_default(term).map_err(|e| anyhow::anyhow!(e))?;
    }
    Ok(s)
}

/// The levels of chatty dependencies (see `init_logging`).
const QUIET: [&str; 5] = [
    "s3s::ops=off",
    "s3s::service=off",
    "jpeg2k=warn",
    "dicom_parser::stateful=error",
    "rustls=error",
];

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("FULCRUM_LOG")
        // s3s logs every 5xx answer at error level, 501 for operations
        // Fulcrum does not offer too; the S3 listener logs its failures
        // itself, with their request ID.
        // OpenJPEG (jpeg2k) narrates every frame it decodes at info level.
        // dicom-rs warns of every character set it does not know (the
        // empty first value of `\ISO 2022 IR 58`, ISO_IR 148) each time
        // it reads such a data set: Fulcrum decodes those itself (see
        // fulcrum-dicom's charset), and an operator alerting on WARN was
        // paged for every Chinese or Japanese study.
        // rustls warns of every client that sends an IP address as its
        // TLS server name (pgBackRest, curl to 127.0.0.1).
        // A FULCRUM_LOG that does not name these crates keeps their quiet
        // levels (FULCRUM_LOG=info printed two ERROR lines for every
        // refused S3 request).
        .map(|f| {
            let set = std::env::var("FULCRUM_LOG").unwrap_or_default();
            QUIET
                .iter()
                .filter(|d| !set.contains(d.split(['=', ':']).next().unwrap_or("")))
                .filter_map(|d| d.parse().ok())
                .fold(f, |f, d| f.add_directive(d))
        })
        .unwrap_or_else(|_| EnvFilter::new(format!("info,{}", QUIET.join(","))));
    // Colours only on a terminal: not in journald, a log file or a pipe.
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if env("FULCRUM_LOG_FORMAT").as_deref() == Some("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// `e` and its causes on one line, as `{:#}` prints them, less the causes
/// a message already ends with: many library errors put their source in
/// their own message too ("catalog connect: pool timed out: pool timed
/// out" otherwise).
pub(crate) fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        // Already said: the message ends with ": <cause>" (not merely
        // with its words: "not found" then "found" are both printed).
        if out
            .strip_suffix(text.as_str())
            .is_some_and(|head| head.ends_with(": "))
        {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// Ends the program after a failed write of command output (see `outln!`).
fn stdout_failed(e: std::io::Error) -> ! {
    if e.kind() != std::io::ErrorKind::BrokenPipe {
        eprintln!("error: writing to standard output: {e}");
        std::process::exit(2);
    }
    std::process::exit(141)
}

fn main() -> std::process::ExitCode {
    // With RUST_BACKTRACE set, library errors capture a backtrace, and
    // dicom-rs builds (and drops) such errors while parsing datasets: ~1 %
    // of the CPU of a C-STORE. Panics keep their backtraces. Set here,
    // while the process has a single thread.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
    let cli = Cli::parse();
    init_logging();
    // Few blocking threads: chunk hashing and compression are CPU-bound,
    // and every extra thread is another malloc arena (RSS).
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(8)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            std::process::ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Serve(args) => {
            let s = settings(&cli.common, Some(&args))?;
            serve::run(s).await?;
            Ok(0)
        }
        Command::Stats { json } => commands::stats(settings(&cli.common, None)?, json).await,
        Command::Verify { json } => commands::verify(settings(&cli.common, None)?, json).await,
        Command::Gc {
            grace_secs,
            abort_uploads_after_days,
            json,
        } => {
            let opts = commands::gc_options(grace_secs, abort_uploads_after_days);
            commands::gc(settings(&cli.common, None)?, opts, json).await
        }
        Command::Scrub {
            rate_mib,
            no_repair,
            json,
        } => commands::scrub(settings(&cli.common, None)?, rate_mib, !no_repair, json).await,
        Command::Dicom { command } => {
            let s = settings(&cli.common, None)?;
            match command {
                DicomCommand::Import { paths } => dicom_cli::import(s, paths).await,
                DicomCommand::Export { study, out } => dicom_cli::export(s, study, out).await,
                DicomCommand::Send { study, to } => dicom_cli::send(s, study, to).await,
                DicomCommand::Reindex { study } => dicom_cli::reindex(s, study).await,
                DicomCommand::Hold {
                    study,
                    series,
                    release,
                } => dicom_cli::hold(s, study, series, release).await,
            }
        }
        Command::Backup { target, command } => {
            let mut s = settings(&cli.common, None)?;
            target.apply(&mut s);
            backup_cli::run(s, command).await
        }
        Command::Tier {
            command: TierCommand::Apply { dry_run, json },
        } => tier_cli::apply(settings(&cli.common, None)?, dry_run, json).await,
        Command::Config {
            command: ConfigCommand::Init { path, force },
        } => commands::config_init(&path, force),
    }
}

#[cfg(test)]
mod tests {
    use super::error_chain;

    #[derive(Debug, thiserror::Error)]
    #[error("catalog connect: {0}")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn a_cause_already_in_the_message_is_printed_once() {
        let io = std::io::Error::other("pool timed out");
        let e = anyhow::Error::new(Outer(io)).context("opening the engine");
        assert_eq!(
            error_chain(&e),
            "opening the engine: catalog connect: pool timed out"
        );
        let e = anyhow::anyhow!("found").context("not found");
        assert_eq!(error_chain(&e), "not found: found");
    }
}
