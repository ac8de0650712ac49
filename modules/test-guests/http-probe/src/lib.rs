//! Test guest of the HTTP trigger. It exports only `wasi:http/incoming-handler` (no
//! `wedge:edge/module`, no wedge imports), and does what the path says:
//! - `/sleep/<ms>`: waits that long (a pollable: no CPU), then answers 200;
//! - `/spin`: loops for ever (the host's timeout or CPU budget must stop it);
//! - `/trap`: panics;
//! - anything else: 200 with the number of body bytes it read.

use wstd::http::body::Body;
use wstd::http::{Error, Request, Response};

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let path = request.uri().path().to_string();
    if let Some(ms) = path.strip_prefix("/sleep/") {
        let ms: u64 = ms.parse().unwrap_or(0);
        wstd::task::sleep(wstd::time::Duration::from_millis(ms)).await;
        return Ok(Response::new(format!("slept {ms} ms\n").into()));
    }
    match path.as_str() {
        "/spin" => spin(),
        "/trap" => panic!("asked to trap"),
        _ => {
            let length = request.into_body().contents().await?.len();
            Ok(Response::new(format!("read {length} bytes\n").into()))
        }
    }
}

/// Never returns, and is not optimised away.
fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}
