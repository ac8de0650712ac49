//! Restart policies and the crash loop: a module that traps in `init` is restarted at growing
//! intervals with the host's CPU low, `never` leaves it failed, `on-failure` leaves a module
//! that exited cleanly stopped and restarts one that exited with an error. Each shows in
//! `wedge status` and in the reported state.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::process::cpu_time;
use support::{Host, module, wait_for};
use wedge_test_artifacts::{ECHO, TRAPPER};

const TIMEOUT: Duration = Duration::from_secs(30);

fn restarts(host: &Host, name: &str) -> u64 {
    host.module_status(name)["restarts"].as_u64().unwrap()
}

fn reported_status(host: &Host, name: &str) -> serde_json::Value {
    let twin = host.request(&json!({"op": "twin-get"})).unwrap();
    twin["reported"]["wedge"]["modules"][name]["runtimeStatus"].clone()
}

#[test]
fn a_module_failing_in_init_backs_off_and_never_leaves_it_failed() {
    let host = Host::start(&format!(
        "{}{}",
        module("looping", TRAPPER, "config = { trap-in-init = true }"),
        module(
            "once",
            TRAPPER,
            "config = { trap-in-init = true }\nrestart-policy = \"never\""
        ),
    ));

    // The start times of the looping module's instances: the gaps double.
    let mut starts = Vec::new();
    let mut last = None;
    wait_for("five restarts", TIMEOUT, || {
        let start = host.module_status("looping")["last-start"].clone();
        if last.as_ref() != Some(&start) {
            starts.push(Instant::now());
            last = Some(start);
        }
        (starts.len() >= 6).then_some(())
    });
    let gaps: Vec<Duration> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    for pair in gaps.windows(2) {
        assert!(pair[1] > pair[0], "restart intervals must grow: {gaps:?}");
    }
    assert!(
        gaps.last().unwrap() > &Duration::from_millis(500),
        "{gaps:?}"
    );

    // Waiting out a backoff costs the host next to nothing.
    let pid = host.pid();
    let (cpu, wall) = (cpu_time(pid), Instant::now());
    let seen = restarts(&host, "looping");
    wait_for("the next restart", TIMEOUT, || {
        (restarts(&host, "looping") > seen).then_some(())
    });
    let share = (cpu_time(pid) - cpu).as_secs_f64() / wall.elapsed().as_secs_f64();
    assert!(
        share < 0.2,
        "host CPU {:.0}% while backing off",
        share * 100.0
    );

    let looping = host.module_status("looping");
    assert_eq!(looping["state"], "backoff", "{looping}");
    // The status names the panic (one line); the trap's backtrace went to the log.
    let error = looping["last-error"].as_str().unwrap();
    assert!(
        error.starts_with("panicked at ") && error.ends_with("trapper: trap in init on purpose"),
        "{error}"
    );
    let once = host.module_status("once");
    assert_eq!(
        (once["state"].as_str(), once["restarts"].as_u64()),
        (Some("failed"), Some(0))
    );
    wait_for("the reported runtime status", TIMEOUT, || {
        (reported_status(&host, "looping") == "backoff"
            && reported_status(&host, "once") == "failed")
            .then_some(())
    });
}

#[test]
fn on_failure_restarts_an_error_exit_but_not_a_clean_one() {
    let policy = "restart-policy = \"on-failure\"";
    let host = Host::start(&format!(
        "{}{}{}",
        module("clean", ECHO, policy),
        module("failing", ECHO, policy),
        module("always", ECHO, ""),
    ));
    for name in ["clean", "failing", "always"] {
        wait_for("running", TIMEOUT, || {
            (host.module_status(name)["state"] == "running").then_some(())
        });
    }
    let exit = |name: &str, code: i32| {
        let request = json!({"op": "call", "module": name, "method": "exit",
                             "payload": json!({"code": code}).to_string()});
        host.request(&request).unwrap()
    };
    exit("clean", 0);
    exit("failing", 3);
    exit("always", 0);

    wait_for("the error exit restarted", TIMEOUT, || {
        let m = host.module_status("failing");
        (m["state"] == "running" && m["restarts"] == 1).then_some(())
    });
    let failing = host.module_status("failing");
    // `wasi:cli/exit` carries success or failure only: any non-zero code is status 1.
    let error = failing["last-error"].as_str().unwrap();
    assert!(error.contains("exited with status 1"), "{failing}");
    wait_for("`always` restarted after a clean exit", TIMEOUT, || {
        let m = host.module_status("always");
        (m["state"] == "running" && m["restarts"] == 1).then_some(())
    });
    // Both restarts happened, so the clean one had the time to restart too; it did not.
    let clean = host.module_status("clean");
    assert_eq!(
        (clean["state"].as_str(), clean["restarts"].as_u64()),
        (Some("stopped"), Some(0))
    );
    assert!(
        clean["last-error"].is_null(),
        "a clean exit is no error: {clean}"
    );
    wait_for("the reported runtime status", TIMEOUT, || {
        (reported_status(&host, "clean") == "stopped").then_some(())
    });
}
