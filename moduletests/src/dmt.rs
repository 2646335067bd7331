//! The report of Deckhouse's `dmt lint`: its findings and totals read from
//! its text output (colours on), and the verdict: no error, and no warning
//! but the ones [`KEPT_WARNINGS`] keeps with their reasons.

use std::sync::LazyLock;

use regex::Regex;

/// dmt warnings the module keeps, each with its reason: (rule, file) →
/// reason. Any other warning fails the check (a warning is fixed or listed
/// here, never just ignored).
pub const KEPT_WARNINGS: &[(&str, &str, &str)] = &[(
    "legacy-release-file",
    "release.yaml",
    "release.yaml is the source of the release image's version.json and changelog.yaml (scripts/release.sh); \
     it is not in the bundle and Deckhouse never reads it",
)];

static ANSI: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\x1b\[[0-9;]*m").expect("regex"));
/// A finding opens with "<emoji> [rule (#linter)]".
static FINDING: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\S*\s*\[(?P<rule>[^\]]+)\]\s*$").expect("regex"));
/// Its fields are indented "Name: value" lines; a long message continues on further indented lines.
static FIELD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s+(?P<name>Message|Module|Object|FilePath|LineNumber|Value):\s*(?P<value>.*)$").expect("regex")
});
static VERSION: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"msg='DMT version'.*version='([^']+)'").expect("regex"));

/// One finding.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Finding {
    pub rule: String,
    /// "error" or "warning" from the message's colour; empty when uncoloured.
    pub level: String,
    pub message: String,
    pub file: String,
    pub line: String,
}

/// A whole run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub findings: Vec<Finding>,
    /// Critical + Errors of the totals; `None` when dmt printed no summary.
    pub errors: Option<u64>,
    pub warnings: Option<u64>,
    pub version: Option<String>,
}

fn total(plain: &str, name: &str) -> Option<u64> {
    let re = Regex::new(&format!(r"(?m)^\W*{name}:\s+(\d+)\s*$")).expect("regex");
    re.captures(plain)?.get(1)?.as_str().parse().ok()
}

/// Reads dmt's output. dmt marks a finding's level only by colour: the
/// message is red (31) for an error, yellow (93) for a warning; the verdict
/// rests on the totals it prints, not on the colours.
pub fn parse(raw: &str) -> Report {
    let mut findings: Vec<Finding> = Vec::new();
    let mut open = false;
    let mut field: Option<String> = None;
    for line in raw.split('\n') {
        let plain = ANSI.replace_all(line, "");
        if let Some(m) = FINDING.captures(&plain) {
            findings.push(Finding { rule: m["rule"].to_string(), ..Default::default() });
            open = true;
            field = None;
            continue;
        }
        let Some(cur) = findings.last_mut().filter(|_| open) else { continue };
        if let Some(f) = FIELD.captures(&plain) {
            let value = f["value"].trim().to_string();
            match &f["name"] {
                "Message" => {
                    cur.message = value;
                    cur.level = if line.contains("\x1b[31m") {
                        "error".into()
                    } else if line.contains("\x1b[93m") {
                        "warning".into()
                    } else {
                        String::new()
                    };
                }
                "FilePath" => cur.file = value,
                "LineNumber" => cur.line = value,
                _ => {}
            }
            field = Some(f["name"].to_string());
        } else if !plain.trim().is_empty() && plain.starts_with(' ') && field.as_deref() == Some("Message") {
            cur.message.push(' ');
            cur.message.push_str(plain.trim());
        } else if plain.trim().is_empty() || !plain.starts_with(' ') {
            open = false;
            field = None;
        }
    }
    let plain = ANSI.replace_all(raw, "");
    let (errors, warnings) = match (total(&plain, "Errors"), total(&plain, "Warnings")) {
        (Some(e), Some(w)) => (Some(e + total(&plain, "Critical").unwrap_or(0)), Some(w)),
        _ => (None, None),
    };
    let version = VERSION.captures(&plain).map(|c| c[1].to_string());
    Report { findings, errors, warnings, version }
}

fn count(n: u64, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// The verdict on a run with exit code `rc`: `Ok(report lines)` when dmt
/// found no error, exited 0 and warned only as [`KEPT_WARNINGS`] allows,
/// else `Err(report lines)`. The first line is the summary.
pub fn verdict(raw: &str, rc: i32) -> Result<Vec<String>, Vec<String>> {
    let r = parse(raw);
    let (Some(errors), Some(warnings)) = (r.errors, r.warnings) else {
        let plain = ANSI.replace_all(raw, "");
        let tail: Vec<&str> = plain.trim().split('\n').collect();
        let mut lines = vec![format!("dmt printed no summary (exit code {rc}); its output:")];
        lines.extend(tail[tail.len().saturating_sub(30)..].iter().map(|l| format!("    {l}")));
        return Err(lines);
    };
    let mut lines = vec![format!(
        "{}, {} (dmt {}, exit code {rc})",
        count(errors, "error"),
        count(warnings, "warning"),
        r.version.as_deref().unwrap_or("version unknown")
    )];
    let mut sorted = r.findings.clone();
    sorted.sort_by_key(|x| (x.level != "error", x.rule.clone(), x.file.clone(), x.line.parse::<u64>().unwrap_or(0)));
    for x in &sorted {
        // With no error in the totals, every finding is a warning.
        let level = if !x.level.is_empty() {
            x.level.as_str()
        } else if errors == 0 {
            "warning"
        } else {
            "finding"
        };
        let at = if x.line.is_empty() { x.file.clone() } else { format!("{}:{}", x.file, x.line) };
        lines.push(format!("    {level} [{}] {at}: {}", x.rule, x.message));
    }
    let unexpected: Vec<&Finding> = r
        .findings
        .iter()
        .filter(|x| {
            let rule = x.rule.split_whitespace().next().unwrap_or_default();
            !KEPT_WARNINGS.iter().any(|(r, f, _)| *r == rule && *f == x.file)
        })
        .collect();
    for x in &unexpected {
        lines.push(format!(
            "    not among the kept warnings (moduletests/src/dmt.rs KEPT_WARNINGS): [{}] {}",
            x.rule, x.file
        ));
    }
    if errors == 0 && rc == 0 && unexpected.is_empty() { Ok(lines) } else { Err(lines) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WARN: &str = "\x1b[93m";
    const ERR: &str = "\x1b[31m";
    const RESET: &str = "\x1b[0m";

    fn finding(rule: &str, colour: &str, file: &str) -> String {
        format!(
            "⚠️ [{rule} (#module)]\n    Message: {colour}something is off{RESET}\n      and continues here\n    Module: pod-reloader\n    FilePath: {file}\n\n"
        )
    }

    fn summary(errors: u64, warnings: u64) -> String {
        format!(
            "time=x level=INFO msg='DMT version' version='0.1.2'\n📝 Critical: 0\n📝 Errors: {errors}\n📝 Warnings: {warnings}\n"
        )
    }

    #[test]
    fn the_kept_warning_passes() {
        let log = format!("{}{}", finding("legacy-release-file", WARN, "release.yaml"), summary(0, 1));
        let lines = verdict(&log, 0).expect("kept warning passes");
        assert_eq!(lines[0], "0 errors, 1 warning (dmt 0.1.2, exit code 0)");
        assert_eq!(
            lines[1],
            "    warning [legacy-release-file (#module)] release.yaml: something is off and continues here"
        );
    }

    #[test]
    fn another_warning_an_error_a_failed_run_or_no_summary_fail() {
        let other = format!("{}{}", finding("images", WARN, "images/x"), summary(0, 1));
        let lines = verdict(&other, 0).expect_err("an unkept warning fails");
        assert!(lines.iter().any(|l| l.contains("not among the kept warnings") && l.contains("images/x")), "{lines:?}");
        let error = format!("{}{}", finding("legacy-release-file", ERR, "release.yaml"), summary(1, 0));
        let lines = verdict(&error, 1).expect_err("an error fails");
        assert!(lines[1].starts_with("    error ["), "{lines:?}");
        let kept = format!("{}{}", finding("legacy-release-file", WARN, "release.yaml"), summary(0, 1));
        assert!(verdict(&kept, 2).is_err(), "a non-zero exit code fails");
        let lines = verdict("panic: something", 2).expect_err("no summary fails");
        assert!(lines[0].starts_with("dmt printed no summary (exit code 2)"), "{lines:?}");
    }
}
