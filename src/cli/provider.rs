//! The provider flags shared by `run` and the lifecycle commands (`submit`, `status`,
//! `wait`, `cancel`, `list`): where the API is and which environment variable holds
//! the key, read once into an `api::Provider`.

use clap::Args;

use batchline::api::{Provider, DEFAULT_BASE_URL};
use batchline::Error;

#[derive(Args, Debug, Clone, Default)]
pub struct ProviderArgs {
    /// The API base, as the SDKs take it (default: OPENAI_BASE_URL, else
    /// https://api.openai.com/v1); `/v1/chat/completions` goes to BASE/chat/completions.
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// An extra header for every request (repeatable), e.g. 'OpenAI-Organization:org-1'.
    #[arg(long = "header", value_name = "NAME:VALUE")]
    pub headers: Vec<String>,
    /// Environment variable holding the key (default: OPENAI_API_KEY; with
    /// --api-version, AZURE_OPENAI_API_KEY). No key is sent when it is unset.
    #[arg(long, value_name = "NAME")]
    pub api_key_env: Option<String>,
    /// Azure OpenAI: the api-version query parameter; the key goes in `api-key`.
    #[arg(long, value_name = "VERSION")]
    pub api_version: Option<String>,
}

pub fn env_key(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty())
}

/// Hosted APIs that answer every request without a key with 401: better said before
/// anything is sent (local servers often need no key).
fn needs_key(base: &str) -> bool {
    let host = base
        .split("://")
        .nth(1)
        .unwrap_or("")
        .split(['/', ':'])
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    host == "api.openai.com"
        || host.ends_with(".openai.azure.com")
        || host.ends_with(".cognitiveservices.azure.com")
}

impl ProviderArgs {
    /// The provider these flags and the environment describe.
    pub fn resolve(&self) -> Result<Provider, Error> {
        let base = self
            .base_url
            .clone()
            .or_else(|| env_key("OPENAI_BASE_URL"))
            .unwrap_or_else(|| DEFAULT_BASE_URL.to_string());
        if !base.starts_with("http://") && !base.starts_with("https://") {
            return Err(Error::Usage(format!(
                "--base-url {base:?}: expected an http:// or https:// URL"
            )));
        }
        let azure = self.api_version.is_some();
        let (key, key_env, azure_auth) = match &self.api_key_env {
            Some(name) => match env_key(name) {
                Some(k) => (Some(k), name.clone(), azure),
                None => {
                    return Err(Error::Usage(format!(
                        "--api-key-env {name}: the environment variable {name} is not set or empty"
                    )))
                }
            },
            None if azure => match env_key("AZURE_OPENAI_API_KEY") {
                Some(k) => (Some(k), "AZURE_OPENAI_API_KEY".to_string(), true),
                None => (
                    env_key("OPENAI_API_KEY"),
                    "AZURE_OPENAI_API_KEY".to_string(),
                    true,
                ),
            },
            None => match env_key("OPENAI_API_KEY") {
                Some(k) => (Some(k), "OPENAI_API_KEY".to_string(), false),
                None => match env_key("AZURE_OPENAI_API_KEY") {
                    Some(k) => (Some(k), "AZURE_OPENAI_API_KEY".to_string(), true),
                    None => (None, "OPENAI_API_KEY".to_string(), false),
                },
            },
        };
        let mut headers = Vec::new();
        for h in &self.headers {
            let (name, value) = h
                .split_once(':')
                .ok_or_else(|| Error::Usage(format!("--header {h:?}: expected NAME:VALUE")))?;
            let name = name.trim();
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(Error::Usage(format!(
                    "--header {name:?}: a header name is letters, digits, '-' and '_'"
                )));
            }
            let value = value.trim();
            // What HTTP allows in a value (no control characters but tab): refused
            // here, or every request would fail to build and be retried as a
            // connection failure.
            if !value
                .bytes()
                .all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
            {
                return Err(Error::Usage(format!(
                    "--header {name:?}: the value has a control character"
                )));
            }
            headers.push((name.to_string(), value.to_string()));
        }
        let sends_auth = headers.iter().any(|(n, _)| {
            n.eq_ignore_ascii_case("authorization") || n.eq_ignore_ascii_case("api-key")
        });
        if key.is_none() && !sends_auth && needs_key(&base) {
            return Err(Error::Usage(format!(
                "no API key for {base}: set {key_env} (or name the variable with --api-key-env); \
                 keys are read from the environment only"
            )));
        }
        Ok(Provider {
            base_url: base.trim_end_matches('/').to_string(),
            key,
            key_env,
            azure: azure_auth,
            api_version: self.api_version.clone(),
            headers,
        })
    }
}
