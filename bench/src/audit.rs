//! Counts the apiserver requests each controller made, from the test bed's
//! audit log (kube-apiserver `--audit-log-format=json`, one event per line,
//! the policy in bench/audit-policy.yaml logging only the two controllers'
//! ServiceAccounts). A request is counted once, by its auditID (a watch
//! logs a ResponseStarted and a ResponseComplete event), and attributed by
//! user and `requestReceivedTimestamp`.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::PathBuf;

use jiff::Timestamp;
use serde::Deserialize;

#[derive(Debug, Clone)]
pub struct Request {
    pub user: String,
    pub received: Timestamp,
    pub verb: String,
    pub resource: String,
    pub namespace: String,
    /// HTTP status of the answer (0 when the event has none).
    pub code: u16,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEvent {
    #[serde(rename = "auditID")]
    audit_id: String,
    #[serde(default)]
    verb: String,
    user: RawUser,
    #[serde(default)]
    object_ref: Option<RawRef>,
    request_received_timestamp: Timestamp,
    #[serde(default, rename = "requestURI")]
    request_uri: String,
    #[serde(default)]
    response_status: Option<RawStatus>,
}

#[derive(Deserialize)]
struct RawStatus {
    #[serde(default)]
    code: u16,
}

#[derive(Deserialize)]
struct RawUser {
    #[serde(default)]
    username: String,
}

#[derive(Deserialize)]
struct RawRef {
    #[serde(default)]
    resource: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default, rename = "apiGroup")]
    api_group: Option<String>,
}

pub struct AuditLog {
    path: PathBuf,
    offset: u64,
    seen: HashSet<String>,
    /// Requests read so far and not yet taken by a run.
    pending: Vec<Request>,
}

/// Requests of one controller run, split at the moment it became ready.
#[derive(Debug, Default, Clone)]
pub struct Counts {
    pub total: usize,
    /// Requests that change something: create, update, patch, delete, deletecollection.
    pub writes: usize,
    /// Requests answered with an HTTP error (400 and above).
    pub failed: usize,
    pub by_kind: BTreeMap<String, usize>,
}

/// Whether an audit verb changes something.
pub fn is_write(verb: &str) -> bool {
    matches!(verb, "create" | "update" | "patch" | "delete" | "deletecollection")
}

impl Counts {
    fn add(&mut self, r: &Request) {
        self.total += 1;
        if is_write(&r.verb) {
            self.writes += 1;
        }
        if r.code >= 400 {
            self.failed += 1;
        }
        *self.by_kind.entry(format!("{} {}", r.verb, r.resource)).or_default() += 1;
    }
}

impl AuditLog {
    pub fn new(path: PathBuf) -> Self {
        AuditLog { path, offset: 0, seen: HashSet::new(), pending: Vec::new() }
    }

    /// Reads the lines written since the last call.
    pub fn read_new(&mut self) -> anyhow::Result<()> {
        let mut f = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        f.seek(SeekFrom::Start(self.offset))?;
        let mut r = BufReader::new(f);
        let mut line = String::new();
        loop {
            line.clear();
            let n = r.read_line(&mut line)?;
            if n == 0 || !line.ends_with('\n') {
                break; // end, or a line still being written
            }
            self.offset += n as u64;
            let Ok(ev) = serde_json::from_str::<RawEvent>(&line) else {
                continue;
            };
            if !self.seen.insert(ev.audit_id) {
                continue;
            }
            let (resource, namespace) = match ev.object_ref {
                Some(o) => {
                    let res = o.resource.unwrap_or_default();
                    let res = match o.api_group.as_deref() {
                        Some(g) if !g.is_empty() => format!("{res}.{g}"),
                        _ => res,
                    };
                    (res, o.namespace.unwrap_or_default())
                }
                None => (ev.request_uri, String::new()),
            };
            self.pending.push(Request {
                user: ev.user.username,
                received: ev.request_received_timestamp,
                verb: ev.verb,
                resource,
                namespace,
                code: ev.response_status.map(|s| s.code).unwrap_or(0),
            });
        }
        Ok(())
    }

    /// The latest time `user` sent a request (watches aside: they start
    /// once and stay open) outside `exclude_ns`, after `since`.
    pub fn last_request(
        &mut self,
        user: &str,
        since: Timestamp,
        exclude_ns: &str,
    ) -> anyhow::Result<Option<Timestamp>> {
        self.read_new()?;
        Ok(self
            .pending
            .iter()
            .filter(|r| r.user == user && r.received >= since && r.namespace != exclude_ns && r.verb != "watch")
            .map(|r| r.received)
            .max())
    }

    /// The write requests `user` made in `[from, to]` outside `exclude_ns`,
    /// left in place (for users that are not a controller under test, such
    /// as kube-controller-manager's deployment controller).
    pub fn writes(&mut self, user: &str, from: Timestamp, to: Timestamp, exclude_ns: &str) -> anyhow::Result<Counts> {
        self.read_new()?;
        let mut c = Counts::default();
        for r in self.pending.iter().filter(|r| {
            r.user == user && r.received >= from && r.received <= to && r.namespace != exclude_ns && is_write(&r.verb)
        }) {
            c.add(r);
        }
        Ok(c)
    }

    /// Takes the requests `user` made in `[from, to]`, leaving out those in
    /// `exclude_ns` (the readiness probe's namespace), split at `split`:
    /// (before, after).
    pub fn take(
        &mut self,
        user: &str,
        from: Timestamp,
        split: Timestamp,
        to: Timestamp,
        exclude_ns: &str,
    ) -> anyhow::Result<(Counts, Counts)> {
        self.read_new()?;
        let (mine, rest): (Vec<Request>, Vec<Request>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|r| r.user == user && r.received >= from && r.received <= to);
        self.pending = rest;
        // Requests from earlier runs that showed up late are never counted.
        self.pending.retain(|r| r.received > to);
        let (mut before, mut after) = (Counts::default(), Counts::default());
        for r in mine.iter().filter(|r| r.namespace != exclude_ns) {
            if r.received <= split {
                before.add(r);
            } else {
                after.add(r);
            }
        }
        Ok((before, after))
    }
}
