//! Outbound `wasi:http` requests, allowed only to the module's `allowed-hosts`.

use std::sync::Arc;

use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::limiter::Denials;
use crate::spec::AllowedHosts;

/// The `wasi:http` hooks of one module: deny by default, then the standard client.
pub(crate) struct OutboundHttp {
    allowed: AllowedHosts,
    /// Where refusals are counted and warned about: a module retrying a denied request must
    /// not fill the log.
    denials: Arc<Denials>,
}

impl OutboundHttp {
    pub(crate) fn new(allowed: AllowedHosts, denials: Arc<Denials>) -> Self {
        OutboundHttp { allowed, denials }
    }

    /// Counts and warns (at the denial rate) that a request to `uri` was denied.
    fn warn_denied(&self, uri: &http::Uri) {
        self.denials.deny("outbound HTTP requests", |module| {
            tracing::warn!(
                module = %module,
                destination = %format_args!(
                    "{}://{}",
                    uri.scheme_str().unwrap_or("?"),
                    uri.authority().map_or("?", |a| a.as_str())
                ),
                "outbound HTTP request denied: destination is not in the module's allowed-hosts"
            )
        });
    }

    /// Whether `uri` is on the allow-list. A URI without scheme or host is denied.
    fn allows(&self, uri: &http::Uri) -> bool {
        let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) else {
            return false;
        };
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        self.allowed.allows(scheme, host, port)
    }
}

/// Most body bytes read from a denied request before giving up on it.
const DENIED_BODY_DRAIN_LIMIT: usize = 1 << 20;

/// Reads and discards the body of a denied request. Clients commonly write the whole body
/// before reading the response; dropping the body at once would make their writes fail first,
/// and they would report a broken stream instead of the denial.
async fn drain(mut body: WasiBody) {
    use http_body_util::BodyExt;
    let mut drained = 0;
    while let Some(Ok(frame)) = body.frame().await {
        drained += frame.data_ref().map_or(0, |d| d.len());
        if drained > DENIED_BODY_DRAIN_LIMIT {
            break;
        }
    }
}

type ResponseFuture = Box<
    dyn Future<
            Output = wasmtime_wasi_http::Result<(
                http::Response<WasiBody>,
                Box<dyn Future<Output = Result<(), Error>> + Send>,
            )>,
        > + Send,
>;

impl WasiHttpHooks for OutboundHttp {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> ResponseFuture {
        drop(fut);
        if !self.allows(request.uri()) {
            self.warn_denied(request.uri());
            return Box::new(async move {
                drain(request.into_body()).await;
                Err(Error::HttpRequestDenied)
            });
        }
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_destinations_pass() {
        let hooks = OutboundHttp::new(
            AllowedHosts::parse(&["http://127.0.0.1:8080"]).unwrap(),
            Arc::new(Denials::new("m", Arc::default())),
        );
        let ok: http::Uri = "http://127.0.0.1:8080/ingest?x=1".parse().unwrap();
        let other_port: http::Uri = "http://127.0.0.1:9090/".parse().unwrap();
        let no_scheme: http::Uri = "/relative".parse().unwrap();
        assert!(hooks.allows(&ok));
        assert!(!hooks.allows(&other_port));
        assert!(!hooks.allows(&no_scheme));
    }
}
