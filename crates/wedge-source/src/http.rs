//! Downloads over https (or http to loopback): streamed, capped, redirects bounded and held
//! to the same plain-http rule as the source itself.

use crate::source::{check_http_url, is_loopback_host};
use crate::{FetchErrorKind, FetchOptions, tls};

/// At most this many redirects are followed.
const MAX_REDIRECTS: usize = 10;

/// Downloads `url`, refusing more than `options.max_bytes`.
pub(crate) async fn fetch(url: &str, options: &FetchOptions) -> Result<Vec<u8>, FetchErrorKind> {
    // Checked again: a `Source` may have been built without `Source::parse`.
    let url = check_http_url(url).map_err(|e| crate::error::invalid_source(url, &e))?;
    let client = client(options)?;
    let response = client.get(url).send().await.map_err(request_error)?;
    let status = response.status();
    if !status.is_success() {
        return Err(FetchErrorKind::HttpStatus(status.to_string()));
    }
    let max = options.max_bytes;
    if response.content_length().is_some_and(|len| len > max) {
        return Err(FetchErrorKind::TooLarge { max });
    }
    let capacity = response.content_length().unwrap_or(0).min(max);
    let mut bytes = Vec::with_capacity(usize::try_from(capacity).unwrap_or(0));
    let mut response = response;
    while let Some(chunk) = response.chunk().await.map_err(request_error)? {
        if bytes.len() as u64 + chunk.len() as u64 > max {
            // Dropping the response closes the connection: nothing more is read.
            return Err(FetchErrorKind::TooLarge { max });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

fn client(options: &FetchOptions) -> Result<reqwest::Client, FetchErrorKind> {
    tls::ensure_crypto_provider();
    let roots = tls::root_certificates(&options.extra_root_pem).map_err(FetchErrorKind::Tls)?;
    let roots = roots
        .iter()
        .map(|der| reqwest::Certificate::from_der(der))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| FetchErrorKind::Tls(error_chain(&e)))?;
    reqwest::Client::builder()
        .tls_certs_only(roots)
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            if attempt.previous().len() > MAX_REDIRECTS {
                attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
            } else if !redirect_allowed(attempt.url()) {
                attempt.error("redirected to plain http on a non-loopback host (refused)")
            } else {
                attempt.follow()
            }
        }))
        .connect_timeout(options.timeout)
        .user_agent(concat!("wedge/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| FetchErrorKind::Tls(error_chain(&e)))
}

/// Whether a redirect may go to `url`: https, or plain http to a loopback host (the rule for
/// sources themselves; a redirect must not downgrade an https download).
fn redirect_allowed(url: &url::Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => url.host().is_some_and(|h| is_loopback_host(&h)),
        _ => false,
    }
}

/// A reqwest error as a kind: unreachable (could not connect, TLS handshake included) or a
/// failed transfer. Never shows the URL (the error's location already does; and it may be a
/// redirect target).
pub(crate) fn request_error(e: reqwest::Error) -> FetchErrorKind {
    let e = e.without_url();
    if e.is_connect() {
        FetchErrorKind::Unreachable(root_cause(&e))
    } else {
        FetchErrorKind::Transfer(error_chain(&e))
    }
}

/// The innermost error of the chain, as a short message: "connection refused",
/// "invalid peer certificate: UnknownIssuer", "failed to lookup address information: ...".
pub(crate) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e;
    while let Some(next) = last.source() {
        last = next;
    }
    // io errors that wrap another error (rustls's, say) hide it from `source()`: peel them.
    let mut inner: &(dyn std::error::Error + 'static) = last;
    while let Some(io) = inner.downcast_ref::<std::io::Error>() {
        if io.raw_os_error().is_some() {
            return io.kind().to_string();
        }
        match io.get_ref() {
            Some(wrapped) => inner = wrapped,
            None => break,
        }
    }
    match inner.downcast_ref::<rustls::Error>() {
        Some(tls) => format!("TLS: {tls}"),
        None => last.to_string(),
    }
}

/// Every message of the chain, joined with ": ", repeated messages dropped.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let msg = err.to_string();
        if !parts.iter().any(|p| p.contains(&msg)) {
            parts.push(msg);
        }
        next = err.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_keep_the_plain_http_rule() {
        let allowed = |u: &str| redirect_allowed(&url::Url::parse(u).unwrap());
        assert!(allowed("https://cdn.example.com/x.wasm"));
        assert!(allowed("http://127.0.0.1:8080/x.wasm"));
        assert!(allowed("http://localhost/x.wasm"));
        assert!(!allowed("http://cdn.example.com/x.wasm"));
        assert!(!allowed("ftp://cdn.example.com/x.wasm"));
        assert!(!allowed("file:///etc/passwd"));
    }
}
