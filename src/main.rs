//! The `streamhouse` binary: configuration, wiring, the HTTP endpoints and process lifecycle.

#![forbid(unsafe_code)]

mod config;
mod http;

use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use streamhouse_engine::Engine;
use streamhouse_pgwire::PgMetrics;
use tokio::net::TcpListener;
use tokio::sync::watch;

use config::{ServeArgs, ServerConfig};

#[derive(Parser)]
#[command(name = "streamhouse", version, about = "StreamHouse: a streaming SQL database on Apache DataFusion")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server. A flag given twice takes its last value (so a wrapper may override one).
    #[command(args_override_self = true)]
    Serve(Box<ServeArgs>),
}

fn main() {
    streamhouse_engine::memory::limit_malloc_arenas();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            use clap::error::ErrorKind;
            if matches!(error.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand) {
                error.exit();
            }
            // One line: what was wrong. `--help` has the rest.
            let message = error.to_string();
            let first = message.lines().next().unwrap_or("invalid arguments").trim_start_matches("error: ");
            eprintln!("streamhouse: {first} (see streamhouse serve --help)");
            std::process::exit(2);
        }
    };
    let Command::Serve(args) = cli.command;
    let config = match ServerConfig::resolve(*args) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("streamhouse: {error:#}");
            std::process::exit(2);
        }
    };
    init_logging(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("streamhouse")
        .thread_stack_size(config.thread_stack_bytes)
        .build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("streamhouse: cannot start the runtime: {error}");
            std::process::exit(1);
        }
    };
    if let Err(error) = runtime.block_on(serve(config)) {
        eprintln!("streamhouse: {error:#}");
        std::process::exit(1);
    }
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

async fn bind(address: &str, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address).await.with_context(|| format!("cannot listen on {address} for {what}"))
}

async fn serve(config: ServerConfig) -> anyhow::Result<()> {
    let data_dir = &config.storage.data_dir;
    std::fs::create_dir_all(data_dir).with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    // One server per data directory: a second one would corrupt the WAL.
    let lock_path = data_dir.join("LOCK");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot use data directory {}", data_dir.display()))?;
    lock.try_lock().map_err(|_| {
        anyhow::anyhow!("data directory {} is in use by another streamhouse process", data_dir.display())
    })?;

    let pg_listener = bind(&config.pg_listen, "Postgres connections").await?;
    let http_listener = bind(&config.http_listen, "HTTP").await?;
    let flight_listener = bind(&config.flight_listen, "Arrow Flight").await?;
    let engine = Engine::open(config.storage.clone(), config.engine.clone())
        .await
        .with_context(|| format!("cannot open data directory {}", data_dir.display()))?;

    let (shutdown_sender, shutdown) = watch::channel(false);
    let pg_metrics = Arc::new(PgMetrics::default());
    let pg_address = pg_listener.local_addr()?;
    let http_address = http_listener.local_addr()?;
    let flight_address = flight_listener.local_addr()?;
    let flight_metrics = Arc::new(streamhouse_flight::FlightMetrics::default());
    let flight_task = tokio::spawn(streamhouse_flight::serve(
        flight_listener,
        engine.clone(),
        config.flight.clone(),
        flight_metrics.clone(),
        shutdown.clone(),
    ));
    let pg_task = tokio::spawn(streamhouse_pgwire::serve(
        pg_listener,
        engine.clone(),
        config.pg.clone(),
        pg_metrics.clone(),
        shutdown.clone(),
    ));
    let sources = http::Sources { engine: engine.clone(), pg: pg_metrics, flight: flight_metrics };
    let http_task = tokio::spawn(http::serve(http_listener, sources, config.tls.clone(), shutdown.clone()));
    tracing::info!(postgres = %pg_address, flight = %flight_address, http = %http_address, data_dir = %data_dir.display(), "streamhouse is ready");
    // A machine-readable line for scripts and tests that wait for readiness.
    match engine.superuser_password_file() {
        Some(path) => println!(
            "streamhouse ready postgres={pg_address} http={http_address} flight={flight_address} superuser=streamhouse superuser_password_file={}",
            path.display()
        ),
        None => println!("streamhouse ready postgres={pg_address} http={http_address} flight={flight_address}"),
    }

    wait_for_signal().await;
    tracing::info!("shutting down: draining writes");
    shutdown_sender.send_replace(true);
    let _ = pg_task.await;
    if let Ok(Err(error)) = http_task.await {
        tracing::warn!(%error, "the HTTP server stopped with an error");
    }
    match flight_task.await {
        Ok(Err(error)) => tracing::warn!(%error, "the Flight server stopped with an error"),
        Err(error) => tracing::warn!(%error, "the Flight server task failed"),
        Ok(Ok(())) => {}
    }
    engine.shutdown().await;
    tracing::info!("shutdown complete");
    drop(lock);
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut terminate), Ok(mut interrupt)) => {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
