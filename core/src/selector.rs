//! Kubernetes label selectors in their string form (`a=b,c!=d,e in (x,y),
//! f notin (z),g,!h`): parsed to validate settings up front with a message
//! that names the faulty term, matched locally (namespace selection), and
//! rendered back canonically for server-side `labelSelector` parameters.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::LazyLock;

use regex::Regex;
use thiserror::Error;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector(pub Vec<Requirement>);

#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid label selector {input:?}: {reason}")]
pub struct SelectorError {
    pub input: String,
    pub reason: String,
}

static KEY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
        .expect("static regex")
});
static VALUE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$").expect("static regex"));

impl Selector {
    /// Parses the standard string form. An empty string selects everything.
    pub fn parse(input: &str) -> Result<Self, SelectorError> {
        let fail = |reason: String| SelectorError { input: input.to_string(), reason };
        let mut reqs = Vec::new();
        for term in split_terms(input).map_err(|r| fail(r.to_string()))? {
            let term = term.trim();
            if term.is_empty() {
                return Err(fail("empty term".into()));
            }
            reqs.push(parse_term(term).map_err(|r| fail(format!("term {term:?}: {r}")))?);
        }
        Ok(Selector(reqs))
    }

    /// Like [`Selector::parse`], but first converts the forms Stakater
    /// Reloader accepts in `--namespace-selector` and
    /// `--resource-label-selector`: `key:value` → `key=value`, and `key:*`
    /// or `key=*` → `key` (the key exists). Used for both settings, so a
    /// Reloader user's selectors keep their meaning.
    pub fn parse_reloader_forms(input: &str) -> Result<Self, SelectorError> {
        let converted: Vec<String> = split_terms(input)
            .map_err(|r| SelectorError { input: input.into(), reason: r.into() })?
            .into_iter()
            .map(convert_reloader_term)
            .collect();
        Self::parse(&converted.join(",")).map_err(|e| SelectorError { input: input.into(), reason: e.reason })
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        })
    }
}

impl fmt::Display for Selector {
    /// The canonical string form, accepted by the apiserver.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let terms: Vec<String> = self
            .0
            .iter()
            .map(|r| match r {
                Requirement::Equals(k, v) => format!("{k}={v}"),
                Requirement::NotEquals(k, v) => format!("{k}!={v}"),
                Requirement::In(k, vs) => format!("{k} in ({})", vs.join(",")),
                Requirement::NotIn(k, vs) => format!("{k} notin ({})", vs.join(",")),
                Requirement::Exists(k) => k.clone(),
                Requirement::DoesNotExist(k) => format!("!{k}"),
            })
            .collect();
        f.write_str(&terms.join(","))
    }
}

/// One term in Reloader's forms to the standard form; any other term is
/// returned as it is (trimmed) and judged by [`Selector::parse`]. `key!=*`
/// and `key==*` are not Reloader forms and stay invalid.
fn convert_reloader_term(term: &str) -> String {
    let t = term.trim();
    if t.contains('(') {
        return t.to_string();
    }
    if !t.contains('=')
        && let Some((k, v)) = t.split_once(':')
    {
        return match v.trim() {
            "*" => k.trim().to_string(),
            v => format!("{}={v}", k.trim()),
        };
    }
    match t.split_once('=') {
        Some((k, v)) if v.trim() == "*" && !k.ends_with('!') => k.trim().to_string(),
        _ => t.to_string(),
    }
}

/// Splits on commas outside parentheses.
fn split_terms(input: &str) -> Result<Vec<&str>, &'static str> {
    if input.trim().is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in input.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err("unbalanced parentheses");
                }
            }
            ',' if depth == 0 => {
                out.push(&input[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unbalanced parentheses");
    }
    out.push(&input[start..]);
    Ok(out)
}

fn key(k: &str) -> Result<String, String> {
    let k = k.trim();
    if k.len() > 316 || !KEY.is_match(k) {
        return Err(format!("{k:?} is not a valid label key"));
    }
    Ok(k.to_string())
}

fn value(v: &str) -> Result<String, String> {
    let v = v.trim();
    if v.len() > 63 || !VALUE.is_match(v) {
        return Err(format!("{v:?} is not a valid label value"));
    }
    Ok(v.to_string())
}

fn set(rest: &str) -> Result<Vec<String>, String> {
    let inner = rest
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| "expected a parenthesised value list".to_string())?;
    let values: Result<Vec<String>, String> = inner.split(',').map(value).collect();
    let values = values?;
    if values.is_empty() || values.iter().all(String::is_empty) {
        return Err("empty value list".into());
    }
    Ok(values)
}

fn parse_term(term: &str) -> Result<Requirement, String> {
    if let Some(k) = term.strip_prefix('!') {
        return Ok(Requirement::DoesNotExist(key(k)?));
    }
    if let Some((k, v)) = term.split_once("!=") {
        return Ok(Requirement::NotEquals(key(k)?, value(v)?));
    }
    if let Some((k, v)) = term.split_once("==") {
        return Ok(Requirement::Equals(key(k)?, value(v)?));
    }
    if let Some((k, v)) = term.split_once('=') {
        return Ok(Requirement::Equals(key(k)?, value(v)?));
    }
    let words: Vec<&str> = term.splitn(2, char::is_whitespace).collect();
    if words.len() == 2 {
        let rest = words[1].trim_start();
        if let Some(r) = rest.strip_prefix("notin") {
            return Ok(Requirement::NotIn(key(words[0])?, set(r)?));
        }
        if let Some(r) = rest.strip_prefix("in") {
            return Ok(Requirement::In(key(words[0])?, set(r)?));
        }
        return Err(format!("unknown operator in {rest:?} (want =, ==, !=, in, notin)"));
    }
    Ok(Requirement::Exists(key(term)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn parses_all_operators_and_round_trips() {
        let s = Selector::parse("a=b, c!=d,e in (x, y),f notin (z),g,!h,example.com/i==j").unwrap();
        assert_eq!(s.to_string(), "a=b,c!=d,e in (x,y),f notin (z),g,!h,example.com/i=j");
        assert_eq!(Selector::parse(&s.to_string()).unwrap(), s);
    }

    #[test]
    fn matches_labels() {
        let s = Selector::parse("team=a,env in (prod,stage),!legacy").unwrap();
        assert!(s.matches(&labels(&[("team", "a"), ("env", "prod")])));
        assert!(!s.matches(&labels(&[("team", "a"), ("env", "dev")])));
        assert!(!s.matches(&labels(&[("team", "a"), ("env", "prod"), ("legacy", "")])));
        assert!(Selector::parse("").unwrap().matches(&labels(&[])));
    }

    #[test]
    fn errors_name_the_term() {
        let e = Selector::parse("a=b,c in x").unwrap_err();
        assert!(e.to_string().contains("c in x"), "{e}");
        assert!(Selector::parse("a=b,").is_err());
        assert!(Selector::parse("bad key=1").is_err());
        assert!(Selector::parse("a in (b").is_err());
    }

    fn reloader(input: &str) -> String {
        Selector::parse_reloader_forms(input).unwrap().to_string()
    }

    #[test]
    fn reloader_colon_value_form_is_equality() {
        assert_eq!(reloader("team:a"), "team=a");
        assert_eq!(reloader(" example.com/team : a "), "example.com/team=a");
        let s = Selector::parse_reloader_forms("team:a").unwrap();
        assert_eq!(s, Selector::parse("team=a").unwrap());
        assert!(s.matches(&labels(&[("team", "a")])));
        assert!(!s.matches(&labels(&[("team", "b")])));
    }

    #[test]
    fn reloader_colon_star_form_is_existence() {
        assert_eq!(reloader("reloader:*"), "reloader");
        let s = Selector::parse_reloader_forms("reloader:*").unwrap();
        assert_eq!(s, Selector(vec![Requirement::Exists("reloader".into())]));
        assert!(s.matches(&labels(&[("reloader", "anything")])));
        assert!(!s.matches(&labels(&[("other", "x")])));
    }

    #[test]
    fn reloader_equals_star_form_is_existence() {
        assert_eq!(reloader("reloader=*"), "reloader");
        assert_eq!(reloader("reloader = *"), "reloader");
        assert_eq!(
            Selector::parse_reloader_forms("reloader=*").unwrap(),
            Selector(vec![Requirement::Exists("reloader".into())])
        );
    }

    #[test]
    fn reloader_forms_mix_with_standard_terms() {
        assert_eq!(
            reloader("team:a,reloader:*,env=*,tier in (web,api),!legacy,x!=y"),
            "team=a,reloader,env,tier in (web,api),!legacy,x!=y"
        );
        assert_eq!(reloader(""), "");
    }

    #[test]
    fn non_reloader_star_forms_stay_invalid() {
        for bad in ["k!=*", "k==*", "k*", "k:a:b", "k in (*)", "bad key:a"] {
            let e = Selector::parse_reloader_forms(bad).unwrap_err();
            assert_eq!(e.input, bad);
        }
        // The standard parser alone never accepts the Reloader forms.
        for form in ["k:a", "k:*", "k=*"] {
            assert!(Selector::parse(form).is_err(), "{form}");
        }
    }
}
