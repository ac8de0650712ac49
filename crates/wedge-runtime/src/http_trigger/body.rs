//! The request body, read by the host before the guest is called: at most `http-body-kb`
//! bytes. A `Content-Length` over the limit is refused before a byte of the body is read; a
//! chunked body is counted as it arrives and refused at the first byte over. Either way the
//! guest never sees a request it would get cut short: it is not called at all.

use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::Request;
use hyper::body::{Bytes, Incoming};
use hyper::header::CONTENT_LENGTH;
use hyper::http::request::Parts;

/// Why a body was not read.
#[derive(Debug)]
pub(super) enum BodyError {
    /// It is larger than the limit.
    TooLarge,
    /// The client broke off or sent a malformed body.
    Read(String),
}

/// The request's head and its whole body, if that is at most `limit` bytes.
pub(super) async fn collect(
    request: Request<Incoming>,
    limit: usize,
) -> Result<(Parts, Bytes), BodyError> {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    let (parts, body) = request.into_parts();
    let body = Limited::new(body, limit).collect().await.map_err(|e| {
        match e.downcast_ref::<LengthLimitError>() {
            Some(_) => BodyError::TooLarge,
            None => BodyError::Read(e.to_string()),
        }
    })?;
    Ok((parts, body.to_bytes()))
}
