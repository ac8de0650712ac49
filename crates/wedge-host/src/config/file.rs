//! Reading `wedge.toml`. Every error names the file, the line and column, and the field.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use wedge_core::TopicTemplate;
use wedge_core::doc::NAME_RULE;
use wedge_runtime::spec::{check_listens, is_valid_module_name};
use wedge_store::{OutboxLimits, WhenFull};

use dps::FileDps;
pub(crate) use dps::check_registration_id;
use metrics::FileMetrics;
use module::{FileModule, module_spec};
use routes::FileRoute;

use super::{
    DEFAULT_MQTT_TELEMETRY_TOPIC, Deployment, HubIdentity, MqttSpec, SecretSource, SourcesSpec,
    UpstreamSpec, default_outbox_limits,
};

/// A deployment file that cannot be used. The message says where and what.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DeploymentError(String);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDeployment {
    upstream: Option<Spanned<FileUpstream>>,
    #[serde(default)]
    modules: BTreeMap<String, Spanned<FileModule>>,
    #[serde(default)]
    routes: BTreeMap<String, Spanned<FileRoute>>,
    outbox: Option<Spanned<FileOutbox>>,
    sources: Option<Spanned<FileSources>>,
    metrics: Option<Spanned<FileMetrics>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileSources {
    registry_auth_file: Option<PathBuf>,
    registry_auth_env: Option<String>,
    max_mb: Option<Spanned<u64>>,
    timeout_s: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileOutbox {
    max_kb: Option<Spanned<u64>>,
    ttl_s: Option<Spanned<u64>>,
    when_full: Option<FileWhenFull>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
enum FileWhenFull {
    Reject,
    DropOldest,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "kebab-case")]
enum FileUpstream {
    Local {},
    #[serde(rename_all = "kebab-case")]
    Iothub {
        connection_string: Option<String>,
        connection_string_env: Option<String>,
        connection_string_file: Option<PathBuf>,
        ca_file: Option<PathBuf>,
        cert_file: Option<PathBuf>,
        key_file: Option<PathBuf>,
        port: Option<u16>,
        dps: Option<FileDps>,
    },
    #[serde(rename_all = "kebab-case")]
    Mqtt {
        host: String,
        port: Option<u16>,
        tls: Option<bool>,
        ca_file: Option<PathBuf>,
        device: String,
        client_id: Option<String>,
        username: Option<String>,
        password: Option<String>,
        password_env: Option<String>,
        password_file: Option<PathBuf>,
        telemetry_topic: Option<String>,
        config_topic: Option<String>,
        reported_topic: Option<String>,
    },
}

impl Deployment {
    /// Reads and validates the deployment file at `path`. Module paths are relative to the
    /// file's directory.
    ///
    /// # Errors
    /// The first problem found, as `file:line:column: field: what is wrong`.
    pub fn load(path: &Path) -> Result<Deployment, DeploymentError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| DeploymentError(format!("{}: cannot read: {e}", path.display())))?;
        Self::parse(path, &text)
    }

    /// Parses and validates deployment text that came from `path`.
    ///
    /// # Errors
    /// As [`Deployment::load`].
    pub fn parse(path: &Path, text: &str) -> Result<Deployment, DeploymentError> {
        let at = Locator { path, text };
        let file: FileDeployment = toml::from_str(text)
            .map_err(|e| at.error(e.span().unwrap_or(0..0), "", e.message().trim_end()))?;
        // Absolute: module paths become sources of the deployment document, which must not
        // depend on the directory wedge runs in.
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
        let base = &std::path::absolute(dir.unwrap_or(Path::new(".")))
            .map_err(|e| DeploymentError(format!("{}: {e}", path.display())))?;

        let upstream = match file.upstream {
            None => UpstreamSpec::Local,
            Some(upstream) => upstream_spec(&at, base, upstream)?,
        };

        let mut modules = BTreeMap::new();
        let mut spans = BTreeMap::new();
        for (name, module) in file.modules {
            let field = format!("modules.{name}");
            if !is_valid_module_name(&name) {
                return Err(at.error(module.span(), &field, NAME_RULE));
            }
            spans.insert(name.clone(), module.span());
            let spec = module_spec(&at, base, &field, module.into_inner())?;
            modules.insert(name, spec);
        }
        // Across modules: the error names the module and field; the position is its table.
        if let Err(e) = check_listens(modules.iter().map(|(n, m)| (n.as_str(), &m.spec))) {
            let span = spans.get(&e.module).cloned().unwrap_or_default();
            return Err(at.error(span, "", &e.to_string()));
        }

        let routes = routes::parse(&at, file.routes, &modules)?;

        Ok(Deployment {
            source: path.to_path_buf(),
            upstream,
            modules,
            routes,
            outbox: outbox_limits(&at, file.outbox)?,
            sources: sources_spec(&at, base, file.sources)?,
            metrics: metrics::parse(&at, file.metrics)?,
        })
    }
}

fn outbox_limits(
    at: &Locator<'_>,
    outbox: Option<Spanned<FileOutbox>>,
) -> Result<OutboxLimits, DeploymentError> {
    let mut limits = default_outbox_limits();
    let Some(outbox) = outbox else {
        return Ok(limits);
    };
    let outbox = outbox.into_inner();
    let positive = |value: Spanned<u64>, field: &str| match *value.get_ref() {
        0 => Err(at.error(value.span(), field, "must be greater than 0")),
        n => Ok(n),
    };
    if let Some(max_kb) = outbox.max_kb {
        limits.max_bytes = positive(max_kb, "outbox.max-kb")?.saturating_mul(1 << 10);
    }
    if let Some(ttl_s) = outbox.ttl_s {
        limits.ttl = Some(std::time::Duration::from_secs(positive(
            ttl_s,
            "outbox.ttl-s",
        )?));
    }
    if let Some(when_full) = outbox.when_full {
        limits.when_full = match when_full {
            FileWhenFull::Reject => WhenFull::Reject,
            FileWhenFull::DropOldest => WhenFull::DropOldest,
        };
    }
    Ok(limits)
}

fn sources_spec(
    at: &Locator<'_>,
    base: &Path,
    sources: Option<Spanned<FileSources>>,
) -> Result<SourcesSpec, DeploymentError> {
    let mut spec = SourcesSpec::default();
    let Some(sources) = sources else {
        return Ok(spec);
    };
    let span = sources.span();
    let sources = sources.into_inner();
    let positive = |value: Spanned<u64>, field: &str| match *value.get_ref() {
        0 => Err(at.error(value.span(), field, "must be greater than 0")),
        n => Ok(n),
    };
    if let Some(max_mb) = sources.max_mb {
        spec.max_bytes = positive(max_mb, "sources.max-mb")?.saturating_mul(1 << 20);
    }
    if let Some(timeout_s) = sources.timeout_s {
        spec.timeout = std::time::Duration::from_secs(positive(timeout_s, "sources.timeout-s")?);
    }
    spec.registry_auth = match (sources.registry_auth_file, sources.registry_auth_env) {
        (Some(_), Some(_)) => {
            return Err(at.error(
                span,
                "sources",
                "give only one of `registry-auth-file`, `registry-auth-env`",
            ));
        }
        (Some(file), None) => Some(SecretSource::File(base.join(file))),
        (None, Some(var)) => Some(SecretSource::Env(var)),
        (None, None) => None,
    };
    Ok(spec)
}

fn upstream_spec(
    at: &Locator<'_>,
    base: &Path,
    upstream: Spanned<FileUpstream>,
) -> Result<UpstreamSpec, DeploymentError> {
    let span = upstream.span();
    match upstream.into_inner() {
        FileUpstream::Local {} => Ok(UpstreamSpec::Local),
        FileUpstream::Iothub {
            connection_string,
            connection_string_env,
            connection_string_file,
            ca_file,
            cert_file,
            key_file,
            port,
            dps,
        } => {
            if let Some(dps) = dps {
                let given = connection_string.is_some()
                    || connection_string_env.is_some()
                    || connection_string_file.is_some();
                let certificate = cert_file.is_some() || key_file.is_some();
                let dps = dps::parse(at, base, span, dps, given, certificate)?;
                return Ok(UpstreamSpec::IotHub {
                    identity: HubIdentity::Dps(dps),
                    ca_file: ca_file.map(|f| base.join(f)),
                    cert_file: None,
                    key_file: None,
                    port,
                });
            }
            let source = secret_source(
                base,
                "connection-string",
                connection_string,
                connection_string_env,
                connection_string_file,
            );
            let Some(connection_string) =
                source.map_err(|e| at.error(span.clone(), "upstream", &e))?
            else {
                return Err(at.error(
                    span,
                    "upstream",
                    "give one of `connection-string`, `connection-string-env`, `connection-string-file`, or an `[upstream.dps]` section",
                ));
            };
            let error = |field: &str, message: &str| at.error(span.clone(), field, message);
            match (&cert_file, &key_file) {
                (Some(_), None) => {
                    return Err(error(
                        "upstream.cert-file",
                        "needs `key-file`, the certificate's private key",
                    ));
                }
                (None, Some(_)) => {
                    return Err(error(
                        "upstream.key-file",
                        "needs `cert-file`, the device certificate",
                    ));
                }
                _ => {}
            }
            // An inline connection string can be checked now; one from the environment or a
            // file is checked when the host starts.
            if let SecretSource::Inline(text) = &connection_string {
                match (says_x509(text), cert_file.is_some()) {
                    (true, false) => {
                        return Err(error(
                            "upstream.connection-string",
                            "`x509=true` authenticates with a device certificate: set `cert-file` and `key-file`",
                        ));
                    }
                    (false, true) => {
                        return Err(error(
                            "upstream.cert-file",
                            "a device certificate needs a connection string with `x509=true` (and no `SharedAccessKey`)",
                        ));
                    }
                    _ => {}
                }
            }
            Ok(UpstreamSpec::IotHub {
                identity: HubIdentity::ConnectionString(connection_string),
                ca_file: ca_file.map(|f| base.join(f)),
                cert_file: cert_file.map(|f| base.join(f)),
                key_file: key_file.map(|f| base.join(f)),
                port,
            })
        }
        FileUpstream::Mqtt {
            host,
            port,
            tls,
            ca_file,
            device,
            client_id,
            username,
            password,
            password_env,
            password_file,
            telemetry_topic,
            config_topic,
            reported_topic,
        } => {
            let error = |field: &str, message: &str| at.error(span.clone(), field, message);
            let password = secret_source(base, "password", password, password_env, password_file)
                .map_err(|e| error("upstream", &e))?;
            if password.is_some() && username.is_none() {
                return Err(error("upstream.password", "a password needs a `username`"));
            }
            if device.is_empty() || device.contains(['/', '+', '#', '\0']) {
                return Err(error(
                    "upstream.device",
                    "must be non-empty without `/`, `+`, `#` (it is one topic level)",
                ));
            }
            let telemetry_topic = TopicTemplate::telemetry(
                telemetry_topic
                    .as_deref()
                    .unwrap_or(DEFAULT_MQTT_TELEMETRY_TOPIC),
            )
            .map_err(|e| error("upstream.telemetry-topic", &e.to_string()))?;
            let device_topic = |topic: Option<String>, field: &str| {
                topic
                    .map(|t| TopicTemplate::device(&t))
                    .transpose()
                    .map_err(|e| error(field, &e.to_string()))
            };
            Ok(UpstreamSpec::Mqtt(MqttSpec {
                host,
                port,
                tls: tls.unwrap_or(true),
                ca_file: ca_file.map(|f| base.join(f)),
                device,
                client_id,
                username,
                password,
                telemetry_topic,
                config_topic: device_topic(config_topic, "upstream.config-topic")?,
                reported_topic: device_topic(reported_topic, "upstream.reported-topic")?,
            }))
        }
    }
}

/// Whether an IoT Hub connection string has `x509=true` (the full parser lives with the
/// upstream; this only decides which fields the deployment needs).
fn says_x509(connection_string: &str) -> bool {
    connection_string.split(';').any(|segment| {
        segment.split_once('=').is_some_and(|(key, value)| {
            key.trim() == "x509" && value.trim().eq_ignore_ascii_case("true")
        })
    })
}

/// A secret given at most one way: inline, `<name>-env` or `<name>-file`.
fn secret_source(
    base: &Path,
    name: &str,
    inline: Option<String>,
    env: Option<String>,
    file: Option<PathBuf>,
) -> Result<Option<SecretSource>, String> {
    let sources = [
        inline.map(SecretSource::Inline),
        env.map(SecretSource::Env),
        file.map(|f| SecretSource::File(base.join(f))),
    ];
    let mut given = sources.into_iter().flatten();
    match (given.next(), given.next()) {
        (source, None) => Ok(source),
        _ => Err(format!(
            "give only one of `{name}`, `{name}-env`, `{name}-file`"
        )),
    }
}

/// Turns byte spans into `file:line:column` prefixes.
pub(super) struct Locator<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Locator<'_> {
    pub(super) fn error(&self, span: Range<usize>, field: &str, message: &str) -> DeploymentError {
        let before = &self.text[..span.start.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        let field = if field.is_empty() {
            String::new()
        } else {
            format!("{field}: ")
        };
        DeploymentError(format!(
            "{}:{line}:{column}: {field}{message}",
            self.path.display()
        ))
    }
}

mod dps;
mod metrics;
mod module;
mod routes;
#[cfg(test)]
mod tests;
