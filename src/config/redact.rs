//! Redaction of secrets in anything the proxy shows about its configuration (`/config`, the
//! startup log line): structural, so fields added later are covered without listing them.

use serde_json::Value;

/// What a secret is replaced with.
pub const REDACTED: &str = "<redacted>";

/// Whether a config key names a secret (`password`, `backend_password`, `client_secret`...).
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "token",
        "passphrase",
        "private_key_pem",
    ]
    .iter()
    .any(|word| key.contains(word))
}

/// Replaces the password in a URL's user info: `redis://user:pw@host` -> `redis://user:<redacted>@host`.
/// Text without user info is returned as is.
pub fn redact_url(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_string();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return text.to_string();
    };
    let user = userinfo.split_once(':').map_or("", |(user, _)| user);
    format!("{scheme}://{user}:{REDACTED}@{host}")
}

/// Blanks every secret in a serialized config: values of secret-named keys, and passwords in
/// URLs anywhere.
pub fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                if is_secret_key(key) {
                    if !matches!(value, Value::Null) && value.as_str() != Some("") {
                        *value = Value::String(REDACTED.into());
                    }
                } else {
                    redact(value);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        Value::String(text) if text.contains("://") && text.contains('@') => {
            *text = redact_url(text);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_blanked_wherever_they_are() {
        let mut value = serde_json::json!({
            "listen": "127.0.0.1:6379",
            "cluster": {"seeds": ["redis://user:hunter2@10.0.0.1:7000", "redis://:pw@h:1/0", "h:2"]},
            "auth": {"password": "hunter2", "users": [{"name": "app", "passwords": ["a", "b"]}]},
            "backend": {"password": "", "tls": {"key_passphrase": "x"}},
        });
        redact(&mut value);
        let text = value.to_string();
        for secret in ["hunter2", "\"a\"", "\"b\"", "\"x\"", ":pw@"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert_eq!(
            value["cluster"]["seeds"][0],
            "redis://user:<redacted>@10.0.0.1:7000"
        );
        assert_eq!(value["cluster"]["seeds"][2], "h:2");
        assert_eq!(
            value["backend"]["password"], "",
            "an unset password stays visibly unset"
        );
        assert_eq!(value["listen"], "127.0.0.1:6379");
    }
}
