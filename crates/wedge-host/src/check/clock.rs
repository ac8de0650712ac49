//! The local clock is sane: within the validity window of the certificate the hub presents.
//! A device without a battery-backed clock that boots in 1970 (or one whose clock ran ahead)
//! fails every TLS handshake and signs SAS tokens that are already expired or not yet valid;
//! the hub's certificate is the one outside reference the check has at hand without NTP.

use std::time::SystemTime;

use super::Check;
use super::certificate::{CertInfo, Validity, rfc3339, unix};

/// The clock line against `server`, the certificate `role`'s endpoint presented.
pub(super) fn check(role: &str, server: &CertInfo, now: SystemTime) -> Check {
    let name = format!("clock ({role} certificate)");
    let clock = rfc3339(unix(now));
    match server.validity_at(now) {
        Validity::Valid { .. } => Check::ok(
            name,
            format!(
                "the local clock ({clock}) is within the {role} certificate's validity ({})",
                server.window()
            ),
        ),
        outside => Check::error(
            name,
            format!(
                "the local clock ({clock}) is {} the {role} certificate's validity ({})",
                if outside == Validity::NotYet {
                    "before"
                } else {
                    "after"
                },
                server.window()
            ),
            "set the clock / enable NTP (`timedatectl set-ntp true`); if the clock is right, the server's certificate is out of date",
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::check::Level;

    #[test]
    fn a_clock_outside_the_window_is_an_error_that_says_to_set_it() {
        let day = 24 * 3600;
        let server = CertInfo {
            subject: "CN=hub".into(),
            issuer: "CN=ca".into(),
            names: vec!["hub".into()],
            not_before: 1_700_000_000,
            not_after: 1_700_000_000 + 365 * day,
        };
        let at = |unix: i64| UNIX_EPOCH + Duration::from_secs(unix as u64);
        assert_eq!(
            check("upstream", &server, at(1_700_000_000 + day)).level,
            Level::Ok
        );
        // A board that booted without a clock.
        let booted = check("upstream", &server, UNIX_EPOCH);
        assert_eq!(booted.level, Level::Error);
        assert!(booted.found.contains("is before"), "{booted}");
        assert!(booted.remedy.unwrap().contains("enable NTP"));
        let ahead = check("upstream", &server, at(1_700_000_000 + 400 * day));
        assert!(ahead.found.contains("is after"), "{ahead}");
    }
}
