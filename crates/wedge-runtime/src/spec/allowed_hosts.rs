//! The outbound HTTP allow-list of a module: `scheme://host[:port]` entries, deny by default.

use std::fmt;

/// One allowed destination. The port defaults to the scheme's (80 or 443). A host written
/// `*.example.com` matches any subdomain of `example.com` (not `example.com` itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    scheme: String,
    host: String,
    port: u16,
}

/// A module's allow-list. Empty means no outbound HTTP at all.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AllowedHosts(Vec<AllowedHost>);

impl AllowedHost {
    /// Parses `scheme://host[:port]`. Anything after the authority (a path, a query) is refused
    /// so nobody believes a path restriction is enforced.
    ///
    /// # Errors
    /// A message naming what is wrong with `entry`.
    pub fn parse(entry: &str) -> Result<Self, String> {
        let (scheme, rest) = entry
            .split_once("://")
            .ok_or_else(|| format!("`{entry}` has no scheme; write e.g. `https://{entry}`"))?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return Err(format!("`{entry}`: scheme must be http or https")),
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#', '@']) {
            return Err(format!(
                "`{entry}`: only scheme://host[:port] is allowed, without path or user"
            ));
        }
        let (host, port) =
            split_host_port(authority).ok_or_else(|| format!("`{entry}`: invalid port"))?;
        if host.is_empty() || host == "*" {
            return Err(format!(
                "`{entry}`: a host is required (there is no allow-all)"
            ));
        }
        Ok(AllowedHost {
            scheme,
            host: host.to_ascii_lowercase(),
            port: port.unwrap_or(default_port),
        })
    }

    /// Whether a request to `scheme://host:port` is allowed by this entry.
    pub fn matches(&self, scheme: &str, host: &str, port: u16) -> bool {
        if !self.scheme.eq_ignore_ascii_case(scheme) || self.port != port {
            return false;
        }
        let host = host.to_ascii_lowercase();
        match self.host.strip_prefix("*.") {
            Some(domain) => host
                .strip_suffix(domain)
                .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
            None => self.host == host,
        }
    }
}

/// Splits `host[:port]`, keeping bracketed IPv6 literals whole. `None` if the port is invalid.
fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let port_start = if authority.starts_with('[') {
        authority.find(']').map(|end| end + 1)?
    } else {
        authority.rfind(':').unwrap_or(authority.len())
    };
    let (host, port) = authority.split_at(port_start);
    match port.strip_prefix(':') {
        Some(port) => Some((host, Some(port.parse().ok()?))),
        None if port.is_empty() => Some((host, None)),
        None => None,
    }
}

impl fmt::Display for AllowedHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

impl AllowedHosts {
    /// Parses every entry.
    ///
    /// # Errors
    /// The first entry that does not parse, with the reason.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        entries
            .iter()
            .map(|e| AllowedHost::parse(e.as_ref()))
            .collect::<Result<_, _>>()
            .map(AllowedHosts)
    }

    /// Whether any entry allows `scheme://host:port`.
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        self.0.iter().any(|h| h.matches(scheme, host, port))
    }

    /// The entries as `scheme://host:port` (which parse back to the same list).
    pub fn entries(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }

    /// Whether the list is empty (no outbound HTTP).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_entries_match_scheme_host_and_port() {
        let hosts =
            AllowedHosts::parse(&["https://api.example.com", "http://127.0.0.1:8080"]).unwrap();
        assert!(hosts.allows("https", "api.example.com", 443));
        assert!(hosts.allows("https", "API.example.com", 443));
        assert!(hosts.allows("http", "127.0.0.1", 8080));
        assert!(
            !hosts.allows("http", "api.example.com", 80),
            "scheme differs"
        );
        assert!(
            !hosts.allows("https", "api.example.com", 8443),
            "port differs"
        );
        assert!(!hosts.allows("http", "127.0.0.1", 8081));
        assert!(!hosts.allows("https", "evil.com", 443));
        assert!(!hosts.allows("https", "api.example.com.evil.com", 443));
    }

    #[test]
    fn wildcard_matches_subdomains_only() {
        let hosts = AllowedHosts::parse(&["https://*.example.com"]).unwrap();
        assert!(hosts.allows("https", "a.example.com", 443));
        assert!(hosts.allows("https", "a.b.example.com", 443));
        assert!(!hosts.allows("https", "example.com", 443));
        assert!(!hosts.allows("https", "badexample.com", 443));
    }

    #[test]
    fn ipv6_literals_keep_their_brackets() {
        let hosts = AllowedHosts::parse(&["http://[::1]:9000"]).unwrap();
        assert!(hosts.allows("http", "[::1]", 9000));
    }

    #[test]
    fn bad_entries_are_refused_with_a_reason() {
        for (entry, needle) in [
            ("api.example.com", "no scheme"),
            ("ftp://x.com", "scheme must be"),
            ("https://x.com/path", "without path"),
            ("https://x.com:99999", "invalid port"),
            ("https://*", "no allow-all"),
        ] {
            let err = AllowedHost::parse(entry).unwrap_err();
            assert!(err.contains(needle), "{entry}: {err}");
        }
    }
}
