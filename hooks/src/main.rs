//! `pod-reloader-hooks`: the module's hooks binary (see the library docs).

#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use pod_reloader_hooks::cli::{self, Env, Outcome};

fn main() -> ExitCode {
    // A panic must still end as the error JSON addon-operator parses, with
    // nothing else on stderr before it.
    std::panic::set_hook(Box::new(|_| {}));
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = std::panic::catch_unwind(|| {
        let var = |k: &str| std::env::var(k).ok();
        let env = Env { var: &var, exe: std::env::current_exe().ok() };
        cli::run(&args, &env)
    })
    .unwrap_or_else(|p| {
        let what = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        Outcome::error(format!("execute: internal error: {what}"))
    });
    match emit(&outcome) {
        Ok(()) => ExitCode::from(outcome.code),
        Err(_) => ExitCode::FAILURE,
    }
}

fn emit(outcome: &Outcome) -> anyhow::Result<()> {
    std::io::stdout().write_all(outcome.stdout.as_bytes()).context("write stdout")?;
    std::io::stderr().write_all(outcome.stderr.as_bytes()).context("write stderr")?;
    Ok(())
}
