//! `cairn init [DIR]`

use std::fmt::Write as _;
use std::process::ExitCode;

use super::{output, Context};
use crate::cli::InitArgs;
use crate::scaffold::{self, FileOutcome};

pub fn run(args: &InitArgs, ctx: &Context) -> miette::Result<ExitCode> {
    let dir = ctx.cwd.join(&args.dir);
    let files = scaffold::init(&dir)?;
    let mut text = String::new();
    for f in &files {
        let what = match f.outcome {
            FileOutcome::Created => "created",
            FileOutcome::Kept => "kept   ",
        };
        let _ = writeln!(text, "{what}  {}", args.dir.join(&f.path).display());
    }
    if files.iter().any(|f| f.outcome == FileOutcome::Created) {
        text.push_str(&scaffold::next_steps(&args.dir));
    }
    output(ctx.out.text(&text))?;
    Ok(ExitCode::SUCCESS)
}
