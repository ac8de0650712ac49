//! [`RegistryAuth`]: credentials for OCI registries, read from a Docker-style `config.json`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use base64::Engine as _;
use serde_json::Value;

use crate::SourceError;

/// Credentials for OCI registries: registry (`host[:port]`) to username and password.
/// A registry with no entry is pulled from anonymously.
///
/// `Debug` shows only the registries' names, never a username or password.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RegistryAuth {
    entries: BTreeMap<String, Credentials>,
}

#[derive(Clone, PartialEq, Eq)]
struct Credentials {
    username: String,
    password: String,
}

impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("registries", &self.entries.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl RegistryAuth {
    /// No credentials: every registry is pulled from anonymously.
    pub fn anonymous() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the credentials for `registry` (`host[:port]`).
    pub fn with(
        mut self,
        registry: &str,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.entries.insert(
            normalize_registry(registry),
            Credentials {
                username: username.into(),
                password: password.into(),
            },
        );
        self
    }

    /// The registries that have credentials.
    pub fn registries(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Reads a Docker-style `config.json`:
    /// `{"auths": {"registry:5000": {"auth": "<base64 of user:password>"}}}`, or with
    /// `"username"` and `"password"` keys instead of `"auth"`. Keys may also be written as URLs
    /// (`https://registry:5000/v1/`). Entries with neither (for instance ones that a Docker
    /// credential helper serves) are skipped; `credsStore` and `credHelpers` are ignored.
    /// Errors name the file and the problem, never the secret.
    pub fn from_docker_config_file(path: &Path) -> Result<Self, SourceError> {
        let problem = |problem: String| SourceError::CredentialsFile {
            path: path.to_path_buf(),
            problem,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| problem(format!("cannot read: {}", crate::io_message(&e))))?;
        Self::from_docker_config_json(&text).map_err(problem)
    }

    /// The same JSON document as [`RegistryAuth::from_docker_config_file`], held in the
    /// environment variable `var`.
    pub fn from_env(var: &str) -> Result<Self, SourceError> {
        let problem = |problem: String| SourceError::CredentialsEnv {
            var: var.to_string(),
            problem,
        };
        let text = match std::env::var(var) {
            Ok(text) => text,
            Err(std::env::VarError::NotPresent) => return Err(problem("not set".into())),
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(problem("not valid UTF-8".into()));
            }
        };
        Self::from_docker_config_json(&text).map_err(problem)
    }

    /// Parses the document; the error is the problem only. Messages are written here rather
    /// than taken from serde, whose type errors quote the offending value (maybe a secret).
    fn from_docker_config_json(text: &str) -> Result<Self, String> {
        // serde_json's syntax errors give only a category and a position.
        let doc: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
        let Value::Object(doc) = doc else {
            return Err("not a Docker config: expected a JSON object".into());
        };
        let mut auth = Self::anonymous();
        let auths = match doc.get("auths") {
            None => return Ok(auth),
            Some(Value::Object(auths)) => auths,
            Some(_) => return Err("\"auths\" is not an object".into()),
        };
        for (key, entry) in auths {
            let registry = normalize_registry(key);
            let Value::Object(entry) = entry else {
                return Err(format!("registry {key:?}: the entry is not an object"));
            };
            let string = |name: &str| match entry.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.is_empty() => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.as_str())),
                Some(_) => Err(format!("registry {key:?}: {name:?} is not a string")),
            };
            let credentials = match (string("auth")?, string("username")?, string("password")?) {
                (Some(encoded), _, _) => decode_auth(encoded).ok_or_else(|| {
                    format!("registry {key:?}: \"auth\" is not base64 of user:password")
                })?,
                (None, Some(username), Some(password)) => Credentials {
                    username: username.to_string(),
                    password: password.to_string(),
                },
                (None, Some(_), None) | (None, None, Some(_)) => {
                    return Err(format!(
                        "registry {key:?}: give both \"username\" and \"password\", or \"auth\""
                    ));
                }
                (None, None, None) => {
                    tracing::debug!(registry = %registry, "docker config entry without credentials skipped");
                    continue;
                }
            };
            auth.entries.insert(registry, credentials);
        }
        Ok(auth)
    }

    /// The username and password for `registry` (`host[:port]`), if any.
    pub(crate) fn get(&self, registry: &str) -> Option<(&str, &str)> {
        self.entries
            .get(&normalize_registry(registry))
            .map(|c| (c.username.as_str(), c.password.as_str()))
    }
}

/// base64("user:password") to credentials; None when it is not that.
fn decode_auth(encoded: &str) -> Option<Credentials> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(encoded.trim()))
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (username, password) = text.split_once(':')?;
    (!username.is_empty()).then(|| Credentials {
        username: username.to_string(),
        password: password.to_string(),
    })
}

/// "https://Registry:5000/v1/" -> "registry:5000".
fn normalize_registry(key: &str) -> String {
    let key = key.trim();
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    key.split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn auth_and_username_password_entries() {
        let doc = format!(
            r#"{{"auths": {{
                "127.0.0.1:5000": {{"auth": "{}"}},
                "https://Registry.Example.com/v1/": {{"username": "bob", "password": "p:w"}},
                "helper.example.com": {{}}
            }}, "credsStore": "desktop"}}"#,
            b64("alice:s3cr:et")
        );
        let auth = RegistryAuth::from_docker_config_json(&doc).unwrap();
        assert_eq!(auth.get("127.0.0.1:5000"), Some(("alice", "s3cr:et")));
        assert_eq!(auth.get("registry.example.com"), Some(("bob", "p:w")));
        assert_eq!(auth.get("helper.example.com"), None);
        assert_eq!(auth.get("other:5000"), None);
        let registries: Vec<_> = auth.registries().collect();
        assert_eq!(registries, ["127.0.0.1:5000", "registry.example.com"]);
    }

    #[test]
    fn debug_shows_registries_only() {
        let auth = RegistryAuth::anonymous().with("r:5000", "alice", "hunter2");
        let debug = format!("{auth:?}");
        assert!(debug.contains("r:5000"), "{debug}");
        assert!(
            !debug.contains("alice") && !debug.contains("hunter2"),
            "{debug}"
        );
    }

    #[test]
    fn empty_documents_are_anonymous() {
        assert_eq!(
            RegistryAuth::from_docker_config_json("{}").unwrap(),
            RegistryAuth::anonymous()
        );
        assert_eq!(
            RegistryAuth::from_docker_config_json(r#"{"auths": {}}"#).unwrap(),
            RegistryAuth::anonymous()
        );
    }

    #[test]
    fn malformed_documents_refused_without_secrets() {
        let secret = "hunter2-secret";
        let cases = [
            (
                format!("{{\"auths\": {{\"r\": {{\"auth\": \"{secret}\"}}}}}}"),
                "not base64",
            ),
            (
                format!(
                    "{{\"auths\": {{\"r\": {{\"auth\": \"{}\"}}}}}}",
                    b64(secret)
                ),
                "not base64 of user:password",
            ),
            (
                format!("{{\"auths\": {{\"r\": \"{secret}\"}}}}"),
                "not an object",
            ),
            (
                format!("{{\"auths\": \"{secret}\"}}"),
                "\"auths\" is not an object",
            ),
            (
                r#"{"auths": {"r": {"username": "u"}}}"#.to_string(),
                "give both",
            ),
            (
                format!("{{\"auths\": {{\"r\": {{\"password\": [\"{secret}\"]}}}}}}"),
                "\"password\" is not a string",
            ),
            (
                format!("{{\"auths\": {{\"r\": {{\"auth\": \"{secret}"),
                "not valid JSON",
            ),
            (format!("[\"{secret}\"]"), "expected a JSON object"),
        ];
        for (doc, expected) in cases {
            let err = RegistryAuth::from_docker_config_json(&doc).unwrap_err();
            assert!(err.contains(expected), "{doc}: {err}");
            assert!(!err.contains(secret), "{doc}: {err}");
        }
    }

    #[test]
    fn file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.json");
        let err = RegistryAuth::from_docker_config_file(&missing)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(&missing.display().to_string()), "{err}");
        assert!(
            err.contains("cannot read: No such file or directory"),
            "{err}"
        );

        let path = dir.path().join("config.json");
        std::fs::write(&path, r#"{"auths": {"r": {"auth": "!!"}}}"#).unwrap();
        let err = RegistryAuth::from_docker_config_file(&path)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "{}: registry \"r\": \"auth\" is not base64 of user:password",
                path.display()
            )
        );

        let doc = format!(r#"{{"auths": {{"r:1": {{"auth": "{}"}}}}}}"#, b64("u:p"));
        std::fs::write(&path, doc).unwrap();
        let auth = RegistryAuth::from_docker_config_file(&path).unwrap();
        assert_eq!(auth.get("r:1"), Some(("u", "p")));
    }

    #[test]
    fn env_variable() {
        let var = "WEDGE_SOURCE_TEST_REGISTRY_AUTH_UNSET";
        let err = RegistryAuth::from_env(var).unwrap_err().to_string();
        assert_eq!(err, format!("environment variable {var}: not set"));
        // PATH is set and is not JSON.
        let err = RegistryAuth::from_env("PATH").unwrap_err().to_string();
        assert!(
            err.starts_with("environment variable PATH: not valid JSON"),
            "{err}"
        );
    }

    /// Setting a variable in this process needs `unsafe` (edition 2024), so the test runs
    /// itself again as a child with the variable set.
    #[test]
    fn env_variable_with_document() {
        const VAR: &str = "WEDGE_SOURCE_TEST_REGISTRY_AUTH";
        if std::env::var_os(VAR).is_some() {
            let auth = RegistryAuth::from_env(VAR).unwrap();
            assert_eq!(auth.get("r:5000"), Some(("u", "p")));
            return;
        }
        let doc = format!(r#"{{"auths": {{"r:5000": {{"auth": "{}"}}}}}}"#, b64("u:p"));
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "auth::tests::env_variable_with_document"])
            .env(VAR, doc)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}");
        assert!(stdout.contains("1 passed"), "{stdout}");
    }
}
