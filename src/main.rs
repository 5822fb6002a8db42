//! The `batchline` binary: parse arguments, run one command, map the result to an exit
//! status (0 success, 1 finished with rejected lines, 2 usage or fatal error; a closed
//! stdout ends quietly with 0).

mod cli;

use std::process::ExitCode;
use std::sync::atomic::Ordering;

use clap::Parser;

use batchline::commands::{self, Outcome};
use batchline::report::print_summary;
use batchline::Error;
use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = ctrlc::set_handler(|| batchline::engine::INTERRUPTED.store(true, Ordering::SeqCst));
    match run(cli) {
        Ok(Outcome::Clean) => ExitCode::SUCCESS,
        Ok(Outcome::WithRejects) => ExitCode::from(1),
        Ok(Outcome::Interrupted) => ExitCode::from(130),
        Err(Error::BrokenPipe) => ExitCode::SUCCESS,
        Err(Error::Interrupted) => {
            eprintln!("batchline: interrupted; no partial output was kept");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("batchline: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<Outcome, Error> {
    let g = cli.global;
    if g.no_sync {
        batchline::io::output::SYNC_ON_COMMIT.store(false, Ordering::Relaxed);
    }
    let mode = g.summary_mode();
    match cli.command {
        Command::Shard(args) => {
            let cfg = args.into_config(&g);
            let summary = commands::shard::run(&cfg)?;
            if cfg.check && !g.json {
                print!("{}", summary.plan());
            }
            print_summary(mode, &summary, &summary.human(), false);
            Ok(summary.outcome)
        }
        Command::Build(args) => {
            let cfg = args.into_config(&g)?;
            let summary = commands::build::run(&cfg)?;
            print_summary(mode, &summary, &summary.human(), summary.data_on_stdout);
            Ok(summary.outcome)
        }
        Command::Extract(args) => {
            let cfg = args.into_config(&g);
            let summary = commands::extract::run(&cfg)?;
            print_summary(mode, &summary, &summary.human(), cfg.output.is_stdout());
            Ok(summary.outcome)
        }
        Command::Join(args) => {
            let cfg = args.into_config(&g);
            let summary = commands::join::run(&cfg)?;
            print_summary(mode, &summary, &summary.human(), cfg.output.is_stdout());
            Ok(summary.outcome)
        }
        Command::Validate(args) => {
            let cfg = args.into_config(&g)?;
            let summary = commands::validate::run(&cfg)?;
            print_summary(mode, &summary, &summary.human(), summary.data_on_stdout);
            Ok(summary.outcome)
        }
        Command::Run(args) => {
            let cfg = args.into_config(&g)?;
            let summary = commands::run::run(&cfg)?;
            print_summary(mode, &summary, &summary.human(), false);
            Ok(summary.outcome)
        }
        Command::Serve(args) => {
            commands::serve::run(args.into_config()?, |addr| {
                use std::io::Write;
                println!("listening on http://{addr}");
                let _ = std::io::stdout().flush();
            })?;
            Ok(Outcome::Clean)
        }
        Command::Completions(args) => cli::shell::completions(&args),
        Command::Man(args) => cli::shell::man(&args),
    }
}
