//! The `[metrics]` table: where `/metrics`, `/healthz` and `/readyz` are served, if anywhere.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::Locator;
use crate::config::{DEFAULT_OFFLINE_GRACE, DeploymentError, MetricsSpec};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct FileMetrics {
    listen: Spanned<String>,
    offline_grace_s: Option<Spanned<u64>>,
}

/// The listener, if the table is there. The address is an IP address and port: a host name
/// would make what the host binds depend on name resolution at start.
pub(super) fn parse(
    at: &Locator<'_>,
    metrics: Option<Spanned<FileMetrics>>,
) -> Result<Option<MetricsSpec>, DeploymentError> {
    let Some(metrics) = metrics else {
        return Ok(None);
    };
    let metrics = metrics.into_inner();
    let listen = metrics.listen.get_ref().parse::<SocketAddr>().map_err(|_| {
        at.error(
            metrics.listen.span(),
            "metrics.listen",
            &format!(
                "`{}` is not an address to listen on: give an IP address and a port, e.g. \"127.0.0.1:9600\" or \"[::1]:9600\"",
                metrics.listen.get_ref()
            ),
        )
    })?;
    let offline_grace = match metrics.offline_grace_s {
        Some(grace) => Duration::from_secs(*grace.get_ref()),
        None => DEFAULT_OFFLINE_GRACE,
    };
    Ok(Some(MetricsSpec {
        listen,
        offline_grace,
    }))
}
