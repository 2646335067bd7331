//! A render as kept in `tests/module/golden/`: each dashboard JSON (hundreds
//! of lines, the same in every case) is replaced by its size and hash, so a
//! golden diff shows the manifests.

use sha2::{Digest, Sha256};

/// `render` with the body of every `  definition: |` block replaced by
/// `    # dashboard JSON: N bytes, sha256 <16 hex>`.
pub fn golden_text(render: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut body: Vec<&str> = Vec::new();
    let mut in_def = false;
    let flush = |body: &[&str], out: &mut Vec<String>| {
        let text = format!("{}\n", body.join("\n"));
        let hash: String = Sha256::digest(text.as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect();
        out.push(format!("    # dashboard JSON: {} bytes, sha256 {hash}", text.len()));
    };
    for line in render.split('\n') {
        if in_def {
            if line.starts_with("    ") || line.is_empty() {
                body.push(line);
                continue;
            }
            flush(&body, &mut out);
            body.clear();
            in_def = false;
        }
        out.push(line.to_string());
        if line == "  definition: |" {
            in_def = true;
        }
    }
    if in_def {
        flush(&body, &mut out);
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dashboard_body_becomes_its_size_and_hash() {
        let text = "kind: X\nspec:\n  definition: |\n    {\"a\": 1}\n\n---\nkind: Y";
        let g = golden_text(text);
        let body = "    {\"a\": 1}\n\n";
        let hash: String = Sha256::digest(body.as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            g,
            format!(
                "kind: X\nspec:\n  definition: |\n    # dashboard JSON: {} bytes, sha256 {hash}\n---\nkind: Y",
                body.len()
            )
        );
        assert_eq!(golden_text("a\nb"), "a\nb");
    }
}
