//! The controller's NetworkPolicy rules. Default deny, then:
//!
//! - ingress: only the metrics/health port 9090, from Prometheus
//!   (`d8-monitoring`); kubelet probes come from the node and are not subject
//!   to it;
//! - egress: the kube-apiserver endpoints (the `kubernetes` EndpointSlices in
//!   `default`), DNS in `kube-system`, and for each webhook that is on (the
//!   alert webhook, the webhook mode's: [`Inputs::webhook_endpoints`]) its
//!   port, to its IP address (a `url` with an IP) and to the networks in its
//!   `egress`.
//!
//! Fail closed, never open: while the apiserver endpoints are unknown there is
//! no apiserver rule at all (the controller cannot reach the API server and
//! stays not Ready; the hook warns and its metric
//! `d8_pod_reloader_apiserver_endpoints` is 0) rather than "any address on
//! 443/6443", which would let the pod reach every HTTPS server. Rendering no
//! NetworkPolicy until the endpoints are known would be worse still (no
//! restriction at all). A webhook given by host name (or in the operator's
//! Secret, which the module does not read) cannot be selected by a
//! NetworkPolicy: without `egress` it gets no rule, and
//! `hook check` and the hook warn.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde_json::{Value, json};

use crate::protocol::Item;
use crate::settings::{Inputs, WebhookEndpoint};
use crate::violation::Violation;

/// One kube-apiserver endpoint.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    pub address: IpAddr,
    pub port: u16,
}

impl Endpoint {
    pub fn to_value(&self) -> Value {
        json!({"address": self.address.to_string(), "port": self.port})
    }

    pub fn from_value(v: &Value) -> Option<Self> {
        let address = v.get("address")?.as_str()?.parse().ok()?;
        let port = u16::try_from(v.get("port")?.as_u64()?).ok().filter(|p| *p > 0)?;
        Some(Endpoint { address, port })
    }
}

/// The jqFilter of the EndpointSlice binding: ready addresses and TCP ports.
pub const ENDPOINTSLICE_JQ: &str = "{name: .metadata.name, addressType: .addressType, \
addresses: [.endpoints[]? | select(.conditions.ready != false) | .addresses[]?], \
ports: [.ports[]? | select((.protocol // \"TCP\") == \"TCP\") | .port]}";

/// The endpoints of EndpointSlice snapshot items (filter results, or full
/// objects when the binding keeps them), sorted and without duplicates.
pub fn endpoints(items: &[Item]) -> Vec<Endpoint> {
    let mut out = BTreeSet::new();
    for item in items {
        let filtered;
        let slice = match (&item.filter_result, &item.object) {
            (Some(f), _) if f.is_object() => f,
            (_, Some(o)) if o.is_object() => {
                filtered = filter_slice(o);
                &filtered
            }
            _ => continue,
        };
        let addresses = slice.get("addresses").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        let ports = slice.get("ports").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        for a in addresses {
            let Some(address) = a.as_str().and_then(|s| s.parse::<IpAddr>().ok()) else { continue };
            for p in ports {
                if let Some(port) = p.as_u64().and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0) {
                    out.insert(Endpoint { address, port });
                }
            }
        }
    }
    out.into_iter().collect()
}

/// [`ENDPOINTSLICE_JQ`] applied to a full EndpointSlice object.
fn filter_slice(o: &Value) -> Value {
    let addresses: Vec<Value> = o
        .get("endpoints")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|e| e.pointer("/conditions/ready") != Some(&Value::Bool(false)))
        .flat_map(|e| e.get("addresses").and_then(Value::as_array).cloned().unwrap_or_default())
        .collect();
    let ports: Vec<Value> = o
        .get("ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|p| p.get("protocol").and_then(Value::as_str).unwrap_or("TCP") == "TCP")
        .filter_map(|p| p.get("port").cloned())
        .collect();
    json!({"name": o.pointer("/metadata/name"), "addressType": o.get("addressType"), "addresses": addresses, "ports": ports})
}

/// The webhook's host as far as the module knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WebhookHost {
    /// A `url` with an IP address: selectable by an ipBlock.
    Ip(IpAddr),
    /// A `url` with a host name: not selectable by a NetworkPolicy.
    Name(String),
    /// The URL is in the operator's Secret (`urlSecretRef`), unread.
    InSecret,
}

/// Where the alert webhook is: scheme (unknown for `urlSecretRef`), host and
/// port; `None` when alerting is off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookTarget {
    pub scheme: Option<String>,
    pub host: WebhookHost,
    pub port: u16,
}

/// The port of a webhook in the operator's Secret when `port` is not set.
pub const SECRET_WEBHOOK_DEFAULT_PORT: u16 = 443;

/// The target of one webhook. Messages never quote the URL or any part of
/// it (`(value redacted)`): it may carry credentials or a token.
pub fn webhook_target(w: &WebhookEndpoint<'_>) -> Result<WebhookTarget, Violation> {
    let (setting, section) = (w.setting, w.section);
    let bad =
        |message: &str| Violation { path: format!("$.{setting}.url"), message: format!("{message} (value redacted)") };
    let url = w.url.filter(|u| !u.is_empty());
    match (url, w.url_secret_ref) {
        (Some(_), Some(_)) => {
            return Err(Violation {
                path: format!("$.{setting}"),
                message: format!("{setting}.url and {setting}.urlSecretRef are mutually exclusive: set one of them"),
            });
        }
        (None, Some(_)) => {
            return Ok(WebhookTarget {
                scheme: None,
                host: WebhookHost::InSecret,
                port: w.port.filter(|p| *p > 0).unwrap_or(SECRET_WEBHOOK_DEFAULT_PORT),
            });
        }
        (None, None) => {
            return Err(Violation {
                path: format!("$.{section}"),
                message: format!("{setting}.url or {setting}.urlSecretRef is required when {section}.enabled is true"),
            });
        }
        (Some(_), None) => {}
    }
    let url = url.unwrap_or_default();
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("not an http:// or https:// URL"))?;
    let default_port = match scheme {
        "http" => 80,
        "https" => 443,
        _ => return Err(bad("the scheme is not allowed; allowed: http, https")),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(|| bad("unterminated IPv6 address"))?;
        (h, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let port = match port {
        None => default_port,
        Some(p) => {
            p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| bad("the port is not a TCP port (1-65535)"))?
        }
    };
    let host = match host.parse::<IpAddr>() {
        Ok(ip) => WebhookHost::Ip(ip),
        Err(_) => WebhookHost::Name(host.to_string()),
    };
    Ok(WebhookTarget { scheme: Some(scheme.into()), host, port })
}

/// The targets of the webhooks that are on, each with its settings; every
/// webhook's problem is a violation.
pub fn webhook_targets(inputs: &Inputs) -> Result<Vec<(WebhookEndpoint<'_>, WebhookTarget)>, Vec<Violation>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for w in inputs.webhook_endpoints() {
        match webhook_target(&w) {
            Ok(t) => out.push((w, t)),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

/// A webhook's `egress`, each entry checked and written canonically
/// (`192.0.2.7/24` → `192.0.2.0/24`).
pub fn webhook_egress_cidrs(w: &WebhookEndpoint<'_>) -> Result<Vec<String>, Violation> {
    w.egress
        .iter()
        .enumerate()
        .map(|(i, c)| {
            canonical_cidr(c).ok_or_else(|| Violation {
                path: format!("$.{}.egress[{i}]", w.setting),
                message: "is not a CIDR (an IPv4 address with /0-32 or an IPv6 address with /0-128) (value redacted)"
                    .into(),
            })
        })
        .collect()
}

fn canonical_cidr(s: &str) -> Option<String> {
    let (addr, len) = s.split_once('/')?;
    let len: u8 = len.parse().ok()?;
    match addr.parse::<IpAddr>().ok()? {
        IpAddr::V4(a) if len <= 32 => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
            Some(format!("{}/{len}", std::net::Ipv4Addr::from(u32::from(a) & mask)))
        }
        IpAddr::V6(a) if len <= 128 => {
            let mask = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) };
            Some(format!("{}/{len}", std::net::Ipv6Addr::from(u128::from(a) & mask)))
        }
        _ => None,
    }
}

/// What the NetworkPolicy cannot do for the settings and the cluster as they
/// are, for `hook check` and the hook's log.
pub fn warnings(inputs: &Inputs, apiserver_known: bool) -> Vec<String> {
    let mut out = Vec::new();
    if !apiserver_known {
        out.push(
            "the kube-apiserver endpoints are unknown (no ready address in the EndpointSlices of default/kubernetes): \
             the NetworkPolicy allows no egress to the API server, so the controller stays not Ready until they are known"
                .into(),
        );
    }
    let Ok(targets) = webhook_targets(inputs) else { return out };
    for (w, t) in targets {
        let s = w.setting;
        match &t.host {
            WebhookHost::Name(_) if w.egress.is_empty() => out.push(format!(
                "{s}.url names a host, which a NetworkPolicy cannot select: the controller may not reach \
                 the webhook until {s}.egress lists the networks it is in (0.0.0.0/0 for any address)"
            )),
            WebhookHost::InSecret if w.egress.is_empty() => out.push(format!(
                "{s}.urlSecretRef: the module does not read the URL, so the controller may not reach the \
                 webhook until {s}.egress lists the networks it is in (and {s}.port its port, default 443)"
            )),
            _ => {}
        }
    }
    out
}

fn tcp(port: u16) -> Value {
    json!({"protocol": "TCP", "port": port})
}

fn cidr(address: &IpAddr) -> String {
    match address {
        IpAddr::V4(a) => format!("{a}/32"),
        IpAddr::V6(a) => format!("{a}/128"),
    }
}

/// `internal.networkPolicy`: the ingress and egress rules.
pub fn network_policy(inputs: &Inputs, apiserver: &[Endpoint]) -> Result<Value, Violation> {
    let ingress = vec![json!({
        "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "d8-monitoring"}}}],
        "ports": [tcp(9090)],
    })];
    let mut egress = Vec::new();
    for ep in apiserver {
        egress.push(json!({"to": [{"ipBlock": {"cidr": cidr(&ep.address)}}], "ports": [tcp(ep.port)]}));
    }
    egress.push(json!({
        "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
        "ports": [{"protocol": "UDP", "port": 53}, tcp(53)],
    }));
    let targets = webhook_targets(inputs).map_err(|mut e| e.swap_remove(0))?;
    for (w, t) in targets {
        let mut to: Vec<String> = Vec::new();
        if let WebhookHost::Ip(ip) = &t.host {
            to.push(cidr(ip));
        }
        for c in webhook_egress_cidrs(&w)? {
            if !to.contains(&c) {
                to.push(c);
            }
        }
        // Never a rule without `to`: that would be the port to any address.
        if !to.is_empty() {
            let peers: Vec<Value> = to.iter().map(|c| json!({"ipBlock": {"cidr": c}})).collect();
            let rule = json!({"to": peers, "ports": [tcp(t.port)]});
            // Both webhooks at the same place: one rule.
            if !egress.contains(&rule) {
                egress.push(rule);
            }
        }
    }
    Ok(json!({"ingress": ingress, "egress": egress}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alerting(url: &str) -> Inputs {
        Inputs::from_values(&json!({"podReloader": {"alerting": {"enabled": true, "webhook": {"url": url}}}}))
            .expect("inputs")
    }

    fn webhook(webhook: Value) -> Inputs {
        Inputs::from_values(&json!({"podReloader": {"alerting": {"enabled": true, "webhook": webhook}}}))
            .expect("inputs")
    }

    /// The first webhook's target (the alert webhook in these tests).
    fn target(inputs: &Inputs) -> Result<Option<WebhookTarget>, Violation> {
        inputs.webhook_endpoints().first().map(webhook_target).transpose()
    }

    fn webhook_mode(mode: Value) -> Inputs {
        Inputs::from_values(&json!({"podReloader": {"webhookMode": mode}})).expect("inputs")
    }

    #[test]
    fn webhook_mode_gets_its_own_egress_rule_and_messages() {
        let ep = [Endpoint { address: "192.0.2.1".parse().unwrap(), port: 6443 }];
        let np = network_policy(&webhook_mode(json!({"url": "http://192.0.2.50:9000/x"})), &ep).unwrap();
        assert_eq!(np["egress"].as_array().unwrap().len(), 2, "off: apiserver and DNS only: {np}");
        let inputs = webhook_mode(json!({"enabled": true, "url": "http://192.0.2.50:9000/x"}));
        let np = network_policy(&inputs, &ep).unwrap();
        assert_every_rule_has_peers(&np);
        assert_eq!(
            np["egress"][2],
            json!({"to": [{"ipBlock": {"cidr": "192.0.2.50/32"}}], "ports": [{"protocol": "TCP", "port": 9000}]})
        );
        // A host name: closed until egress lists its networks (fails closed), with a warning naming the setting.
        let inputs = webhook_mode(json!({"enabled": true, "url": "https://hooks.example/x"}));
        let np = network_policy(&inputs, &ep).unwrap();
        assert_eq!(np["egress"].as_array().unwrap().len(), 2, "{np}");
        assert!(
            warnings(&inputs, true)[0].starts_with("webhookMode.url names a host"),
            "{:?}",
            warnings(&inputs, true)
        );
        let inputs =
            webhook_mode(json!({"enabled": true, "urlSecretRef": {"name": "s"}, "egress": ["198.51.100.7/24"]}));
        let np = network_policy(&inputs, &ep).unwrap();
        assert_eq!(
            np["egress"][2],
            json!({"to": [{"ipBlock": {"cidr": "198.51.100.0/24"}}], "ports": [{"protocol": "TCP", "port": 443}]})
        );
        // Both webhooks on: one rule each, never merged into a broader one.
        let both = Inputs::from_values(&json!({"podReloader": {
            "alerting": {"enabled": true, "webhook": {"url": "https://192.0.2.10/a"}},
            "webhookMode": {"enabled": true, "url": "http://192.0.2.50:9000/x"}}}))
        .unwrap();
        let np = network_policy(&both, &ep).unwrap();
        assert_eq!(np["egress"].as_array().unwrap().len(), 4, "{np}");
        // Errors name the webhook mode's settings.
        let e = network_policy(&webhook_mode(json!({"enabled": true})), &ep).unwrap_err();
        assert_eq!(e.path, "$.webhookMode");
        assert!(e.message.contains("webhookMode.url or webhookMode.urlSecretRef is required"), "{e}");
        let e = webhook_targets(&webhook_mode(
            json!({"enabled": true, "url": "https://h/", "urlSecretRef": {"name": "s"}}),
        ))
        .unwrap_err();
        assert_eq!(e[0].path, "$.webhookMode");
        let e = network_policy(&webhook_mode(json!({"enabled": true, "url": "gopher://t0k3n@h/"})), &ep).unwrap_err();
        assert_eq!(e.path, "$.webhookMode.url");
        assert!(!e.message.contains("t0k3n"), "{e}");
    }

    #[test]
    fn webhook_ports_and_hosts() {
        let t = target(&alerting("https://hooks.slack.com/services/x")).unwrap().unwrap();
        assert_eq!((t.host, t.port), (WebhookHost::Name("hooks.slack.com".into()), 443));
        let t = target(&alerting("http://192.0.2.10:8080/x?y=1")).unwrap().unwrap();
        assert_eq!((t.host, t.port), (WebhookHost::Ip("192.0.2.10".parse().unwrap()), 8080));
        let t = target(&alerting("http://receiver.monitoring")).unwrap().unwrap();
        assert_eq!(t.port, 80);
        let e = target(&alerting("http://user:pa55@h:99999/?token=s3cr3t")).unwrap_err();
        assert!(!e.message.contains("99999") && !e.message.contains("s3cr3t") && e.message.contains("redacted"), "{e}");
        assert!(target(&alerting("ftp://h/")).is_err());
        let t = target(&webhook(json!({"urlSecretRef": {"name": "s"}, "port": 8443}))).unwrap().unwrap();
        assert_eq!((t.host, t.port), (WebhookHost::InSecret, 8443));
        let e = target(&webhook(json!({"url": "https://h/", "urlSecretRef": {"name": "s"}}))).unwrap_err();
        assert_eq!(e.path, "$.alerting.webhook");
    }

    #[test]
    fn cidrs_are_checked_and_canonical() {
        assert_eq!(canonical_cidr("192.0.2.7/24").as_deref(), Some("192.0.2.0/24"));
        assert_eq!(canonical_cidr("0.0.0.0/0").as_deref(), Some("0.0.0.0/0"));
        assert_eq!(canonical_cidr("2001:db8::1/32").as_deref(), Some("2001:db8::/32"));
        assert_eq!(canonical_cidr("999.0.0.1/8"), None);
        assert_eq!(canonical_cidr("192.0.2.1/33"), None);
        assert_eq!(canonical_cidr("192.0.2.1"), None);
    }

    #[test]
    fn endpoints_from_filter_results_and_objects() {
        let items = vec![
            Item {
                object: None,
                filter_result: Some(json!({"addresses": ["192.0.2.2", "192.0.2.1"], "ports": [6443]})),
            },
            Item {
                object: Some(json!({"metadata": {"name": "k"}, "addressType": "IPv6",
                    "endpoints": [{"addresses": ["2001:db8::1"]}, {"addresses": ["2001:db8::2"], "conditions": {"ready": false}}],
                    "ports": [{"name": "https", "port": 443, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]})),
                filter_result: None,
            },
        ];
        let eps: Vec<Value> = endpoints(&items).iter().map(Endpoint::to_value).collect();
        assert_eq!(
            eps,
            [
                json!({"address": "192.0.2.1", "port": 6443}),
                json!({"address": "192.0.2.2", "port": 6443}),
                json!({"address": "2001:db8::1", "port": 443})
            ]
        );
    }

    /// Every egress rule names its peers: none is "this port to any address".
    fn assert_every_rule_has_peers(np: &Value) {
        for r in np["egress"].as_array().expect("egress") {
            assert!(r["to"].as_array().is_some_and(|t| !t.is_empty()), "rule without peers: {r}");
        }
    }

    #[test]
    fn unknown_endpoints_give_no_apiserver_rule_and_a_warning() {
        let inputs = alerting("http://192.0.2.10:8080/x");
        let np = network_policy(&inputs, &[]).unwrap();
        assert_every_rule_has_peers(&np);
        assert_eq!(np["egress"].as_array().unwrap().len(), 2, "{np}");
        assert_eq!(
            np["egress"][1],
            json!({"to": [{"ipBlock": {"cidr": "192.0.2.10/32"}}], "ports": [{"protocol": "TCP", "port": 8080}]})
        );
        assert!(warnings(&inputs, false)[0].contains("kube-apiserver endpoints are unknown"));
        assert!(warnings(&inputs, true).is_empty());
    }

    #[test]
    fn host_name_webhooks_reach_only_the_listed_networks() {
        let ep = [Endpoint { address: "192.0.2.1".parse().unwrap(), port: 6443 }];
        let inputs = alerting("https://hooks.slack.com/x");
        let np = network_policy(&inputs, &ep).unwrap();
        assert_every_rule_has_peers(&np);
        assert_eq!(np["egress"].as_array().unwrap().len(), 2, "apiserver and DNS only: {np}");
        assert!(warnings(&inputs, true)[0].contains("alerting.webhook.egress"));
        let inputs =
            webhook(json!({"url": "https://hooks.slack.com/x", "egress": ["203.0.113.9/24", "2001:db8::/32"]}));
        let np = network_policy(&inputs, &ep).unwrap();
        assert_eq!(
            np["egress"][2],
            json!({"to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}, {"ipBlock": {"cidr": "2001:db8::/32"}}],
                   "ports": [{"protocol": "TCP", "port": 443}]})
        );
        assert!(warnings(&inputs, true).is_empty());
        let inputs = webhook(json!({"urlSecretRef": {"name": "s"}, "egress": ["0.0.0.0/0"], "port": 8080}));
        let np = network_policy(&inputs, &ep).unwrap();
        assert_eq!(
            np["egress"][2],
            json!({"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"protocol": "TCP", "port": 8080}]})
        );
    }
}
