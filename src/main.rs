//! The cairn binary: parse the command line, set up the UI, run, render the error once.
#![allow(clippy::print_stderr)] // the binary renders the one final error

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cairn::cli::Cli::parse_from(cairn::cli::normalize_args(std::env::args_os()));
    let mode = cairn::ui::UiMode::detect(cli.global.color);
    cairn::ui::init_error_rendering(mode);
    let json_events = cli.command.json_events();
    cairn::ui::init_tracing(cli.global.verbose, cli.global.quiet, mode, json_events);

    if let Some(dir) = &cli.global.directory {
        if let Err(e) = std::env::set_current_dir(dir) {
            eprintln!("error: cannot change to directory {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
    }
    let ctx = match cairn::commands::Context::new(&cli.global, mode) {
        Ok(ctx) if json_events => ctx.with_json_events(),
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("error: cannot read the current directory: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cairn::commands::run(cli, &ctx) {
        Ok(code) => code,
        Err(report) => {
            eprintln!("{report:?}");
            if json_events {
                let _ = cairn::ui::json::write_line(&cairn::ui::json::error_event(&*report));
            }
            ExitCode::FAILURE
        }
    }
}
