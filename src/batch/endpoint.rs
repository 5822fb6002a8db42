//! The endpoints a batch request line may name, and their short names for file names.

use serde::Serialize;

/// A Batch API endpoint (`url` of a request line).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
pub enum Endpoint {
    ChatCompletions,
    Responses,
    Embeddings,
    Completions,
    Moderations,
    ImagesGenerations,
    ImagesEdits,
    Videos,
}

impl Endpoint {
    pub const ALL: [Endpoint; 8] = [
        Endpoint::ChatCompletions,
        Endpoint::Responses,
        Endpoint::Embeddings,
        Endpoint::Completions,
        Endpoint::Moderations,
        Endpoint::ImagesGenerations,
        Endpoint::ImagesEdits,
        Endpoint::Videos,
    ];

    /// The canonical URL, as OpenAI writes it.
    pub fn url(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/v1/chat/completions",
            Endpoint::Responses => "/v1/responses",
            Endpoint::Embeddings => "/v1/embeddings",
            Endpoint::Completions => "/v1/completions",
            Endpoint::Moderations => "/v1/moderations",
            Endpoint::ImagesGenerations => "/v1/images/generations",
            Endpoint::ImagesEdits => "/v1/images/edits",
            Endpoint::Videos => "/v1/videos",
        }
    }

    /// A short name for file names and summaries: `chat_completions`, `embeddings`, ...
    pub fn short_name(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat_completions",
            Endpoint::Responses => "responses",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Completions => "completions",
            Endpoint::Moderations => "moderations",
            Endpoint::ImagesGenerations => "images_generations",
            Endpoint::ImagesEdits => "images_edits",
            Endpoint::Videos => "videos",
        }
    }

    /// Recognises the URL of a request line: the `/v1/...` form, and Azure's older form
    /// without `/v1`. Anything else is unknown.
    pub fn from_url(url: &str) -> Option<Endpoint> {
        let path = url.strip_prefix("/v1").unwrap_or(url);
        Endpoint::ALL.into_iter().find(|e| &e.url()[3..] == path)
    }

    /// Parses the `--endpoint` names used by `build`: `chat`, `responses`, ...
    pub fn from_name(name: &str) -> Option<Endpoint> {
        match name {
            "chat" | "chat_completions" | "chat-completions" => Some(Endpoint::ChatCompletions),
            "responses" => Some(Endpoint::Responses),
            "embeddings" => Some(Endpoint::Embeddings),
            "completions" => Some(Endpoint::Completions),
            "moderations" => Some(Endpoint::Moderations),
            _ => None,
        }
    }

    pub fn known_urls() -> String {
        Endpoint::ALL
            .iter()
            .map(|e| e.url())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_round_trip_and_azure_form_is_known() {
        for e in Endpoint::ALL {
            assert_eq!(Endpoint::from_url(e.url()), Some(e));
        }
        assert_eq!(
            Endpoint::from_url("/chat/completions"),
            Some(Endpoint::ChatCompletions)
        );
        assert_eq!(Endpoint::from_url("/v1/chat/completion"), None);
        assert_eq!(Endpoint::from_url(""), None);
    }
}
