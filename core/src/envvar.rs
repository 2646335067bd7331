//! Reloader's env var naming for the `env-vars` strategy.

use crate::keys::ResourceKind;

/// `STAKATER_<SANITIZED NAME>_<CONFIGMAP|SECRET|SECRETPROVIDERCLASS>`,
/// byte-identical to Reloader.
///
/// Sanitising upper-cases, keeps `[A-Z0-9]`, and turns each run of other
/// bytes into one `_`, but only when a valid byte came before it (so `my-cm`
/// gives `MY_CM`, `-x` gives `X`, and `my.cm` collides with `my-cm`, as in
/// Reloader).
pub fn env_var_name(kind: ResourceKind, resource_name: &str) -> String {
    let mut out = String::with_capacity(resource_name.len() + 20);
    out.push_str("STAKATER_");
    let mut last_valid = false;
    for b in resource_name.bytes() {
        let c = b.to_ascii_uppercase();
        if c.is_ascii_uppercase() || c.is_ascii_digit() {
            out.push(c as char);
            last_valid = true;
        } else {
            if last_valid {
                out.push('_');
            }
            last_valid = false;
        }
    }
    out.push('_');
    out.push_str(kind.reloader_type());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_like_reloader() {
        assert_eq!(env_var_name(ResourceKind::ConfigMap, "my-cm"), "STAKATER_MY_CM_CONFIGMAP");
        assert_eq!(env_var_name(ResourceKind::Secret, "db.creds"), "STAKATER_DB_CREDS_SECRET");
        assert_eq!(env_var_name(ResourceKind::ConfigMap, "a--b"), "STAKATER_A_B_CONFIGMAP");
        assert_eq!(env_var_name(ResourceKind::ConfigMap, "-lead"), "STAKATER_LEAD_CONFIGMAP");
        assert_eq!(env_var_name(ResourceKind::ConfigMap, "trail-"), "STAKATER_TRAIL__CONFIGMAP");
        assert_eq!(
            env_var_name(ResourceKind::SecretProviderClass, "vault-db"),
            "STAKATER_VAULT_DB_SECRETPROVIDERCLASS"
        );
    }
}
