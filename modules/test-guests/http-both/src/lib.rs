//! Test guest: exports `wedge:edge/module` and `wasi:http/incoming-handler`. Each HTTP request
//! (a fresh instance) adds one to the durable state `hits` and answers the new count; the
//! module's method `hits` (its one long-lived instance) reads the same state. So a test sees
//! both exports served, and the state import working from a handler.

use wedge_sdk::{Config, MethodResponse, Module, state};
use wstd::http::body::Body;
use wstd::http::{Error, Request, Response};

fn hits() -> u64 {
    state::get("hits")
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[wstd::http_server]
async fn main(_request: Request<Body>) -> Result<Response<Body>, Error> {
    let hits = hits() + 1;
    state::set("hits", hits.to_string().as_bytes()).map_err(Error::msg)?;
    Ok(Response::new(format!("{hits}\n").into()))
}

struct Both;

impl Module for Both {
    fn init(_config: Config) -> Result<Self, String> {
        Ok(Both)
    }

    fn on_method(&mut self, name: &str, _payload: &str) -> Result<MethodResponse, String> {
        match name {
            "hits" => Ok(MethodResponse {
                status: 200,
                payload: format!("{{\"hits\":{}}}", hits()),
            }),
            _ => Err(format!("no method `{name}`")),
        }
    }
}

wedge_sdk::export!(Both);
