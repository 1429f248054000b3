//! The one binary: CLI, manager and worker. `main` only starts things.
//!
//! Exit codes: 0 success; 1 the command failed (one line on stderr);
//! 2 the command line was wrong.

use std::process::ExitCode;

use clap::Parser;
use shoal::cli::{BenchSim, Cli, Command, LogFormat};

fn main() -> ExitCode {
    // containerd's shim starts this same binary as the log driver of a
    // container; that mode has no CLI.
    shoal::logs::driver::run_if_invoked();
    // bench-sim runs a manager's control plane: give it the daemon's runtime.
    if std::env::args_os().nth(1).is_some_and(|a| a == "bench-sim") {
        let bench = match BenchSim::try_parse_from(std::env::args_os().skip(1)) {
            Ok(b) => b,
            Err(e) => return clap_error(e),
        };
        return run(control_plane_runtime(), bench.run());
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_error(e),
    };
    let runtime = if let Command::Daemon(a) = &cli.command {
        init_tracing(&a.log_level, a.log_format);
        control_plane_runtime()
    } else {
        quiet_on_closed_pipe();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    run(runtime, shoal::cli::run(cli))
}

fn control_plane_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        // Small boards: two workers are plenty for the control plane.
        .worker_threads(2)
        .enable_all()
        .build()
}

fn run(
    runtime: std::io::Result<tokio::runtime::Runtime>,
    work: impl std::future::Future<Output = anyhow::Result<()>>,
) -> ExitCode {
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(work);
    // Blocking work still running (a thread stuck in a read of a peer that
    // is gone) must not hold the exit: give it a moment, no more.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Help, version and usage errors print as clap prints them: a usage
/// error whole, with the allowed values, a suggestion for a misspelt
/// command and the usage line, and exit code 2.
fn clap_error(e: clap::Error) -> ExitCode {
    let _ = e.print();
    ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2))
}

/// A client command whose reader goes away (`shoal service ls | head -1`)
/// ends as `ls` does, killed quietly by SIGPIPE, instead of panicking in
/// `println!`. Rust ignores SIGPIPE by default, which the daemon keeps: a
/// peer closing a socket must never kill it.
fn quiet_on_closed_pipe() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: called before any thread is started, and SIG_DFL installs no
    // handler code.
    unsafe {
        let _ = signal(Signal::SIGPIPE, SigHandler::SigDfl);
    }
}

fn init_tracing(level: &str, format: LogFormat) {
    let mut filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // The WireGuard crates log at ERROR what shoal expects and handles (no
    // kernel WireGuard: the userspace one is used), and at WARN every
    // handshake retry to a node that is down; shoal says what matters.
    // A filter that names them (SHOAL_LOG) still decides.
    for quiet in ["defguard_wireguard_rs=off", "defguard_boringtun=error"] {
        if !level.contains(quiet.split('=').next().unwrap_or_default()) {
            if let Ok(d) = quiet.parse() {
                filter = filter.add_directive(d);
            }
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // No colour codes in journald or log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // journald stamps every line itself: no second timestamp under systemd.
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    match (format, journald) {
        (LogFormat::Json, _) => builder.json().init(),
        (LogFormat::Text, true) => builder.without_time().init(),
        (LogFormat::Text, false) => builder.init(),
    }
}
