//! Results: per-round values, medians and ratios; written as
//! docs/benchmarks.json, docs/benchmarks.md and the RSS chart (SVG).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde_json::{Value, json};

use crate::util::{median, mib};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Bytes,
    Seconds,
    Count,
    PerReload,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::Bytes => "bytes",
            Unit::Seconds => "seconds",
            Unit::Count => "count",
            Unit::PerReload => "requests per reloaded workload",
        }
    }

    fn show(self, v: f64) -> String {
        if v.is_nan() {
            return "n/a".into();
        }
        match self {
            Unit::Bytes => format!("{:.1} MiB", mib(v)),
            Unit::Seconds if v < 10.0 => format!("{v:.3} s"),
            Unit::Seconds => format!("{v:.1} s"),
            Unit::Count if v.fract() == 0.0 => format!("{v:.0}"),
            Unit::Count => format!("{v:.1}"),
            Unit::PerReload => format!("{v:.2}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Row {
    pub scenario: String,
    pub metric: String,
    pub unit: Unit,
    pub what: String,
    pub pod_reloader: Vec<f64>,
    pub reloader: Vec<f64>,
}

impl Row {
    pub fn pod_median(&self) -> f64 {
        median(&finite(&self.pod_reloader)).unwrap_or(f64::NAN)
    }
    pub fn rel_median(&self) -> f64 {
        median(&finite(&self.reloader)).unwrap_or(f64::NAN)
    }
    pub fn ratio(&self) -> Option<f64> {
        let (p, r) = (self.pod_median(), self.rel_median());
        (r.is_finite() && r != 0.0 && p.is_finite()).then(|| p / r)
    }
}

fn finite(v: &[f64]) -> Vec<f64> {
    v.iter().copied().filter(|x| x.is_finite()).collect()
}

/// One point of the chart: memory with `secrets` Secrets present.
#[derive(Debug, Clone)]
pub struct CurvePoint {
    pub secrets: usize,
    pub pod_steady: f64,
    pub pod_peak: f64,
    pub rel_steady: f64,
    pub rel_peak: f64,
}

#[derive(Default)]
pub struct Results {
    pub rows: Vec<Row>,
    pub curve: Vec<CurvePoint>,
    pub curve_caption: String,
    /// (scenario, controller) → request counts by "verb resource", from one run.
    pub breakdown: BTreeMap<(String, String), BTreeMap<String, usize>>,
    /// Facts printed at the top of the page (label, value).
    pub setup: Vec<(String, String)>,
    /// Per-scenario notes the harness measured on the way (object creation times, ...).
    pub scenario_notes: BTreeMap<String, Vec<String>>,
    /// The values of N S6 measured (its rows carry `_n<N>` suffixes).
    pub s6_points: Vec<usize>,
}

/// One S6 point: medians of both controllers at N.
#[derive(Debug, Clone)]
pub struct ScalePoint {
    pub n: usize,
    pub objects: usize,
    pub pod_steady: f64,
    pub rel_steady: f64,
    pub pod_peak: f64,
    pub rel_peak: f64,
    pub pod_ready: f64,
    pub rel_ready: f64,
}

/// Bytes of steady RSS per watched object between two points (pod-reloader, Reloader).
pub fn slope(a: &ScalePoint, b: &ScalePoint) -> (f64, f64) {
    let d = b.objects as f64 - a.objects as f64;
    ((b.pod_steady - a.pod_steady) / d, (b.rel_steady - a.rel_steady) / d)
}

impl Results {
    /// Records one round's value. `pod` tells the side.
    pub fn add(&mut self, scenario: &str, metric: &str, unit: Unit, what: &str, pod: bool, v: f64) {
        let row = match self.rows.iter_mut().position(|r| r.scenario == scenario && r.metric == metric) {
            Some(i) => &mut self.rows[i],
            None => {
                self.rows.push(Row {
                    scenario: scenario.into(),
                    metric: metric.into(),
                    unit,
                    what: what.into(),
                    pod_reloader: vec![],
                    reloader: vec![],
                });
                self.rows.last_mut().unwrap()
            }
        };
        if pod {
            row.pod_reloader.push(v);
        } else {
            row.reloader.push(v);
        }
    }

    pub fn note(&mut self, scenario: &str, text: String) {
        self.scenario_notes.entry(scenario.into()).or_default().push(text);
    }

    pub fn find(&self, scenario: &str, metric: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.scenario == scenario && r.metric == metric)
    }

    /// S6's points with medians, in the order measured.
    pub fn scale_points(&self) -> Vec<ScalePoint> {
        let med = |m: &str, n: usize, pod: bool| {
            self.find("S6", &format!("{m}_n{n}"))
                .map(|r| if pod { r.pod_median() } else { r.rel_median() })
                .unwrap_or(f64::NAN)
        };
        self.s6_points
            .iter()
            .map(|&n| ScalePoint {
                n,
                objects: crate::scale::watched_objects(n),
                pod_steady: med("rss_steady_bytes", n, true),
                rel_steady: med("rss_steady_bytes", n, false),
                pod_peak: med("rss_peak_bytes", n, true),
                rel_peak: med("rss_peak_bytes", n, false),
                pod_ready: med("ready_seconds", n, true),
                rel_ready: med("ready_seconds", n, false),
            })
            .collect()
    }

    pub fn to_json(&self) -> Value {
        let num = |v: f64| if v.is_finite() { json!(v) } else { Value::Null };
        let mut out: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                json!({
                    "scenario": r.scenario,
                    "metric": r.metric,
                    "unit": r.unit.name(),
                    "pod_reloader": num(r.pod_median()),
                    "reloader": num(r.rel_median()),
                    "ratio": r.ratio().map(num).unwrap_or(Value::Null),
                    "rounds": {
                        "pod_reloader": r.pod_reloader.iter().map(|v| num(*v)).collect::<Vec<_>>(),
                        "reloader": r.reloader.iter().map(|v| num(*v)).collect::<Vec<_>>(),
                    },
                })
            })
            .collect();
        for p in &self.curve {
            for (metric, pv, rv) in
                [("rss_steady_bytes", p.pod_steady, p.rel_steady), ("rss_peak_bytes", p.pod_peak, p.rel_peak)]
            {
                out.push(json!({
                    "scenario": "S1-chart",
                    "metric": format!("{metric}_with_{}_secrets", p.secrets),
                    "unit": "bytes",
                    "pod_reloader": num(pv),
                    "reloader": num(rv),
                    "ratio": if rv > 0.0 { num(pv / rv) } else { Value::Null },
                }));
            }
        }
        Value::Array(out)
    }
}

pub struct Target {
    pub text: String,
    pub measured: String,
    /// None: not measured in this run.
    pub met: Option<bool>,
    /// A figure the issue asks to report, with no threshold to meet.
    pub report_only: bool,
}

pub fn write_all(
    out_dir: &Path,
    res: &Results,
    targets: &[Target],
    notes: &str,
    scenario_titles: &[(&str, String)],
) -> anyhow::Result<()> {
    std::fs::create_dir_all(out_dir)?;
    let json = serde_json::to_string_pretty(&res.to_json())? + "\n";
    std::fs::write(out_dir.join("benchmarks.json"), json)?;
    std::fs::write(out_dir.join("benchmarks-rss.svg"), svg(&res.curve, &res.curve_caption))?;
    let points = res.scale_points();
    if !points.is_empty() {
        std::fs::write(out_dir.join("benchmarks-scale.svg"), svg_scale(&points))?;
    }
    std::fs::write(out_dir.join("benchmarks.md"), markdown(res, targets, notes, scenario_titles))?;
    Ok(())
}

fn markdown(res: &Results, targets: &[Target], notes: &str, scenario_titles: &[(&str, String)]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Benchmarks: pod-reloader and Stakater Reloader\n");
    let _ = writeln!(
        s,
        "Written by `make bench` (the `pod-reloader-bench` harness in `bench/`); do not edit by hand. \
         Every figure is measured on the machine below; the values of each round are in `benchmarks.json`.\n"
    );
    for (k, v) in &res.setup {
        let _ = writeln!(s, "- **{k}**: {v}");
    }
    let _ = writeln!(s, "\n## Targets\n");
    let _ = writeln!(s, "| target | measured | met |\n| --- | --- | --- |");
    for t in targets {
        let met = match t.met {
            _ if t.report_only && t.measured != "-" => "reported",
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "not measured",
        };
        let _ = writeln!(s, "| {} | {} | {met} |", t.text, t.measured);
    }
    for (scenario, title) in scenario_titles {
        let rows: Vec<&Row> = res.rows.iter().filter(|r| r.scenario == *scenario).collect();
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(s, "\n## {scenario}: {title}\n");
        let _ = writeln!(
            s,
            "| metric | pod-reloader (median) | Reloader (median) | ratio pod-reloader / Reloader | pod-reloader rounds | Reloader rounds |\n| --- | --- | --- | --- | --- | --- |"
        );
        for r in rows {
            let rounds = |v: &[f64]| v.iter().map(|x| r.unit.show(*x)).collect::<Vec<_>>().join(", ");
            let ratio = r.ratio().map(|x| format!("{x:.3}")).unwrap_or_else(|| "n/a".into());
            let _ = writeln!(
                s,
                "| {} (`{}`) | {} | {} | {ratio} | {} | {} |",
                r.what,
                r.metric,
                r.unit.show(r.pod_median()),
                r.unit.show(r.rel_median()),
                rounds(&r.pod_reloader),
                rounds(&r.reloader),
            );
        }
        if let Some(n) = res.scenario_notes.get(*scenario) {
            let _ = writeln!(s);
            for line in n {
                let _ = writeln!(s, "- {line}");
            }
        }
        let bd: Vec<_> = res.breakdown.iter().filter(|((sc, _), _)| sc == scenario).collect();
        if !bd.is_empty() {
            let when = if matches!(*scenario, "S1" | "S5" | "S5b") {
                "from start to the end of the steady window"
            } else {
                "after the scenario's changes began"
            };
            let _ = writeln!(s, "\nRequests by kind in the last round ({when}; the probe namespace left out):\n");
            for ((_, who), counts) in bd {
                let list = counts.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", ");
                let _ = writeln!(s, "- {who}: {list}");
            }
        }
    }
    let points = res.scale_points();
    if !points.is_empty() {
        let _ = writeln!(s, "\n## S6: cost against N\n");
        let _ = writeln!(
            s,
            "![Steady RSS and start-to-ready time of both controllers against N (log scale)](benchmarks-scale.svg)\n"
        );
        let _ = writeln!(
            s,
            "| N | watched objects | pod-reloader steady | Reloader steady | pod-reloader peak | Reloader peak | pod-reloader ready | Reloader ready |\n| --- | --- | --- | --- | --- | --- | --- | --- |"
        );
        for p in &points {
            let (b, t) = (|v: f64| Unit::Bytes.show(v), |v: f64| Unit::Seconds.show(v));
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                p.n,
                p.objects,
                b(p.pod_steady),
                b(p.rel_steady),
                b(p.pod_peak),
                b(p.rel_peak),
                t(p.pod_ready),
                t(p.rel_ready)
            );
        }
        let _ = writeln!(
            s,
            "\nBytes of steady RSS per watched object (ConfigMaps, Secrets and Deployments), the slope between two points:\n"
        );
        let _ = writeln!(s, "| between N | pod-reloader | Reloader | ratio |\n| --- | --- | --- | --- |");
        let mut pairs: Vec<(usize, usize)> = (1..points.len()).map(|i| (i - 1, i)).collect();
        if points.len() > 2 {
            pairs.push((0, points.len() - 1));
        }
        for (i, j) in pairs {
            let (ps, rs) = slope(&points[i], &points[j]);
            let _ = writeln!(
                s,
                "| {} and {} | {ps:.0} B | {rs:.0} B | {} |",
                points[i].n,
                points[j].n,
                if rs.is_finite() && rs != 0.0 { format!("{:.3}", ps / rs) } else { "n/a".into() }
            );
        }
    }
    if !res.curve.is_empty() {
        let _ = writeln!(s, "\n## RSS against the number of Secrets\n");
        let _ = writeln!(s, "![RSS of both controllers against the number of 8 KiB Secrets](benchmarks-rss.svg)\n");
        let _ = writeln!(
            s,
            "| Secrets | pod-reloader steady | pod-reloader peak | Reloader steady | Reloader peak |\n| --- | --- | --- | --- | --- |"
        );
        for p in &res.curve {
            let b = |v: f64| Unit::Bytes.show(v);
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} |",
                p.secrets,
                b(p.pod_steady),
                b(p.pod_peak),
                b(p.rel_steady),
                b(p.rel_peak)
            );
        }
    }
    let _ = writeln!(s, "\n{}", notes.trim_end());
    wrap_long_lines(&s)
}

/// The longest line Deckhouse's markdownlint accepts (dmt: MD013
/// `line_length`, tables included). Notes from bench/notes.md run longer.
const MAX_LINE: usize = 1000;

/// Abbreviations whose period ends no sentence.
const ABBREVIATIONS: [&str; 5] = ["e.g.", "i.e.", "vs.", "etc.", "cf."];

/// The page with every line longer than [`MAX_LINE`] broken into one sentence
/// a line (a list item's further lines indented under its text). A line break
/// inside a paragraph renders as a space, so the page reads the same. Table
/// rows, headings and fenced code are left alone (they cannot be broken); so
/// is a break that would start a line with a block marker (`- `, `1. `, `#`,
/// `|`, ...), which would change the structure.
fn wrap_long_lines(md: &str) -> String {
    let mut out = String::with_capacity(md.len() + md.len() / 50);
    let mut fenced = false;
    for line in md.split_inclusive('\n') {
        let text = line.strip_suffix('\n').unwrap_or(line);
        let trimmed = text.trim_start_matches(' ');
        let fence = trimmed.starts_with("```") || trimmed.starts_with("~~~");
        if fence {
            fenced = !fenced;
        }
        if fenced || fence || text.chars().count() <= MAX_LINE || trimmed.starts_with(['|', '#']) {
            out.push_str(line);
            continue;
        }
        let lead = text.len() - trimmed.len();
        let indent = " ".repeat(lead + list_marker_width(trimmed));
        for (i, sentence) in sentences(trimmed).into_iter().enumerate() {
            out.push_str(if i == 0 { &text[..lead] } else { &indent });
            out.push_str(sentence);
            out.push('\n');
        }
        if !line.ends_with('\n') {
            out.pop();
        }
    }
    out
}

/// `text` cut after each sentence: a `.`, `!` or `?` followed by a space,
/// outside code spans, not ending an abbreviation, and not followed by text
/// that would open a block at the start of a line.
fn sentences(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut in_code) = (0, false);
    let bytes = text.as_bytes();
    for (i, c) in text.char_indices() {
        if c == '`' {
            in_code = !in_code;
        }
        if in_code || !matches!(c, '.' | '!' | '?') || bytes.get(i + 1) != Some(&b' ') {
            continue;
        }
        let word = text[start..=i].rsplit(' ').next().unwrap_or("").trim_start_matches('(');
        let rest = &text[i + 2..];
        // A number's period ("1. ") may be a list marker written inline.
        let number = word.len() > 1 && word[..word.len() - 1].bytes().all(|b| b.is_ascii_digit());
        if ABBREVIATIONS.iter().any(|a| word.eq_ignore_ascii_case(a)) || number || rest.is_empty() || opens_block(rest)
        {
            continue;
        }
        parts.push(&text[start..=i]);
        start = i + 2;
    }
    parts.push(&text[start..]);
    parts
}

/// The width of the list marker `line` starts with (`- `, `1. `), 0 if none:
/// where a list item's text, and so its further lines, begin.
fn list_marker_width(line: &str) -> usize {
    if ["- ", "* ", "+ "].iter().any(|m| line.starts_with(m)) {
        return 2;
    }
    let digits = line.bytes().take_while(u8::is_ascii_digit).count();
    match line.as_bytes().get(digits..digits + 2) {
        Some(b". " | b") ") if digits > 0 => digits + 2,
        _ => 0,
    }
}

/// Whether `line`, at the start of a line, would be read as something other
/// than paragraph text.
fn opens_block(line: &str) -> bool {
    let rule = !line.trim().is_empty() && line.trim().chars().all(|c| c == '-' || c == '=' || c == '*' || c == '_');
    list_marker_width(line) > 0
        || rule
        || ["#", ">", "|", "<", "```", "~~~", "    "].iter().any(|m| line.starts_with(m))
}

/// A line chart of steady and peak RSS (MiB) against the number of Secrets.
pub fn svg(curve: &[CurvePoint], caption: &str) -> String {
    let (w, h) = (760.0, 460.0);
    let (left, right, top, bottom) = (80.0, 200.0, 50.0, 60.0);
    let pw = w - left - right;
    let ph = h - top - bottom;
    let xmax = curve.iter().map(|p| p.secrets).max().unwrap_or(1).max(1) as f64;
    let ymax_raw = curve
        .iter()
        .flat_map(|p| [p.pod_steady, p.pod_peak, p.rel_steady, p.rel_peak])
        .filter(|v| v.is_finite())
        .map(mib)
        .fold(1.0, f64::max);
    let ystep = nice_step(ymax_raw / 5.0);
    let ymax = (ymax_raw / ystep).ceil() * ystep;
    let xstep = nice_step(xmax / 5.0);
    let x = |v: f64| left + pw * v / xmax;
    let y = |v: f64| top + ph - ph * v / ymax;
    let mut s = String::new();
    svg_open(&mut s, w, h, "RSS against the number of 8 KiB Secrets");
    let _ = writeln!(
        s,
        r##"<text x="{}" y="40" font-size="11" text-anchor="middle" fill="#555">{caption}</text>"##,
        w / 2.0
    );
    let mut yv = 0.0;
    while yv <= ymax + 1e-9 {
        let _ = writeln!(
            s,
            r##"<line x1="{left}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{yv:.0}</text>"##,
            left + pw,
            left - 6.0,
            y(yv) + 4.0,
            yy = y(yv)
        );
        yv += ystep;
    }
    let mut xv = 0.0;
    while xv <= xmax + 1e-9 {
        let _ = writeln!(
            s,
            r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{top}" y2="{}" stroke="#eee"/><text x="{xx:.1}" y="{}" text-anchor="middle">{xv:.0}</text>"##,
            top + ph,
            top + ph + 18.0,
            xx = x(xv)
        );
        xv += xstep;
    }
    let _ = writeln!(s, r##"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##);
    let _ = writeln!(s, r#"<text x="{}" y="{}" text-anchor="middle">Secrets</text>"#, left + pw / 2.0, h - 18.0);
    let _ = writeln!(
        s,
        r#"<text x="22" y="{}" text-anchor="middle" transform="rotate(-90 22 {})">RSS (MiB)</text>"#,
        top + ph / 2.0,
        top + ph / 2.0
    );
    type Pick = fn(&CurvePoint) -> f64;
    let series: [(&str, &str, bool, Pick); 4] = [
        ("Reloader, peak", "#d62728", true, |p| p.rel_peak),
        ("Reloader, steady", "#d62728", false, |p| p.rel_steady),
        ("pod-reloader, peak", "#1f77b4", true, |p| p.pod_peak),
        ("pod-reloader, steady", "#1f77b4", false, |p| p.pod_steady),
    ];
    for (i, (name, color, dashed, pick)) in series.iter().enumerate() {
        let pts: Vec<(f64, f64)> =
            curve.iter().filter(|p| pick(p).is_finite()).map(|p| (x(p.secrets as f64), y(mib(pick(p))))).collect();
        let dash = if *dashed { r#" stroke-dasharray="6 4""# } else { "" };
        let path = pts.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect::<Vec<_>>().join(" ");
        let _ = writeln!(s, r#"<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"{dash}/>"#);
        for (a, b) in &pts {
            let _ = writeln!(s, r#"<circle cx="{a:.1}" cy="{b:.1}" r="3" fill="{color}"/>"#);
        }
        let ly = top + 20.0 + 22.0 * i as f64;
        let lx = left + pw + 16.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" x2="{}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="2"{dash}/><text x="{}" y="{}">{name}</text>"#,
            lx + 28.0,
            lx + 34.0,
            ly + 4.0
        );
    }
    let _ = writeln!(s, "</svg>");
    s
}

/// S6's chart: two panels against N on a log scale, steady and peak RSS
/// (MiB) on the left, start to ready (s) on the right.
pub fn svg_scale(points: &[ScalePoint]) -> String {
    let (w, h) = (900.0, 440.0);
    let (top, bottom, pw) = (56.0, 80.0, 330.0);
    let ph = h - top - bottom;
    let lefts = [70.0, 70.0 + pw + 110.0];
    let nmin = points.iter().map(|p| p.n).min().unwrap_or(1).max(1) as f64;
    let nmax = points.iter().map(|p| p.n).max().unwrap_or(10).max(10) as f64;
    let (lmin, lmax) = (nmin.log10().floor(), nmax.log10().ceil().max(nmin.log10().floor() + 1.0));
    let mut s = String::new();
    svg_open(&mut s, w, h, "S6: N ConfigMaps + N Secrets of 1 KiB, N/10 Deployments");
    type Pick = fn(&ScalePoint) -> f64;
    /// Name, colour, dashed, value.
    type Series = (&'static str, &'static str, bool, Pick);
    let panels: [(&str, &str, Vec<Series>); 2] = [
        (
            "RSS (MiB)",
            "MiB",
            vec![
                ("Reloader, peak", "#d62728", true, |p| mib(p.rel_peak)),
                ("Reloader, steady", "#d62728", false, |p| mib(p.rel_steady)),
                ("pod-reloader, peak", "#1f77b4", true, |p| mib(p.pod_peak)),
                ("pod-reloader, steady", "#1f77b4", false, |p| mib(p.pod_steady)),
            ],
        ),
        (
            "start to ready (s)",
            "s",
            vec![("Reloader", "#d62728", false, |p| p.rel_ready), ("pod-reloader", "#1f77b4", false, |p| p.pod_ready)],
        ),
    ];
    for (pi, (title, _unit, series)) in panels.iter().enumerate() {
        let left = lefts[pi];
        let ymax_raw = points
            .iter()
            .flat_map(|p| series.iter().map(move |(_, _, _, f)| f(p)))
            .filter(|v| v.is_finite())
            .fold(1e-9, f64::max);
        let ystep = nice_step(ymax_raw / 5.0);
        let ymax = (ymax_raw / ystep).ceil() * ystep;
        let x = |n: f64| left + pw * (n.log10() - lmin) / (lmax - lmin);
        let y = |v: f64| top + ph - ph * v / ymax;
        let _ = writeln!(s, r#"<text x="{}" y="44" text-anchor="middle">{title}</text>"#, left + pw / 2.0);
        let mut yv = 0.0;
        while yv <= ymax + 1e-9 {
            let _ = writeln!(
                s,
                r##"<line x1="{left}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
                left + pw,
                left - 6.0,
                y(yv) + 4.0,
                if ystep < 1.0 { format!("{yv:.1}") } else { format!("{yv:.0}") },
                yy = y(yv)
            );
            yv += ystep;
        }
        let mut e = lmin;
        while e <= lmax + 1e-9 {
            let n = 10f64.powf(e);
            let _ = writeln!(
                s,
                r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{top}" y2="{}" stroke="#eee"/><text x="{xx:.1}" y="{}" text-anchor="middle">{n:.0}</text>"##,
                top + ph,
                top + ph + 18.0,
                xx = x(n)
            );
            e += 1.0;
        }
        let _ = writeln!(s, r##"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">N (log scale)</text>"#,
            left + pw / 2.0,
            top + ph + 36.0
        );
        for (i, (name, color, dashed, pick)) in series.iter().enumerate() {
            let pts: Vec<(f64, f64)> =
                points.iter().filter(|p| pick(p).is_finite()).map(|p| (x(p.n as f64), y(pick(p)))).collect();
            let dash = if *dashed { r#" stroke-dasharray="6 4""# } else { "" };
            let path = pts.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect::<Vec<_>>().join(" ");
            let _ = writeln!(s, r#"<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"{dash}/>"#);
            for (a, b) in &pts {
                let _ = writeln!(s, r#"<circle cx="{a:.1}" cy="{b:.1}" r="3" fill="{color}"/>"#);
            }
            let lx = left + (i % 2) as f64 * 165.0;
            let ly = h - 22.0 + (i / 2) as f64 * 16.0 - 8.0;
            let _ = writeln!(
                s,
                r#"<line x1="{lx}" x2="{}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="2"{dash}/><text x="{}" y="{}">{name}</text>"#,
                lx + 24.0,
                lx + 30.0,
                ly + 4.0
            );
        }
    }
    let _ = writeln!(s, "</svg>");
    s
}

fn nice_step(raw: f64) -> f64 {
    let raw = raw.max(1e-9);
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let n = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    n * mag
}

/// The start of a chart: the `<svg>` element, a white background and the
/// title centred at the top.
fn svg_open(s: &mut String, w: f64, h: f64, title: &str) {
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(s, r#"<text x="{}" y="22" font-size="15" text-anchor="middle">{title}</text>"#, w / 2.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines of `md` longer than [`MAX_LINE`], tables aside.
    fn too_long(md: &str) -> Vec<usize> {
        md.lines().filter(|l| !l.starts_with('|') && l.chars().count() > MAX_LINE).map(|l| l.chars().count()).collect()
    }

    fn long_sentence(n: usize) -> String {
        format!("Sentence {n} {}.", "word ".repeat(60).trim_end())
    }

    #[test]
    fn short_lines_and_tables_are_left_alone() {
        let table_row = format!("| {} |", "x".repeat(MAX_LINE + 10));
        let md = format!("# Title\n\n- a. b. c.\n{table_row}\n");
        assert_eq!(wrap_long_lines(&md), md);
    }

    #[test]
    fn a_long_list_item_becomes_one_sentence_a_line_under_the_item() {
        let item = format!("- **Bold.** {}", (0..8).map(long_sentence).collect::<Vec<_>>().join(" "));
        assert!(item.len() > MAX_LINE);
        let md = format!("## Notes\n\n{item}\n- next\n");
        let out = wrap_long_lines(&md);
        assert!(too_long(&out).is_empty(), "{out}");
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[2].starts_with("- **Bold.** Sentence 0 word"), "{out}");
        for (n, l) in lines[3..10].iter().enumerate() {
            assert!(l.starts_with(&format!("  Sentence {} word", n + 1)), "{out}");
        }
        assert_eq!(lines[10], "- next");
        // Rejoined, the item is the original text: the breaks render as spaces.
        assert_eq!(lines[2..10].iter().map(|l| l.trim_start()).collect::<Vec<_>>().join(" "), item);
    }

    #[test]
    fn no_break_inside_code_after_an_abbreviation_or_before_a_block_marker() {
        let filler = "filler ".repeat(150);
        let line = format!("{filler}`a. b` e.g. this. 1. not a list. - not an item. # not a heading. End.");
        let out = wrap_long_lines(&format!("{line}\n"));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines,
            [format!("{filler}`a. b` e.g. this. 1. not a list. - not an item. # not a heading."), "End.".into()]
        );
    }

    #[test]
    fn an_ordered_item_and_a_paragraph_opening_with_code_are_broken_too() {
        let body = (0..4).map(long_sentence).collect::<Vec<_>>().join(" ");
        let out = wrap_long_lines(&format!("12. {body}\n\n`code` {body}\n"));
        assert!(too_long(&out).is_empty(), "{out}");
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[1].starts_with("    Sentence 1 "), "{out}");
        assert!(lines[5].starts_with("`code` Sentence 0 ") && lines[6].starts_with("Sentence 1 "), "{out}");
    }

    /// docs/benchmarks.md as committed is what this formatting writes.
    #[test]
    fn the_committed_page_is_formatted() {
        let page =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/benchmarks.md")).unwrap();
        assert!(too_long(&page).is_empty(), "lines over {MAX_LINE} characters: {:?}", too_long(&page));
        assert_eq!(wrap_long_lines(&page), page);
    }
}
