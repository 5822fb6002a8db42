//! batchline: streaming tools for the JSONL files of LLM Batch APIs.
//!
//! The library knows nothing of command-line parsing: each command in [`commands`]
//! takes a plain config struct and returns a summary. All of them run on the same
//! ordered, parallel line pipeline in [`engine`], read inputs through [`io::input`]
//! and write outputs atomically through [`io::output`].

pub mod api;
pub mod batch;
pub mod commands;
pub mod engine;
pub mod error;
pub mod exec;
pub mod io;
pub mod job;
pub mod json;
pub mod loose;
pub mod report;
pub mod serve;
pub mod template;
pub mod tokenize;

pub use error::{Error, Result};
