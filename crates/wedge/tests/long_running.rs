//! Long-running modules (`wedge:edge/service`): `run` loops in an instance of its own while the
//! event-driven exports keep answering; the imports work from it; a new configuration restarts
//! it; a trap or an error fails the module with backoff, a clean return stops it; and its CPU
//! is a rate (a spinning loop is slowed to it, not stopped), measured on the host process.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::process::cpu_time;
use support::{Host, module, wait_for};
use wedge_test_artifacts::{ECHO, RUNNER};

const TIMEOUT: Duration = Duration::from_secs(30);

/// The runner's telemetry records (`events`), as (body, tag).
fn events(host: &Host) -> Vec<(String, String)> {
    host.telemetry()
        .iter()
        .filter(|r| r["output"] == "events")
        .map(|r| {
            let tag = r["properties"]["tag"].as_str().unwrap_or_default();
            (r["body"].as_str().unwrap().to_string(), tag.to_string())
        })
        .collect()
}

fn count(events: &[(String, String)], body: &str, tag: &str) -> usize {
    events.iter().filter(|(b, t)| b == body && t == tag).count()
}

#[test]
fn run_loops_beside_the_event_driven_exports_and_a_new_config_restarts_it() {
    let host = Host::start(&format!(
        "{}
[routes]
events = {{ from = \"runner/events\", to = \"$upstream\" }}
",
        module("runner", RUNNER, "config = { tag = \"a\", beats = 5 }"),
    ));

    // `run` sends (telemetry), keeps its count in state, logs, and sleeps between beats.
    wait_for("started and five beats", TIMEOUT, || {
        let events = events(&host);
        (count(&events, "started", "a") == 1 && count(&events, "beat", "a") == 5).then_some(())
    });
    assert!(
        host.log().contains("run 1 started with tag `a`"),
        "{}",
        host.log()
    );
    // Meanwhile the main instance answers, reading the state `run` wrote.
    assert_eq!(
        host.call("runner", "ping", &json!({})),
        json!({"pong": true, "runs": 1})
    );

    // A configuration on-config accepts: a new `run`, with it, in a new instance.
    host.request(&json!({"op": "twin-set", "module": "runner", "patch": {"tag": "b"}}))
        .unwrap();
    wait_for("started and five beats with tag b", TIMEOUT, || {
        let events = events(&host);
        (count(&events, "started", "b") == 1 && count(&events, "beat", "b") == 5).then_some(())
    });
    let events = events(&host);
    assert_eq!(count(&events, "started", "a"), 1, "{events:?}");
    assert_eq!(
        host.call("runner", "ping", &json!({})),
        json!({"pong": true, "runs": 2})
    );
    // A new loop, not a failure: the module was not restarted.
    let status = host.module_status("runner");
    assert_eq!(
        (status["state"].as_str(), status["restarts"].as_u64()),
        (Some("running"), Some(0)),
        "{status}"
    );

    // A configuration on-config refuses leaves `run` as it is.
    let refused =
        host.request(&json!({"op": "twin-set", "module": "runner", "patch": {"mode": "nonsense"}}));
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(count(&self::events(&host), "started", "b"), 1);
}

#[test]
fn a_run_that_traps_or_fails_restarts_with_backoff_and_a_clean_return_stops() {
    let host = Host::start(&format!(
        "{}{}{}
[routes]
trap = {{ from = \"trap/events\", to = \"$upstream\" }}
fail = {{ from = \"fail/events\", to = \"$upstream\" }}
exit = {{ from = \"exit/events\", to = \"$upstream\" }}
",
        module("trap", RUNNER, "config = { mode = \"trap\" }"),
        module("fail", RUNNER, "config = { mode = \"fail\" }"),
        module(
            "exit",
            RUNNER,
            "config = { mode = \"exit\" }\nrestart-policy = \"on-failure\""
        ),
    ));
    for (name, error) in [
        ("trap", "run panicked on purpose"),
        ("fail", "`run` returned an error: run gave up on purpose"),
    ] {
        let status = wait_for(&format!("{name} to restart twice"), TIMEOUT, || {
            let status = host.module_status(name);
            (status["restarts"].as_u64() >= Some(2)).then_some(status)
        });
        let last = status["last-error"].as_str().unwrap_or_default();
        assert!(last.contains(error), "{status}");
    }
    let exit = wait_for("exit to stop", TIMEOUT, || {
        let status = host.module_status("exit");
        (status["state"] == "stopped").then_some(status)
    });
    assert_eq!(exit["restarts"], 0, "{exit}");
    assert!(exit["last-error"].is_null(), "{exit}");
}

#[test]
fn a_spinning_run_gets_its_cpu_rate_while_the_others_keep_answering() {
    let host = Host::start(&format!(
        "{}{}",
        module(
            "spinner",
            RUNNER,
            "config = { mode = \"spin\" }\ncpu-ms-per-second = 200\ncpu-ms-per-call = 100"
        ),
        module("echo", ECHO, ""),
    ));
    wait_for("spinner running", TIMEOUT, || {
        host.log().contains("`run` started").then_some(())
    });

    // Over a few seconds: the host's CPU stays near the spinner's rate (20 % of one core,
    // where the unthrottled loop would take 100 %). A measurement window, nothing to wait for.
    let pid = host.pid();
    let (cpu, wall) = (cpu_time(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(3));
    let share = (cpu_time(pid) - cpu).as_secs_f64() / wall.elapsed().as_secs_f64();
    eprintln!("host CPU {:.1}% of a core", share * 100.0);
    assert!(
        (0.05..0.35).contains(&share),
        "host CPU {:.0}% of one core with a loop limited to 20 %",
        share * 100.0
    );
    // Meanwhile both modules answer methods at once: the spinner's own main instance too.
    for _ in 0..20 {
        for (module, answer) in [
            ("echo", json!({"pong": {}})),
            ("spinner", json!({"pong": true, "runs": 0})),
        ] {
            let asked = Instant::now();
            assert_eq!(host.call(module, "ping", &json!({})), answer);
            let took = asked.elapsed();
            assert!(took < Duration::from_millis(500), "{module} took {took:?}");
        }
    }
    // Slowed, never stopped: a rate, not the per-call limit.
    let status: Value = host.module_status("spinner");
    assert_eq!(
        (status["state"].as_str(), status["restarts"].as_u64()),
        (Some("running"), Some(0)),
        "{status}"
    );
}
