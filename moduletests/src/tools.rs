//! Where the repository, the test bed and the tools are. A missing tool is a
//! failure naming how to get it (`make tools`, `make deps`), as the shell
//! suite reported it; only Deckhouse's dmt, which is not part of the
//! repository, is optional.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root, which is also the module directory.
/// Read at run time, as `pod_reloader_testsupport::repo_root` explains.
pub fn root() -> PathBuf {
    let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    Path::new(&crate_dir).parent().expect("a workspace crate has a parent").to_path_buf()
}

/// `tests/module`: the matrix, golden renders, CRD fixtures, promtool tests.
pub fn module_tests_dir() -> PathBuf {
    root().join("tests").join("module")
}

/// The Kubernetes version the tools are built for (`K8S_VERSION=` in testbed/lib.sh).
fn k8s_version() -> Option<String> {
    let lib = std::fs::read_to_string(root().join("testbed").join("lib.sh")).ok()?;
    lib.lines().find_map(|l| Some(l.strip_prefix("K8S_VERSION=")?.split_whitespace().next()?.to_string()))
}

/// `$XDG_CACHE_HOME/pod-reloader` (default `~/.cache/pod-reloader`).
pub fn cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache"));
    base.join("pod-reloader")
}

/// A tool by name: on `PATH`, else in the tools cache (`make tools`).
pub fn find(name: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(name)).collect::<Vec<_>>())
        .unwrap_or_default();
    let cached = k8s_version().map(|v| cache_dir().join(v).join("bin").join(name));
    on_path.into_iter().chain(cached).find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A tool the checks cannot do without: its path, or a panic saying how to get it.
pub fn require(name: &str) -> PathBuf {
    find(name).unwrap_or_else(|| panic!("missing tool {name} (make tools / make deps install them)"))
}

/// Deckhouse's linter: `$DMT`, else `../shared/tools/dmt/dmt` from the
/// repository root; `None` when absent (the check is then skipped).
pub fn dmt() -> Option<PathBuf> {
    let path = std::env::var_os("DMT")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("..").join("shared").join("tools").join("dmt").join("dmt"));
    is_executable(&path).then_some(path)
}

/// `<root>/.testbed/kubeconfig` (or `POD_RELOADER_TESTBED_KUBECONFIG`), as testsupport reads it.
pub fn kubeconfig() -> PathBuf {
    std::env::var_os("POD_RELOADER_TESTBED_KUBECONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".testbed").join("kubeconfig"))
}

/// The outcome of a command: success, and stdout + stderr together.
pub struct Run {
    pub ok: bool,
    pub output: String,
}

impl Run {
    fn from(out: Output) -> Self {
        let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
        output.push_str(&String::from_utf8_lossy(&out.stderr));
        Run { ok: out.status.success(), output }
    }
}

/// Runs `cmd`, capturing its output; a command that cannot start is a panic.
pub fn run(cmd: &mut Command) -> Run {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    Run::from(out)
}

/// `kubectl` against the test bed, as cluster admin.
pub fn kubectl() -> Command {
    let mut c = Command::new(require("kubectl"));
    c.env("KUBECONFIG", kubeconfig());
    c
}

/// The test bed answers, else a panic saying how to start it (as testsupport does).
pub fn require_testbed() {
    let r = run(kubectl().args(["version", "--request-timeout=10s"]));
    assert!(
        r.ok,
        "the test bed is not reachable (KUBECONFIG={}): start it with `make testbed` (or run `make test`).\n{}",
        kubeconfig().display(),
        r.output
    );
}
