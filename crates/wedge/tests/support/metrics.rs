//! The metrics listener from the outside: plain HTTP/1.1 requests and a parsed `/metrics` scrape.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// How long a request may take to answer.
const TIMEOUT: Duration = Duration::from_secs(30);

/// `[metrics]` on `port`, with an offline grace of `grace_s` seconds.
pub fn metrics_table(port: u16, grace_s: u64) -> String {
    format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\noffline-grace-s = {grace_s}\n\n")
}

/// One HTTP/1.1 request; the status code and the body (the server closes after one answer).
pub fn http(port: u16, method: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"));
    (status, body.to_string())
}

/// A scrape of `/metrics`: each sample (`name{labels}`) and its value, and the families
/// declared (`# TYPE name type`).
pub struct Scrape {
    pub samples: BTreeMap<String, f64>,
    pub families: BTreeMap<String, String>,
    pub text: String,
}

impl Scrape {
    pub fn take(port: u16) -> Scrape {
        let (status, text) = http(port, "GET", "/metrics");
        assert_eq!(status, 200, "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
        let mut samples = BTreeMap::new();
        let mut families = BTreeMap::new();
        for line in text.lines() {
            if let Some(declared) = line.strip_prefix("# TYPE ") {
                let (name, kind) = declared.split_once(' ').unwrap();
                families.insert(name.to_string(), kind.to_string());
            } else if !line.starts_with('#') {
                let (sample, value) = line.rsplit_once(' ').unwrap();
                samples.insert(sample.to_string(), value.parse().unwrap());
            }
        }
        Scrape {
            samples,
            families,
            text,
        }
    }

    /// The value of `sample` (`name` or `name{a="b",...}`, labels as the host orders them).
    pub fn get(&self, sample: &str) -> f64 {
        *self
            .samples
            .get(sample)
            .unwrap_or_else(|| panic!("no sample {sample} in\n{}", self.text))
    }
}
