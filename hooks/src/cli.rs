//! The commands of the binary, as module-sdk's `hook` command tree answers
//! them. Every failure ends as JSON on stderr and exit code 1: `{"message":
//! "..."}` for `run`/`ready` (prefixed `execute: ` as the SDK does) and the
//! other commands, `{"valid": false, "message": ..., "warnings": [...]}` for
//! `check`.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::error::HookError;
use crate::hooks::{self, CheckResult, Hook};
use crate::protocol::Files;
use crate::schema::{self, SettingsSchema};

/// What the process prints and how it exits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub stdout: String,
    pub stderr: String,
    pub code: u8,
}

impl Outcome {
    fn ok(stdout: String) -> Self {
        Outcome { stdout, stderr: String::new(), code: 0 }
    }

    /// `{"message": ...}` on stderr, exit 1 (module-sdk's `hook.Error`).
    pub fn error(message: impl Into<String>) -> Self {
        let body = json!({"message": message.into()});
        Outcome { stdout: String::new(), stderr: format!("{body}\n"), code: 1 }
    }
}

/// The process environment the commands read.
pub struct Env<'a> {
    pub var: &'a dyn Fn(&str) -> Option<String>,
    pub exe: Option<PathBuf>,
}

const USAGE: &str = "usage: pod-reloader-hooks hook list|config|dump|run <index>|ready|check";

pub fn run(args: &[String], env: &Env<'_>) -> Outcome {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["hook" | "hooks", "list"] => Outcome::ok(hooks::list()),
        ["hook" | "hooks", "config"] => Outcome::ok(format!("{}\n", hooks::batch_config())),
        ["hook" | "hooks", "dump"] => dump(env),
        ["hook" | "hooks", "run", index] => match Hook::by_index(index) {
            Some(hook) => match run_hook(hook, env) {
                Ok(()) => Outcome::ok(String::new()),
                Err(e) => Outcome::error(format!("execute: {e}")),
            },
            None if index.parse::<usize>().is_ok() => Outcome::error("execute: hook index does not exist"),
            None => Outcome::error(format!("invalid argument: {index:?} is not an integer")),
        },
        ["hook" | "hooks", "run", ..] => Outcome::error(format!(
            "invalid number of arguments: expected 1, received {}",
            args.len().saturating_sub(2)
        )),
        // No readiness hook is declared in `hook config`, so addon-operator never
        // asks; answer as module-sdk does without one.
        ["hook" | "hooks", "ready"] => Outcome::error("execute: readiness hook does not exist"),
        ["hook" | "hooks", "check"] => check(env),
        _ => Outcome::error(USAGE),
    }
}

fn load_schema(env: &Env<'_>) -> Result<SettingsSchema, HookError> {
    let dir = schema::module_dir((env.var)("MODULE_DIR").as_deref(), env.exe.as_deref());
    SettingsSchema::load(dir.as_deref())
}

fn run_hook(hook: Hook, env: &Env<'_>) -> Result<(), HookError> {
    let files = Files::from_env(|k| (env.var)(k));
    let contexts = files.binding_contexts()?;
    let values = files.values()?;
    let schema = load_schema(env)?;
    let out = hook.run(&schema, &contexts, &values)?;
    files.write_outputs(&out)?;
    // addon-operator logs a hook's stderr; module-sdk binaries log JSON lines.
    for w in hook.warnings(&schema, &contexts, &values) {
        eprintln!("{}", json!({"level": "warn", "hook": hook.name(), "msg": w}));
    }
    Ok(())
}

fn dump(env: &Env<'_>) -> Outcome {
    let path = (env.var)("HOOK_CONFIG_PATH").filter(|p| !p.is_empty()).unwrap_or("out/hook_config.json".into());
    let path = Path::new(&path);
    if (env.var)("CREATE_FILES").is_some_and(|v| v == "true")
        && let Some(dir) = path.parent()
        && let Err(e) = std::fs::create_dir_all(dir)
    {
        return Outcome::error(format!("can not write configs to file: mkdir all: {e}"));
    }
    match std::fs::write(path, format!("{}\n", hooks::batch_config())) {
        Ok(()) => Outcome::ok("dump successfully\n".into()),
        Err(e) => Outcome::error(format!("can not write configs to file: open file: {e}")),
    }
}

fn check_result(r: &CheckResult) -> Outcome {
    let body = format!("{}\n", serde_json::to_string(r).unwrap_or_default());
    if r.valid { Outcome::ok(body) } else { Outcome { stdout: String::new(), stderr: body, code: 1 } }
}

fn invalid(message: String) -> Outcome {
    check_result(&CheckResult { valid: false, message, warnings: Vec::new() })
}

/// `hook check`: the settings in `SETTINGS_PATH` (JSON or YAML).
fn check(env: &Env<'_>) -> Outcome {
    let Some(path) = (env.var)("SETTINGS_PATH").filter(|p| !p.is_empty()) else {
        return invalid("env 'SETTINGS_PATH' not set".into());
    };
    let raw = match std::fs::read_to_string(&path) {
        Ok(r) => r,
        Err(e) => return invalid(format!("failed to read settings: {path}: {e}")),
    };
    let settings: Value = match serde_json::from_str(&raw) {
        Ok(v) => v,
        Err(json_err) => match serde_saphyr::from_str::<Value>(&raw) {
            Ok(v) => v,
            Err(_) => return invalid(format!("failed to parse settings: {path}: {json_err}")),
        },
    };
    let settings = if settings.is_null() { json!({}) } else { settings };
    match load_schema(env) {
        Ok(schema) => check_result(&hooks::check(&schema, &settings)),
        Err(e) => invalid(e.to_string()),
    }
}
