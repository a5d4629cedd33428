//! The index binary: parse configuration, set up logging, bind, serve until SIGINT/SIGTERM.

use anyhow::Context;
use clap::Parser;
use index_service::{Config, run, shutdown_signal};
use tracing_subscriber::EnvFilter;

// The index allocates a little per request (JSON, records, answers) from many threads;
// mimalloc does that markedly faster than glibc's malloc (see docs/index.md, Performance).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        // Colours for a terminal only: a log file or a service manager's journal gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = Config::parse();
    // Connections are capped below the open-file limit: use all the system allows.
    index_service::serve::raise_fd_limit();
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    run(config, listener, shutdown_signal()).await
}
