//! Deckhouse's linter on the module directory (where `.dmtlint.yaml`'s
//! settings apply): no error, and no warning but the kept ones
//! (`moduletests/src/dmt.rs`). dmt is not part of the repository: without
//! it (`$DMT`, else `../shared/tools/dmt/dmt`) the check says SKIP and why.

use std::process::Command;

use pod_reloader_moduletests::dmt::verdict;
use pod_reloader_moduletests::tools::{dmt, root};

#[test]
fn dmt_lint_finds_no_error_and_only_kept_warnings() {
    let Some(dmt) = dmt() else {
        println!(
            "SKIP dmt lint: ../shared/tools/dmt/dmt is absent (Deckhouse's linter is not part of this repository)"
        );
        return;
    };
    // dmt shows a finding's level only by colour, so colours stay on.
    let out = Command::new(&dmt).arg("lint").arg(root()).env_remove("NO_COLOR").output().expect("run dmt");
    let mut log = String::from_utf8_lossy(&out.stdout).into_owned();
    log.push_str(&String::from_utf8_lossy(&out.stderr));
    match verdict(&log, out.status.code().unwrap_or(-1)) {
        Ok(lines) => println!("dmt lint: {}", lines.join("\n")),
        Err(lines) => panic!("dmt lint: {}", lines.join("\n")),
    }
}
