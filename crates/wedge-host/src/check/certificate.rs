//! What the checks need to know of an X.509 certificate (the device's, or the one a server
//! presents): who it is for, who issued it, and when it is valid. Parsed with `x509-parser`.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use x509_parser::extensions::GeneralName;

/// A certificate's names and validity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CertInfo {
    /// The subject, `CN=dev1`.
    pub subject: String,
    /// The issuer, `CN=…`.
    pub issuer: String,
    /// The DNS names and IP addresses it is for (its subject alternative names; the common
    /// name when it has none).
    pub names: Vec<String>,
    /// Not valid before this (Unix seconds).
    pub not_before: i64,
    /// Not valid after this (Unix seconds).
    pub not_after: i64,
}

impl CertInfo {
    /// Parses a DER certificate.
    ///
    /// # Errors
    /// It is not an X.509 certificate; the message says where parsing stopped.
    pub fn parse(der: &[u8]) -> Result<Self, String> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| format!("not an X.509 certificate: {e}"))?;
        let mut names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(dns) => names.push(dns.to_string()),
                    GeneralName::IPAddress(bytes) => {
                        if let Some(ip) = ip_address(bytes) {
                            names.push(ip.to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
        if names.is_empty() {
            names.extend(
                cert.subject()
                    .iter_common_name()
                    .filter_map(|cn| cn.as_str().ok())
                    .map(str::to_owned),
            );
        }
        Ok(CertInfo {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            names,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
        })
    }

    /// Where `now` lies against the validity.
    pub fn validity_at(&self, now: SystemTime) -> Validity {
        let now = unix(now);
        if now < self.not_before {
            Validity::NotYet
        } else if now > self.not_after {
            Validity::Expired
        } else {
            Validity::Valid {
                left: Duration::from_secs(u64::try_from(self.not_after - now).unwrap_or(0)),
            }
        }
    }

    /// `valid from … to …`, in UTC.
    pub fn window(&self) -> String {
        format!(
            "valid from {} to {}",
            rfc3339(self.not_before),
            rfc3339(self.not_after)
        )
    }
}

/// See [`CertInfo::validity_at`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Validity {
    /// Before `not_before`.
    NotYet,
    /// Within the window, `left` before `not_after`.
    Valid {
        /// Until it expires.
        left: Duration,
    },
    /// After `not_after`.
    Expired,
}

fn ip_address(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// `time` in Unix seconds (negative before 1970, as a dead RTC may say).
pub(super) fn unix(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// Unix seconds as `2026-12-01T15:40:00Z`.
pub(super) fn rfc3339(seconds: i64) -> String {
    match u64::try_from(seconds) {
        Ok(after) => {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(after)).to_string()
        }
        // humantime has no years before 1970; no certificate in use starts that early.
        Err(_) => format!("{seconds} s before 1970"),
    }
}

/// `duration` in whole days (rounded down), hours when less than a day.
pub(super) fn days(duration: Duration) -> String {
    let hours = duration.as_secs() / 3600;
    match hours / 24 {
        0 => format!("{hours} hours"),
        1 => "1 day".into(),
        n => format!("{n} days"),
    }
}
