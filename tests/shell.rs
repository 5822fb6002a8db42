//! `batchline completions` and `batchline man`, and the examples and exit statuses at the
//! end of every command's `--help`. The list of commands is read from `batchline --help`,
//! so a command added later is held to the same rules.

mod common;

use std::process::{Command, Stdio};

fn run(args: &[&str]) -> std::process::Output {
    Command::new(common::bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The commands listed by `batchline --help` (without `help`).
fn commands() -> Vec<String> {
    let o = run(&["--help"]);
    assert!(o.status.success());
    let text = common::stdout(&o);
    let list = text
        .split("Commands:\n")
        .nth(1)
        .expect("a Commands: section");
    let names: Vec<String> = list
        .lines()
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_string)
        .collect();
    for known in [
        "shard",
        "build",
        "join",
        "extract",
        "validate",
        "completions",
        "man",
    ] {
        assert!(
            names.iter().any(|n| n == known),
            "{known} missing from {names:?}"
        );
    }
    names
}

#[test]
fn bash_completions_parse_and_name_every_command() {
    let o = run(&["completions", "bash"]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let script = common::stdout(&o);
    for c in commands() {
        assert!(script.contains(&c), "{c}");
    }
    assert!(script.contains("--tokenizer") && script.contains("--out-dir"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("batchline.bash");
    std::fs::write(&path, &script).unwrap();
    let check = Command::new("bash").arg("-n").arg(&path).output().unwrap();
    assert!(
        check.status.success(),
        "bash -n: {}",
        common::stderr(&check)
    );
    // Sourcing it defines the completion function and registers it.
    let src = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {} && complete -p batchline",
            path.display()
        ))
        .output()
        .unwrap();
    assert!(src.status.success(), "{}", common::stderr(&src));
    assert!(common::stdout(&src).contains("batchline"));
}

#[test]
fn every_shell_gets_completions() {
    let commands = commands();
    for (shell, marker) in [
        ("zsh", "#compdef batchline"),
        ("fish", "complete -c batchline"),
        ("powershell", "Register-ArgumentCompleter"),
        ("elvish", "edit:completion:arg-completer[batchline]"),
    ] {
        let o = run(&["completions", shell]);
        assert!(o.status.success(), "{shell}: {}", common::stderr(&o));
        let script = common::stdout(&o);
        assert!(script.contains(marker), "{shell}");
        for c in &commands {
            assert!(script.contains(c.as_str()), "{shell}: {c}");
        }
    }
    let o = run(&["completions", "tcsh"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        common::stderr(&o).contains("possible values"),
        "{}",
        common::stderr(&o)
    );
}

#[test]
fn man_pages_cover_every_command() {
    let o = run(&["man"]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let page = common::stdout(&o);
    assert!(page.contains(".TH batchline 1"), "{page}");
    assert!(page.contains(".SH \"EXIT STATUS\""));
    for c in commands() {
        // The SUBCOMMANDS section names each page batchline-COMMAND(1).
        assert!(
            page.contains(&format!("batchline\\-{}(1)", c.replace('-', "\\-"))),
            "{c}"
        );
        let o = run(&["man", &c]);
        assert!(o.status.success(), "{c}: {}", common::stderr(&o));
        let sub = common::stdout(&o);
        assert!(sub.contains(&format!(".TH batchline-{c} 1")), "{c}");
        assert!(sub.contains(".SH EXAMPLES\n.nf\n"), "{c}");
        assert!(sub.contains(".SH \"EXIT STATUS\""), "{c}");
    }
    let o = run(&["man", "nope"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(common::stderr(&o).contains("no command \"nope\""));
}

/// Each command's help ends with 2 or 3 examples that use it, then its exit statuses.
#[test]
fn every_help_ends_with_examples_and_exit_status() {
    for c in commands() {
        let o = run(&[&c, "--help"]);
        assert!(o.status.success(), "{c}");
        let help = common::stdout(&o);
        let tail = help
            .split("\nExamples:\n")
            .nth(1)
            .unwrap_or_else(|| panic!("{c} --help has no Examples:\n{help}"));
        let (examples, status) = tail
            .split_once("\nExit status: ")
            .unwrap_or_else(|| panic!("{c} --help has no exit status"));
        let commands: Vec<&str> = examples
            .lines()
            .filter(|l| l.starts_with("  ") && !l.starts_with("      "))
            .collect();
        assert!(
            (2..=3).contains(&commands.len()),
            "{c}: {} examples: {commands:?}",
            commands.len()
        );
        for ex in &commands {
            assert!(ex.contains(&format!("batchline {c}")), "{c}: {ex}");
        }
        assert!(
            status.contains('0') && status.contains('2'),
            "{c}: {status}"
        );
    }
}

#[test]
fn a_closed_stdout_ends_quietly() {
    for args in [&["man"][..], &["completions", "zsh"]] {
        // The read end is closed before batchline starts: its first write gets EPIPE.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let o = Command::new(common::bin())
            .args(args)
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", common::stderr(&o));
        assert!(o.stderr.is_empty(), "{args:?}: {}", common::stderr(&o));
    }
}
