//! Example module: turns JSON posted to it into telemetry.
//!
//! The component exports only `wasi:http/incoming-handler` (no `wedge:edge/module`): the host
//! serves it on the deployment's `http-listen` address, one fresh instance per request, and it
//! uses the `telemetry` import like any module. A `POST` whose body is JSON is sent on the
//! output `events` as it came (content type `application/json`, the request path in the
//! property `path`) and answered 202 once the host accepted it; a body that is not JSON gets
//! 400, another method 405, and a full destination 503 (the client tries again later: nothing
//! was sent anywhere).

use wedge_sdk::{Message, SendError, telemetry};
use wstd::http::body::Body;
use wstd::http::{Error, Method, Request, Response, StatusCode};

/// The output the events go to.
const OUTPUT: &str = "events";

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    if request.method() != Method::POST {
        return Ok(Response::builder()
            .status(StatusCode::METHOD_NOT_ALLOWED)
            .header("allow", "POST")
            .body(Body::from("only POST\n".to_string()))?);
    }
    let path = request.uri().path().to_string();
    let body = request.into_body().bytes_contents().await?;
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&body) {
        return answer(StatusCode::BAD_REQUEST, &format!("the body is not JSON: {e}"));
    }
    let message = Message {
        body: body.to_vec(),
        properties: vec![("path".to_string(), path)],
        content_type: Some("application/json".to_string()),
        content_encoding: Some("utf-8".to_string()),
    };
    match telemetry::send(OUTPUT, &message) {
        Ok(()) => answer(StatusCode::ACCEPTED, "accepted"),
        Err(SendError::Full) => answer(StatusCode::SERVICE_UNAVAILABLE, "full: try again later"),
        Err(SendError::TooLarge(limit)) => answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("larger than a message may be ({limit} bytes)"),
        ),
        Err(e) => answer(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:?}")),
    }
}

/// A plain-text answer.
fn answer(status: StatusCode, text: &str) -> Result<Response<Body>, Error> {
    Ok(Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Body::from(format!("{text}\n")))?)
}
