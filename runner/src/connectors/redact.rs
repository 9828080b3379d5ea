//! Scrubbing the secret values of a Connection from any text a message could carry: what a
//! server answered, what an HTTP client reported.

/// The text with every non-empty secret replaced by `***`.
pub fn redact(secrets: &[String], text: impl std::fmt::Display) -> String {
    let mut text = text.to_string();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        text = text.replace(secret.as_str(), "***");
    }
    text
}

/// The pieces of a PEM key worth scrubbing on their own: the whole key, and each line of its
/// body (a message may quote one line, or the key with its newlines escaped).
pub fn pem_pieces(pem: &str) -> Vec<String> {
    let pem = pem.replace("\\n", "\n");
    let mut pieces = vec![pem.clone()];
    pieces.extend(
        pem.lines()
            .map(str::trim)
            .filter(|l| l.len() >= 16 && !l.starts_with("-----"))
            .map(str::to_string),
    );
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_secret_and_key_line_is_scrubbed() {
        assert_eq!(
            redact(&["hunter2".into(), String::new()], "pw hunter2!"),
            "pw ***!"
        );
        let pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nshort\n-----END PRIVATE KEY-----\n";
        let pieces = pem_pieces(pem);
        assert_eq!(
            redact(&pieces, "bad line: MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"),
            "bad line: ***"
        );
    }
}
