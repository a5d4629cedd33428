//! The daemon binary: parse configuration, set up logging, bind UDP, pick the front-end (the
//! line editor on a terminal, plain lines otherwise), run.

use std::io::{BufRead, IsTerminal};

use anyhow::Context;
use clap::Parser;
use peer_daemon::command::{Command, LineJoiner};
use peer_daemon::driver::Input;
use peer_daemon::terminal::Terminal;
use peer_daemon::{Config, output::Output, run, shutdown_signal};
use tokio::sync::mpsc;
use tracing_subscriber::EnvFilter;

// One thread: the driver owns all the work, and a worker thread would only add a wake-up
// (epoll on one thread, futex to the other) to every datagram (docs/benchmarks.md).
fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("peer-daemon: starting the runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(daemon()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // One plain paragraph saying what to do (the chain of causes, no backtrace): these are
        // the user's to fix, not bugs.
        Err(error) => {
            eprintln!("peer-daemon: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn daemon() -> anyhow::Result<()> {
    let config = Config::parse();
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    let socket = tokio::net::UdpSocket::bind(config.listen)
        .await
        .with_context(|| format!("binding UDP {}", config.listen));
    let interactive =
        !config.json && std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let terminal = match interactive.then(|| Terminal::start(&config.state_dir())) {
        Some(Ok(started)) => Some(started),
        Some(Err(error)) => {
            eprintln!("no line editing, reading plain lines: {error:#}");
            None
        }
        None => None,
    };
    match terminal {
        Some((terminal, out, input)) => {
            tracing_subscriber::fmt()
                .with_env_filter(filter())
                .with_writer(terminal.log_writer())
                .with_ansi(false)
                .init();
            let result = match socket {
                Ok(socket) => run(config, socket, input, out, shutdown_signal()).await,
                Err(error) => Err(error),
            };
            terminal.restore();
            result
        }
        None => {
            tracing_subscriber::fmt()
                .with_env_filter(filter())
                .with_writer(std::io::stderr)
                .init();
            let out = Output::stdout(config.json);
            run(config, socket?, read_stdin(), out, shutdown_signal()).await
        }
    }
}

/// Reads stdin on a plain thread (a blocking read cannot be cancelled, and must not keep the
/// runtime from shutting down). At the end of input a terminal means "quit"; a pipe or
/// /dev/null just closes the channel and the daemon keeps running.
fn read_stdin() -> mpsc::Receiver<Input> {
    let (tx, rx) = mpsc::channel(64);
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let terminal = stdin.is_terminal();
        let mut lines = stdin.lock();
        let mut buf = Vec::new();
        let mut joiner = LineJoiner::default();
        loop {
            buf.clear();
            match lines.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let Some(complete) = joiner.push(&String::from_utf8_lossy(&buf)) else {
                        continue;
                    };
                    let input = Input::parse(&complete);
                    if tx.blocking_send(input).is_err() {
                        return;
                    }
                }
            }
        }
        if terminal {
            let _ = tx.blocking_send(Input::Command(Command::Quit));
        }
    });
    rx
}
