//! `batchline serve`: a local OpenAI Files + Batches API (and the direct chat,
//! embeddings and responses endpoints), answered by the built-in echo model or by an
//! OpenAI-compatible upstream through the [`exec`](crate::exec) executor.
//!
//! [`store`] keeps the state in the data directory, [`validate`] checks batch input as
//! OpenAI does, [`lifecycle`] drives each batch from `validating` to its end (and
//! resumes it after a restart), [`echo`] is the built-in model, [`faults`] injects
//! failures, [`routes`] is the HTTP surface.

pub mod echo;
pub mod error;
pub mod faults;
pub mod lifecycle;
pub mod routes;
pub mod store;
pub mod validate;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::batch::Endpoint;
use crate::exec::ratelimit::TokenBucket;
use crate::exec::{ExecConfig, Executor, Reply};
use faults::Faults;
use store::Store;

/// Who answers the requests.
#[derive(Debug, Clone)]
pub enum BackendChoice {
    /// The built-in deterministic model.
    Echo,
    /// An OpenAI-compatible server.
    Upstream(ExecConfig),
}

/// Everything `serve` needs besides the address to listen on.
#[derive(Debug, Clone)]
pub struct Options {
    pub data_dir: PathBuf,
    pub backend: BackendChoice,
    /// Added to every echo answer, to simulate a model's time.
    pub latency: Duration,
    /// The completion window of new batches (OpenAI: 24 h).
    pub window: Duration,
    /// The key every request must carry (read from the environment by the caller).
    pub api_key: Option<String>,
    /// Prompt tokens per model that unfinished batches may hold.
    pub enqueued_token_limit: Option<u64>,
    pub limits: validate::Limits,
    /// Requests of one batch in flight at once.
    pub concurrency: usize,
    /// Limits of the direct endpoints.
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    /// The `--faults` spec.
    pub faults: String,
}

impl Options {
    pub fn new(data_dir: PathBuf, backend: BackendChoice) -> Options {
        Options {
            data_dir,
            backend,
            latency: Duration::ZERO,
            window: Duration::from_secs(24 * 3600),
            api_key: None,
            enqueued_token_limit: None,
            limits: validate::Limits::default(),
            concurrency: 16,
            rpm: None,
            tpm: None,
            faults: String::new(),
        }
    }
}

/// An answer to one request, from the echo model or upstream.
#[derive(Debug, Clone)]
pub enum Answer {
    Http {
        status: u16,
        body: Value,
    },
    /// No HTTP answer at all (upstream unreachable after every retry).
    Failed {
        code: String,
        message: String,
    },
}

pub enum Backend {
    Echo { latency: Duration },
    Upstream(Executor),
}

impl Backend {
    /// Answers one request body for `endpoint`; `prompt` is its prompt tokens when
    /// the caller counted them already (the echo model needs them for its `usage`).
    pub async fn call(&self, endpoint: Endpoint, body: &Value, prompt: Option<u64>) -> Answer {
        match self {
            Backend::Echo { latency } => {
                if !latency.is_zero() {
                    tokio::time::sleep(*latency).await;
                }
                match echo::respond_with(endpoint, body, prompt) {
                    Ok(v) => Answer::Http {
                        status: 200,
                        body: v,
                    },
                    Err(e) => Answer::Http {
                        status: e.status.as_u16(),
                        body: e.body(),
                    },
                }
            }
            Backend::Upstream(exec) => {
                match exec
                    .send(endpoint.url(), body.to_string().into_bytes())
                    .await
                {
                    Reply::Http { status, body, .. } => {
                        let body = serde_json::from_slice(&body).unwrap_or_else(|_| {
                            json!({"error": {
                                "message": format!("The upstream answered HTTP {status} with a body that is not JSON."),
                                "type": "server_error", "param": null, "code": "bad_upstream_answer"}})
                        });
                        // A 200 that is not JSON is not a success.
                        let status = if status == 200
                            && body.get("error").is_some_and(|e| {
                                e.get("code") == Some(&json!("bad_upstream_answer"))
                            }) {
                            502
                        } else {
                            status
                        };
                        Answer::Http { status, body }
                    }
                    Reply::Failed { code, message } => Answer::Failed { code, message },
                }
            }
        }
    }
}

/// The shared state of a running server.
pub struct App {
    pub store: Store,
    pub opts: Options,
    pub backend: Backend,
    pub faults: Faults,
    pub rpm: Option<Mutex<TokenBucket>>,
    pub tpm: Option<Mutex<TokenBucket>>,
    /// Cancel flags of running batches (set by the cancel route, read by the driver).
    cancels: Mutex<HashMap<String, Arc<AtomicBool>>>,
}

impl App {
    /// Opens the data directory and sets up the backend; does not start any batch.
    pub fn new(opts: Options) -> Result<Arc<App>, String> {
        let store = Store::open(&opts.data_dir).map_err(|e| {
            format!(
                "cannot open the data directory {}: {e}",
                opts.data_dir.display()
            )
        })?;
        let faults = Faults::parse(&opts.faults)?;
        let backend = match &opts.backend {
            BackendChoice::Echo => Backend::Echo {
                latency: opts.latency,
            },
            BackendChoice::Upstream(cfg) => Backend::Upstream(Executor::new(cfg.clone())?),
        };
        Ok(Arc::new(App {
            store,
            backend,
            faults,
            rpm: opts.rpm.map(|r| Mutex::new(TokenBucket::per_minute(r))),
            tpm: opts.tpm.map(|t| Mutex::new(TokenBucket::per_minute(t))),
            cancels: Mutex::new(HashMap::new()),
            opts,
        }))
    }

    /// The cancel flag of a batch.
    pub fn cancel_flag(&self, id: &str) -> Arc<AtomicBool> {
        self.cancels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.to_string())
            .or_default()
            .clone()
    }

    fn forget_cancel_flag(&self, id: &str) {
        self.cancels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, after resuming every unfinished
/// batch. Connections still open two seconds after the signal (a hung answer) are cut.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    lifecycle::resume_all(&app);
    let router = routes::router(app.clone());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, router).with_graceful_shutdown(async move {
        shutdown.await;
        let _ = tx.send(());
    });
    let result = tokio::select! {
        r = server => r,
        _ = async {
            let _ = rx.await;
            tokio::time::sleep(Duration::from_secs(2)).await;
        } => Ok(()),
    };
    app.store.clear_uploads();
    result
}
