//! One HTTP POST through `wasi:http`.

use wedge_sdk::Message;
use wstd::http::{Client, Request};

/// POSTs `msg`'s body to `url`. The error describes a transport failure (including the host
/// denying the request, `HttpRequestDenied`) or a non-2xx status.
pub fn post(url: &str, input: &str, msg: Message) -> Result<(), String> {
    let mut request = Request::post(url).header("x-wedge-input", input);
    if let Some(content_type) = &msg.content_type {
        request = request.header("content-type", content_type.as_str());
    }
    // Header values come from the message, so an invalid one is an input error, not a bug.
    let request = request
        .body(msg.body)
        .map_err(|e| format!("invalid request: {e}"))?;
    // The exports are synchronous; `block_on` drives wasi:http's pollables until the response
    // head arrives.
    let status = wstd::runtime::block_on(async {
        let response = Client::new().send(request).await?;
        Ok::<_, wstd::http::Error>(response.status())
    })
    .map_err(|e| format!("{e:#}"))?;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("status {status}"))
    }
}
