//! `batchline serve`: checks the configuration, starts the async runtime (only the
//! network commands create one), binds the address, reports it through a callback (the
//! binary prints it as the first stdout line), and serves until SIGTERM or Ctrl-C.

use std::net::SocketAddr;

use crate::error::{Error, Result};
use crate::serve::{self, App, Options};

/// What `serve` runs with.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub host: String,
    /// 0 picks a free port.
    pub port: u16,
    pub options: Options,
}

/// Resolves at SIGTERM or Ctrl-C.
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

/// Serves until a signal; `on_listening` gets the bound address once the server
/// accepts connections.
pub fn run(cfg: ServeConfig, on_listening: impl FnOnce(SocketAddr)) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Other(format!("cannot start the async runtime: {e}")))?;
    let result = rt.block_on(async {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((cfg.host.as_str(), cfg.port))
            .await
            .map_err(|e| Error::Usage(format!("--host {}: {e}", cfg.host)))?
            .collect();
        // An open server is only safe where nobody else can reach it.
        if cfg.options.api_key.is_none() && addrs.iter().any(|a| !a.ip().is_loopback()) {
            return Err(Error::Usage(format!(
                "refusing to serve on {} without a key: pass --api-key-env NAME (the key is read from that environment variable), or use a loopback host such as 127.0.0.1",
                cfg.host
            )));
        }
        let listener = tokio::net::TcpListener::bind(addrs.as_slice())
            .await
            .map_err(|e| Error::Other(format!("cannot listen on {}:{}: {e}", cfg.host, cfg.port)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Other(format!("cannot read the bound address: {e}")))?;
        let app = App::new(cfg.options).map_err(Error::Other)?;
        on_listening(addr);
        serve::serve(listener, app, shutdown_signal())
            .await
            .map_err(|e| Error::Other(format!("server error: {e}")))
    });
    // Hung answers (fault injection) and in-flight batch tasks are dropped here.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}
