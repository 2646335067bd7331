//! `module-values CASE.yaml`: prints the Helm values (JSON) of a case file
//! of the `tests/module/values/` form, built as addon-operator builds them
//! (openapi defaults, every beforeHelm hook). tests/node/run.sh renders the
//! chart it installs in-cluster from these.

use std::path::Path;
use std::process::ExitCode;

use pod_reloader_moduletests::values::{Case, helm_values};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [path] = args.as_slice() else {
        eprintln!("usage: module-values CASE.yaml");
        return ExitCode::from(2);
    };
    match helm_values(&Case::load(Path::new(path))) {
        Ok(values) => {
            println!("{values}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
