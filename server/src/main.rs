//! `weir-server`: parse the configuration, set up logging, bind, run; or,
//! as `weir-server restore ...`, restore a backup offline
//! (`weir_server::restore`).

use std::process::ExitCode;

use clap::Parser;
use weir_server::config::{Args, Config, DEFAULT_CONFIG};

/// jemalloc instead of the system allocator: the request path allocates per
/// message (bodies, ack ids, subscription state), and glibc's malloc took
/// about a tenth of the server's CPU in a consume run. Unused memory goes
/// back to the system from jemalloc's background threads (started in
/// `main`), not from inside a request.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let purging = tikv_jemalloc_ctl::background_thread::write(true);
    let raw: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if weir_server::restore::is_restore(&raw) {
        return weir_server::restore::main(raw);
    }
    let args = Args::parse();
    if args.print_default_config {
        print!("{DEFAULT_CONFIG}");
        return ExitCode::SUCCESS;
    }
    let config = match Config::resolve(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("weir-server: {e}");
            return ExitCode::from(2);
        }
    };
    weir_server::telemetry::init(config.log_format, &config.log_level);
    if let Err(e) = purging {
        // Still correct: jemalloc then purges on the allocating threads.
        tracing::warn!(error = %e, "jemalloc background threads did not start");
    }
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(listen = %config.listen, error = %e, "cannot bind");
            return ExitCode::FAILURE;
        }
    };
    match weir_server::server::run(listener, config, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "weir-server failed");
            eprintln!("weir-server: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
