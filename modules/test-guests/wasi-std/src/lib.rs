//! Test guest: a module that keeps its state in `wasi:keyvalue` and reads its configuration
//! from `wasi:config`, as a component written for another host would, instead of wedge's
//! `state` and `twin` imports. Every tick it increments `ticks` (`atomics.increment`) and sends
//! `{"ticks": n, "threshold": …, "unit": …}` on `out`, the last two from `wasi:config` keys
//! `threshold` and `units.temperature`. Methods: `config` (every key, `get-all`), `batch`
//! (set-many, get-many, delete-many, exists, list-keys on a few keys), `open-other` (opening a
//! bucket that is not there), `big` (`{"bytes": n}`: a value of n bytes, to hit the quota).

wit_bindgen::generate!({
    inline: "
        package wedge-test:wasi-std;

        world guest {
            import wasi:keyvalue/store@0.2.0-draft;
            import wasi:keyvalue/atomics@0.2.0-draft;
            import wasi:keyvalue/batch@0.2.0-draft;
            import wasi:config/store@0.2.0-rc.1;
            import wedge:edge/telemetry@0.1.0;
            export wedge:edge/module@0.1.0;
        }
    ",
    path: "../../../wit",
    generate_all,
});

use exports::wedge::edge::module::{Guest, MethodResponse};
use serde_json::{Value, json};
use wasi::config::store as config;
use wasi::keyvalue::{atomics, batch, store};
use wedge::edge::telemetry;
use wedge::edge::types::Message;

struct WasiStd;

fn bucket() -> Result<store::Bucket, String> {
    store::open("default").map_err(|e| format!("open: {e:?}"))
}

fn config_value(key: &str) -> Value {
    match config::get(key) {
        Ok(Some(v)) => Value::String(v),
        Ok(None) => Value::Null,
        Err(e) => json!({"error": format!("{e:?}")}),
    }
}

fn text(bytes: Option<Vec<u8>>) -> Value {
    bytes.map_or(Value::Null, |b| Value::String(String::from_utf8_lossy(&b).into()))
}

fn batch_round() -> Result<Value, String> {
    let bucket = bucket()?;
    let err = |e: store::Error| format!("{e:?}");
    batch::set_many(
        &bucket,
        &[("a".into(), b"1".to_vec()), ("b".into(), b"2".to_vec())],
    )
    .map_err(err)?;
    let many = batch::get_many(&bucket, &["a".into(), "b".into(), "zz".into()]).map_err(err)?;
    let many: Vec<Value> = many
        .into_iter()
        .map(|kv| kv.map_or(Value::Null, |(k, v)| json!([k, text(Some(v))])))
        .collect();
    batch::delete_many(&bucket, &["a".into()]).map_err(err)?;
    let keys = bucket.list_keys(None).map_err(err)?;
    Ok(json!({
        "get-many": many,
        "a-exists": bucket.exists("a").map_err(err)?,
        "b-exists": bucket.exists("b").map_err(err)?,
        "b": text(bucket.get("b").map_err(err)?),
        "keys": keys.keys,
        "cursor": keys.cursor,
    }))
}

impl Guest for WasiStd {
    fn init(_config: String) -> Result<(), String> {
        bucket().map(drop)
    }

    fn on_config(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn on_message(_input: String, _msg: Message) -> Result<(), String> {
        Ok(())
    }

    fn on_tick() -> Result<(), String> {
        let ticks = atomics::increment(&bucket()?, "ticks", 1).map_err(|e| format!("{e:?}"))?;
        let body = json!({
            "ticks": ticks,
            "threshold": config_value("threshold"),
            "unit": config_value("units.temperature"),
        });
        let msg = Message {
            body: body.to_string().into_bytes(),
            properties: vec![],
            content_type: Some("application/json".into()),
            content_encoding: None,
        };
        telemetry::send("out", &msg).map_err(|e| format!("send: {e:?}"))
    }

    fn on_method(name: String, payload: String) -> Result<MethodResponse, String> {
        let answer = match name.as_str() {
            "config" => {
                let all = config::get_all().map_err(|e| format!("{e:?}"))?;
                Value::Object(all.into_iter().map(|(k, v)| (k, Value::String(v))).collect())
            }
            "batch" => batch_round()?,
            "open-other" => match store::open("other") {
                Ok(_) => json!({"opened": true}),
                Err(e) => json!({"error": format!("{e:?}")}),
            },
            "big" => {
                let request: Value = serde_json::from_str(&payload).map_err(|e| e.to_string())?;
                let bytes = request["bytes"].as_u64().unwrap_or(0) as usize;
                match bucket()?.set("big", &vec![b'x'; bytes]) {
                    Ok(()) => json!({"stored": bytes}),
                    Err(e) => json!({"error": format!("{e:?}")}),
                }
            }
            _ => return Ok(MethodResponse { status: 404, payload: "{}".into() }),
        };
        Ok(MethodResponse {
            status: 200,
            payload: answer.to_string(),
        })
    }
}

export!(WasiStd);
