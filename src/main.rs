//! The `batchline` binary: parse arguments, run one command, map the result to an exit
//! status (0 success, 1 finished with rejected lines, 2 usage or fatal error, 128 + the
//! signal when stopped by one: 130 Ctrl-C, 143 SIGTERM; a closed stdout ends quietly
//! with 0). This is the only place that prints, and no print may fail loudly: a closed
//! stdout or stderr is never a panic.

mod cli;

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, OnceLock};

use clap::Parser;

use batchline::commands::{self, Notes, Outcome, Summary};
use batchline::engine::Cancel;
use batchline::report::SummaryMode;
use batchline::Error;
use cli::{Cli, Command};

/// The signal that stopped the run (0: none). A signal handler can only store into an
/// atomic, so this and the token's flag are the binary's two statics; the library has
/// none (it gets the token in its options).
static SIGNAL: AtomicI32 = AtomicI32::new(0);
static CANCEL_FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();

fn main() -> ExitCode {
    keep_std_fds_open();
    let mut cli = Cli::parse();
    let cancel = Cancel::new();
    install_signal_handlers(&cancel);
    cli.global.cancel = cancel;
    cli.global.notes = Notes::new(|msg| eprint_line(msg));
    match run(cli) {
        Ok(Outcome::Clean | Outcome::OutputClosed) => ExitCode::SUCCESS,
        Ok(Outcome::WithRejects) => ExitCode::from(1),
        Ok(Outcome::Interrupted) => {
            let sig = SIGNAL.load(Ordering::SeqCst);
            ExitCode::from(if sig > 0 { (128 + sig) as u8 } else { 130 })
        }
        Err(Error::BrokenPipe) => ExitCode::SUCCESS,
        Err(Error::Interrupted) => {
            eprint_line("batchline: interrupted; no partial output was kept");
            let sig = SIGNAL.load(Ordering::SeqCst);
            ExitCode::from(if sig > 0 { (128 + sig) as u8 } else { 130 })
        }
        Err(e) => {
            eprint_line(&format!("batchline: {e}"));
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<Outcome, Error> {
    let g = cli.global;
    let mode = g.summary_mode();
    match cli.command {
        Command::Shard(args) => report(mode, &commands::shard::run(&args.into_config(&g))?),
        Command::Build(args) => report(mode, &commands::build::run(&args.into_config(&g)?)?),
        Command::Extract(args) => report(mode, &commands::extract::run(&args.into_config(&g))?),
        Command::Join(args) => report(mode, &commands::join::run(&args.into_config(&g)?)?),
        Command::Validate(args) => report(mode, &commands::validate::run(&args.into_config(&g)?)?),
        Command::Run(args) => report(mode, &commands::run::run(&args.into_config(&g)?)?),
        Command::Serve(args) => {
            commands::serve::run(args.into_config()?, |addr| {
                // The line a caller waits for; a closed stdout must not stop the server.
                print_out(&format!("listening on http://{addr}\n"));
            })?;
            Ok(Outcome::Clean)
        }
        Command::Submit(args) => report(mode, &commands::submit::run(&args.into_config(&g)?)?),
        Command::Status(args) => report(mode, &commands::status::run(&args.into_config(&g)?)?),
        Command::Wait(args) => report(mode, &commands::wait::run(&args.into_config(&g)?)?),
        Command::Cancel(args) => report(mode, &commands::cancel::run(&args.into_config(&g)?)?),
        Command::List(args) => report(mode, &commands::list::run(&args.into_config(&g)?)?),
        Command::Download(args) => report(mode, &commands::download::run(&args.into_config(&g)?)?),
        Command::Completions(args) => cli::shell::completions(&args),
        Command::Man(args) => cli::shell::man(&args),
        Command::Estimate(args) => report(mode, &commands::estimate::run(&args.into_config(&g)?)?),
        Command::Resubmit(args) => report(mode, &commands::resubmit::run(&args.into_config(&g)?)?),
    }
}

/// Prints a command's stdout text and summary as asked; returns its outcome.
fn report<S: Summary>(mode: SummaryMode, summary: &S) -> Result<Outcome, Error> {
    let outcome = summary.outcome();
    if mode != SummaryMode::Json {
        if let Some(text) = summary.stdout_text() {
            print_out(&text);
        }
    }
    match mode {
        SummaryMode::Quiet => {}
        SummaryMode::Human => eprint_line(&summary.human()),
        SummaryMode::Json => {
            let text = serde_json::to_string(summary).expect("a summary serialises");
            if summary.data_on_stdout() || outcome == Outcome::OutputClosed {
                eprint_line(&text);
            } else {
                print_out(&format!("{text}\n"));
            }
        }
    }
    Ok(outcome)
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
fn print_out(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
}

/// Writes one line to stderr; a closed stderr is not an error either.
fn eprint_line(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{text}");
}

/// A standard descriptor that was closed (`2>&-`) would be reused by the next file we
/// open, and our messages would land in an output file: point it at /dev/null.
fn keep_std_fds_open() {
    #[cfg(unix)]
    for fd in 0..3 {
        // SAFETY: fcntl and open on descriptor numbers; nothing else is touched.
        unsafe {
            if libc::fcntl(fd, libc::F_GETFD) == -1 {
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
                if null >= 0 && null != fd {
                    libc::dup2(null, fd);
                    libc::close(null);
                }
            }
        }
    }
}

/// Ctrl-C, SIGTERM and SIGHUP cancel the run (the library checks the token between
/// chunks and leaves no partial output); the exit status then says which signal.
fn install_signal_handlers(cancel: &Cancel) {
    let _ = CANCEL_FLAG.set(cancel.flag());
    #[cfg(unix)]
    {
        extern "C" fn on_signal(sig: libc::c_int) {
            SIGNAL.store(sig, Ordering::SeqCst);
            if let Some(flag) = CANCEL_FLAG.get() {
                flag.store(true, Ordering::SeqCst);
            }
        }
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            // SAFETY: a plain sigaction with a handler that only stores into atomics.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_signal as *const () as usize;
                libc::sigemptyset(&mut sa.sa_mask);
                libc::sigaction(sig, &sa, std::ptr::null_mut());
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrlc::set_handler(|| {
            if let Some(flag) = CANCEL_FLAG.get() {
                flag.store(true, Ordering::SeqCst);
            }
        });
    }
}
