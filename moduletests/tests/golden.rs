//! Three renders (defaults, full, namespaces) compared with
//! `tests/module/golden/` (dashboard JSON kept as its hash);
//! `UPDATE_GOLDEN=1` rewrites them.

use pod_reloader_moduletests::golden::golden_text;
use pod_reloader_moduletests::render::render_named;
use pod_reloader_moduletests::tools::module_tests_dir;

const GOLDEN_CASES: [&str; 3] = ["defaults", "full", "namespaces"];

/// The first differing line, with a little context, for the failure message.
fn first_difference(want: &str, got: &str) -> String {
    let (w, g): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
    let i = w.iter().zip(&g).position(|(a, b)| a != b).unwrap_or(w.len().min(g.len()));
    let from = i.saturating_sub(3);
    let show =
        |lines: &[&str]| lines.iter().skip(from).take(8).map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n");
    format!("first difference at line {}:\n  golden:\n{}\n  render:\n{}", i + 1, show(&w), show(&g))
}

#[test]
fn renders_match_the_golden_files() {
    let update = std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1");
    let dir = module_tests_dir().join("golden");
    let mut failures = Vec::new();
    for name in GOLDEN_CASES {
        let got = golden_text(&render_named(name).text);
        let path = dir.join(format!("{name}.yaml"));
        if update {
            std::fs::create_dir_all(&dir).expect("golden dir");
            std::fs::write(&path, &got).expect("write golden");
            println!("golden {name}: rewritten");
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if want == got {
            println!("golden {name}: matches");
        } else {
            failures.push(format!(
                "golden {name} differs ({}; UPDATE_GOLDEN=1 rewrites): {}",
                path.display(),
                first_difference(&want, &got)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
