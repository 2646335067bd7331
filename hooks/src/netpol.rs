//! The controller's NetworkPolicy rules. Default deny, then:
//!
//! - ingress: only the metrics/health port 9090, from Prometheus
//!   (`d8-monitoring`); kubelet probes come from the node and are not subject
//!   to it;
//! - egress: the kube-apiserver endpoints (the `kubernetes` EndpointSlices in
//!   `default`; without them any address on 443/6443), DNS in `kube-system`,
//!   and the alert webhook's host and port when alerting is on (an IP address
//!   as an ipBlock; a host name cannot be selected by a NetworkPolicy, so its
//!   port is allowed to any address).

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde_json::{Value, json};

use crate::protocol::Item;
use crate::schema::Violation;
use crate::settings::Inputs;

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

/// Where the alert webhook is: host and port; `None` when alerting is off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookTarget {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

pub fn webhook_target(inputs: &Inputs) -> Result<Option<WebhookTarget>, Violation> {
    if !inputs.alerting_enabled() {
        return Ok(None);
    }
    let bad = |message: String| Violation { path: "$.alerting.webhook.url".into(), message };
    let Some(url) = inputs.settings.alerting.webhook.url.as_deref().filter(|u| !u.is_empty()) else {
        return Err(Violation {
            path: "$.alerting".into(),
            message: "alerting.webhook.url is required when alerting.enabled is true".into(),
        });
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("not an http:// or https:// URL".into()))?;
    let default_port = match scheme {
        "http" => 80,
        "https" => 443,
        _ => return Err(bad(format!("scheme {scheme:?} is not allowed; allowed: http, https"))),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(|| bad("unterminated IPv6 address".into()))?;
        (h, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(bad("no host".into()));
    }
    let port = match port {
        None => default_port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| bad(format!("port {p:?} is not a TCP port (1-65535)")))?,
    };
    Ok(Some(WebhookTarget { scheme: scheme.into(), host: host.into(), port }))
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
    if apiserver.is_empty() {
        egress.push(json!({"ports": [tcp(443), tcp(6443)]}));
    }
    for ep in apiserver {
        egress.push(json!({"to": [{"ipBlock": {"cidr": cidr(&ep.address)}}], "ports": [tcp(ep.port)]}));
    }
    egress.push(json!({
        "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
        "ports": [{"protocol": "UDP", "port": 53}, tcp(53)],
    }));
    if let Some(t) = webhook_target(inputs)? {
        match t.host.parse::<IpAddr>() {
            Ok(ip) => egress.push(json!({"to": [{"ipBlock": {"cidr": cidr(&ip)}}], "ports": [tcp(t.port)]})),
            Err(_) => egress.push(json!({"ports": [tcp(t.port)]})),
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

    #[test]
    fn webhook_ports_and_hosts() {
        let t = webhook_target(&alerting("https://hooks.slack.com/services/x")).unwrap().unwrap();
        assert_eq!((t.host.as_str(), t.port), ("hooks.slack.com", 443));
        let t = webhook_target(&alerting("http://192.0.2.10:8080/x?y=1")).unwrap().unwrap();
        assert_eq!((t.host.as_str(), t.port), ("192.0.2.10", 8080));
        let t = webhook_target(&alerting("http://receiver.monitoring")).unwrap().unwrap();
        assert_eq!(t.port, 80);
        assert!(webhook_target(&alerting("http://h:99999/")).is_err());
        assert!(webhook_target(&alerting("ftp://h/")).is_err());
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

    #[test]
    fn rules_without_endpoints_allow_443_and_6443() {
        let np = network_policy(&alerting("http://192.0.2.10:8080/x"), &[]).unwrap();
        assert_eq!(
            np["egress"][0],
            json!({"ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}]})
        );
        assert_eq!(
            np["egress"][2],
            json!({"to": [{"ipBlock": {"cidr": "192.0.2.10/32"}}], "ports": [{"protocol": "TCP", "port": 8080}]})
        );
    }
}
