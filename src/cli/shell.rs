//! `batchline completions SHELL` and `batchline man [COMMAND]`: shell completions
//! (clap_complete) and man pages (clap_mangen), generated from the same clap definitions
//! as the parser, so they cannot drift from the real flags. Both print to stdout; a closed
//! pipe (`batchline man | head`) ends quietly with status 0 like every command.

use std::io::Write;

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use batchline::commands::Outcome;
use batchline::Error;

use super::Cli;

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  batchline completions bash > ~/.local/share/bash-completion/completions/batchline
  batchline completions zsh > \"${fpath[1]}/_batchline\"
  batchline completions fish > ~/.config/fish/completions/batchline.fish

Exit status: 0 success (also when stdout is closed early), 2 usage error.")]
pub struct CompletionsArgs {
    /// The shell to write completions for.
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  batchline man | man -l -
  batchline man validate > batchline-validate.1
  for c in '' shard build join extract validate; do batchline man $c > batchline${c:+-$c}.1; done

Exit status: 0 success (also when stdout is closed early), 2 usage error.")]
pub struct ManArgs {
    /// Page of one command (batchline-COMMAND(1)); without it, batchline(1), which lists
    /// every command.
    #[arg(value_name = "COMMAND")]
    pub command: Option<String>,
}

/// Prints the completion script for `args.shell`.
pub fn completions(args: &CompletionsArgs) -> Result<Outcome, Error> {
    let mut cmd = Cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "batchline", &mut buf);
    print(&buf)
}

/// Prints batchline(1), or batchline-COMMAND(1).
pub fn man(args: &ManArgs) -> Result<Outcome, Error> {
    let buf = man_page(args.command.as_deref())?;
    print(&buf)
}

/// The roff text of batchline(1) (`None`) or of batchline-COMMAND(1).
pub fn man_page(command: Option<&str>) -> Result<Vec<u8>, Error> {
    let mut cmd = Cli::command();
    // Fills in bin names and the global flags of every subcommand.
    cmd.build();
    let page = match command {
        None => cmd,
        Some(name) => {
            let sub = cmd
                .get_subcommands()
                .find(|s| s.get_name() == name)
                .ok_or_else(|| {
                    let names: Vec<&str> = cmd
                        .get_subcommands()
                        .map(|s| s.get_name())
                        .filter(|n| *n != "help")
                        .collect();
                    Error::Usage(format!("no command {name:?}; one of: {}", names.join(", ")))
                })?;
            // The page's title and NAME section: batchline-shard, as git and cargo do.
            // clap takes a 'static name without its `string` feature; one page per run.
            let title: &'static str = Box::leak(format!("batchline-{name}").into_boxed_str());
            sub.clone().name(title).version(env!("CARGO_PKG_VERSION"))
        }
    };
    // clap_mangen's sections, except that the after_help text (examples, exit status)
    // becomes EXAMPLES and EXIT STATUS sections kept line for line (its EXTRA section
    // would let roff refill the example commands into one paragraph).
    let extra = page.get_after_help().map(|h| h.to_string());
    let has_subcommands = page.has_subcommands();
    let man = clap_mangen::Man::new(page);
    let mut buf = Vec::new();
    let rendered = (|| -> std::io::Result<()> {
        man.render_title(&mut buf)?;
        man.render_name_section(&mut buf)?;
        man.render_synopsis_section(&mut buf)?;
        man.render_description_section(&mut buf)?;
        man.render_options_section(&mut buf)?;
        if has_subcommands {
            man.render_subcommands_section(&mut buf)?;
        }
        if let Some(text) = &extra {
            render_after_help(&mut buf, text)?;
        }
        man.render_version_section(&mut buf)
    })();
    rendered.map_err(|e| Error::Other(format!("cannot render the man page: {e}")))?;
    Ok(buf)
}

/// Writes `Examples:` ... `Exit status: ...` (the shape of every after_help here) as
/// roff sections; lines are kept as they are (`.nf`).
fn render_after_help(out: &mut Vec<u8>, text: &str) -> std::io::Result<()> {
    let (examples, status) = match text.find("Exit status:") {
        Some(i) => (&text[..i], Some(&text[i + "Exit status:".len()..])),
        None => (text, None),
    };
    let examples = examples.trim().trim_start_matches("Examples:");
    if !examples.trim().is_empty() {
        writeln!(out, ".SH EXAMPLES\n.nf")?;
        for line in examples.trim_matches('\n').lines() {
            writeln!(out, "{}", roff_line(line))?;
        }
        writeln!(out, ".fi")?;
    }
    if let Some(status) = status {
        writeln!(out, ".SH \"EXIT STATUS\"")?;
        let joined: Vec<&str> = status.split_whitespace().collect();
        writeln!(out, "{}", roff_line(&joined.join(" ")))?;
    }
    Ok(())
}

/// Escapes one line of text for roff: backslashes, hyphens (so they are not hyphenation
/// points) and a leading `.` or `'` (which would start a request).
fn roff_line(line: &str) -> String {
    let body = line.replace('\\', "\\e").replace('-', "\\-");
    if body.starts_with(['.', '\'']) {
        format!("\\&{body}")
    } else {
        body
    }
}

fn print(buf: &[u8]) -> Result<Outcome, Error> {
    let mut out = std::io::stdout().lock();
    out.write_all(buf)
        .and_then(|()| out.flush())
        .map_err(|e| Error::io("<stdout>", e))?;
    Ok(Outcome::Clean)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// Splits a shell command line into words (quotes, backslash-newline), cutting at
    /// unquoted `|`, `;`, `<`, `>`: enough for the examples of our help texts.
    fn commands_of(text: &str) -> Vec<Vec<String>> {
        let text = text.replace("\\\n", " ");
        let mut out = vec![Vec::new()];
        let mut word: Option<String> = None;
        let mut quote: Option<char> = None;
        for c in text.chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), c) => word.get_or_insert_with(String::new).push(c),
                (None, '\'' | '"') => {
                    quote = Some(c);
                    word.get_or_insert_with(String::new);
                }
                (None, c) if c.is_whitespace() || "|;<>".contains(c) => {
                    if let Some(w) = word.take() {
                        out.last_mut().unwrap().push(w);
                    }
                    if !c.is_whitespace() || c == '\n' {
                        out.push(Vec::new());
                    }
                }
                (None, c) => word.get_or_insert_with(String::new).push(c),
            }
        }
        if let Some(w) = word {
            out.last_mut().unwrap().push(w);
        }
        out.into_iter()
            .filter_map(|words| {
                let at = words.iter().position(|w| w == "batchline")?;
                Some(words[at..].to_vec())
            })
            .collect()
    }

    /// Every `batchline ...` example in every after_help parses with the real parser.
    #[test]
    fn help_examples_parse() {
        let mut cmd = Cli::command();
        cmd.build();
        let mut texts: Vec<String> = vec![cmd.get_after_help().unwrap().to_string()];
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let help = sub
                .get_after_help()
                .unwrap_or_else(|| panic!("{} has no after_help", sub.get_name()));
            texts.push(help.to_string());
        }
        let mut n = 0;
        for text in texts {
            for words in commands_of(&text) {
                if words.get(1).map(String::as_str) == Some("COMMAND") {
                    continue;
                }
                if let Err(e) = Cli::try_parse_from(&words) {
                    panic!("{words:?}: {e}");
                }
                n += 1;
            }
        }
        assert!(n >= 17, "only {n} examples");
    }

    #[test]
    fn splitter() {
        let c = commands_of("  a=1 batchline x 'a b' \\\n  --y \"c d\" | batchline z - < f\n");
        assert_eq!(
            c,
            [
                vec!["batchline", "x", "a b", "--y", "c d"],
                vec!["batchline", "z", "-"]
            ]
        );
    }

    #[test]
    fn roff_escapes() {
        assert_eq!(roff_line("a-b \\ c"), "a\\-b \\e c");
        assert_eq!(roff_line(".x"), "\\&.x");
    }
}
