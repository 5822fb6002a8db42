//! Run summaries: how they are shown (human line, JSON, nothing) and the throughput
//! figures every summary carries. The binary prints them (see `commands::Summary`).

use std::time::Duration;

use serde::Serialize;

/// How a command reports its summary at the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SummaryMode {
    /// One human-readable line on stderr.
    #[default]
    Human,
    /// The summary as one JSON object (stdout when the command's data does not go to
    /// stdout, stderr otherwise).
    Json,
    /// Nothing (`--quiet`).
    Quiet,
}

/// Throughput figures shared by every summary.
#[derive(Clone, Copy, Debug, Serialize, Default)]
pub struct Throughput {
    pub bytes: u64,
    pub seconds: f64,
    pub mb_per_s: f64,
}

impl Throughput {
    pub fn new(bytes: u64, elapsed: Duration) -> Throughput {
        let seconds = elapsed.as_secs_f64();
        let mb_per_s = if seconds > 0.0 {
            bytes as f64 / 1e6 / seconds
        } else {
            0.0
        };
        Throughput {
            bytes,
            seconds: (seconds * 1000.0).round() / 1000.0,
            mb_per_s: mb_per_s.round(),
        }
    }

    pub fn human(&self) -> String {
        format!(
            "{} in {:.2} s ({:.0} MB/s)",
            human_bytes(self.bytes),
            self.seconds,
            self.mb_per_s
        )
    }
}

/// A progress bar on stderr, drawn four times a second, only when `wanted` and stderr
/// is a terminal (on a pipe or a file nothing is drawn); `chars`: the bar's characters.
pub fn progress_bar(
    wanted: bool,
    total: Option<u64>,
    template: &str,
    chars: Option<&str>,
) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !wanted || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = match total {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::new_spinner(),
    };
    let mut style = indicatif::ProgressStyle::with_template(template)
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    if let Some(c) = chars {
        style = style.progress_chars(c);
    }
    bar.set_style(style);
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr_with_hz(4));
    Some(bar)
}

/// `1234567` → `1.2 MB` (decimal units, as the Batch API limits are stated).
pub fn human_bytes(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.2} GB", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1} MB", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1} kB", n / 1e3)
    } else {
        format!("{n} B")
    }
}
