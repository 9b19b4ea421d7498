//! Outbound HTTP policy: which destinations an object may reach, and how much it may take.
//!
//! Checks happen after DNS resolution, on every address the name resolves to, and the
//! connection then goes to one of the checked addresses (never to a fresh lookup), so a name
//! that resolves to a private address (or is re-bound to one) cannot be used to reach the
//! host's own network (server-side request forgery).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::FetchFailure;

/// Settings for outbound fetch, shared by the `fetch` interface and `wasi:http`.
#[derive(Clone, Debug)]
pub struct FetchPolicy {
    /// Whether objects may fetch at all.
    pub enabled: bool,
    /// `host` or `host:port` entries; `*.example.com` matches subdomains. Empty: any public
    /// host. An exact (non-wildcard) entry may name a private host, such as a sidecar on
    /// 127.0.0.1; anything else resolving to a private address needs `allow_private`.
    pub allow: Vec<String>,
    /// Allow loopback, private, link-local and other non-public addresses.
    pub allow_private: bool,
    /// Whole-request timeout (connect, send, response and body).
    pub timeout: Duration,
    /// Largest response body, in bytes.
    pub max_response_bytes: usize,
    /// Fetches one object may have in flight at once.
    pub max_concurrent: usize,
}

impl Default for FetchPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            allow: Vec::new(),
            allow_private: false,
            timeout: Duration::from_secs(30),
            max_response_bytes: 16 * 1024 * 1024,
            max_concurrent: 6,
        }
    }
}

impl FetchPolicy {
    /// Whether `host:port` passes the allow-list (before DNS).
    pub fn host_allowed(&self, host: &str, port: u16) -> bool {
        self.allow.is_empty() || self.matching_rule(host, port).is_some()
    }

    /// Whether an allow-list entry names `host` exactly (no wildcard): an explicit decision to
    /// reach it, so its addresses are not checked for being private. Any such entry counts,
    /// whatever the order of the list.
    fn explicitly_allowed(&self, host: &str, port: u16) -> bool {
        self.matching_rules(host, port)
            .any(|rule| !rule.starts_with("*."))
    }

    fn matching_rule(&self, host: &str, port: u16) -> Option<&str> {
        self.matching_rules(host, port).next()
    }

    fn matching_rules<'a>(&'a self, host: &str, port: u16) -> impl Iterator<Item = &'a str> {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        self.allow.iter().map(String::as_str).filter(move |rule| {
            let Some((rule_host, rule_port)) = split_entry(rule) else {
                // A port that is not a port (`api.x:https`): the entry matches nothing, rather
                // than every port.
                return false;
            };
            let host_ok = match rule_host.strip_prefix("*.") {
                Some(suffix) => host.ends_with(&format!(".{suffix}")),
                None => host == rule_host,
            };
            host_ok && rule_port.is_none_or(|p| p == port)
        })
    }

    /// Resolves `host:port` and returns the addresses the policy allows connecting to.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, FetchFailure> {
        if !self.enabled {
            return Err(FetchFailure::NotEnabled);
        }
        if !self.host_allowed(host, port) {
            return Err(FetchFailure::Denied(format!(
                "{host}:{port} is not in the fetch allow-list"
            )));
        }
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((bare, port))
                .await
                .map_err(|e| FetchFailure::Dns(format!("{host}: {e}")))?
                .collect(),
        };
        if addrs.is_empty() {
            return Err(FetchFailure::Dns(format!("{host} has no addresses")));
        }
        if !self.allow_private
            && !self.explicitly_allowed(host, port)
            && let Some(bad) = addrs.iter().find(|a| !is_public(a.ip()))
        {
            return Err(FetchFailure::Denied(format!(
                "{host} resolves to {}, a loopback, private or link-local address; \
                 start dohost with --fetch-allow-private to allow it",
                bad.ip()
            )));
        }
        Ok(addrs)
    }
}

/// An allow-list entry as (lower-case host without brackets, port if one is given); `None`
/// if its port part is not a port number.
fn split_entry(rule: &str) -> Option<(String, Option<u16>)> {
    let rule = rule.to_ascii_lowercase();
    let (host, port) = match rule.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.ends_with(']') => (
            h.to_string(),
            Some(p.parse::<u16>().ok().filter(|&p| p != 0)?),
        ),
        _ => (rule.clone(), None),
    };
    Some((
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port,
    ))
}

/// Checks one `--fetch-allow` entry: `host`, `host:port`, `*.domain`, `[v6]:port`. A typo
/// here would otherwise pass silently (and an exact entry trusts what its host resolves to).
pub fn check_allow_entry(entry: &str) -> Result<String, String> {
    let (host, _) = split_entry(entry).ok_or_else(|| {
        format!("{entry:?}: the part after the last ':' must be a port number (1-65535)")
    })?;
    let name = host.strip_prefix("*.").unwrap_or(&host);
    if name.is_empty()
        || name.contains(['*', '/', '@', '?', '#', ' '])
        || name.starts_with('.')
        || name.ends_with('.')
    {
        return Err(format!(
            "{entry:?} is not a host name, IP address or *.domain (examples: api.example.com, \
             api.example.com:8443, *.example.com, 10.0.0.5:9000)"
        ));
    }
    Ok(entry.to_string())
}

/// Whether an address is publicly routable (not loopback, private, link-local, shared,
/// documentation, multicast, unspecified or reserved).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1])) // shared address space (CGNAT)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
                || (o[0] == 192 && o[1] == 88 && o[2] == 99) // 6to4 relay anycast
                || (o[0] == 198 && (o[1] == 18 || o[1] == 19)) // benchmarking
                || o[0] >= 240) // reserved
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            if s[0] == 0x2002 {
                // 6to4: the IPv4 address it tunnels to is in the next 32 bits.
                let [a, b] = s[1].to_be_bytes();
                let [c, d] = s[2].to_be_bytes();
                return is_public(IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d)));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || s[..6].iter().all(|&x| x == 0) // IPv4-compatible (deprecated), ::, ::1
                || (s[0] == 0x2001 && s[1] == 0) // Teredo (tunnels to any IPv4 address)
                || (s[0] & 0xffc0) == 0xfec0 // site local (deprecated)
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link local
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x64 && s[1] == 0xff9b)) // NAT64 (could reach private IPv4)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ranges_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "224.0.0.1",
            "::7f00:1",
            "::127.0.0.1",
            "2002:7f00:1::1",
            "2002:a00:1::",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "fec0::1",
            "192.88.99.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700::1111",
            "2002:101:101::1",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn allow_list() {
        let policy = FetchPolicy {
            allow: vec![
                "api.example.com".into(),
                "*.svc.test:8443".into(),
                "127.0.0.1:9000".into(),
            ],
            ..FetchPolicy::default()
        };
        assert!(policy.host_allowed("api.example.com", 443));
        assert!(policy.host_allowed("API.example.com", 80));
        assert!(!policy.host_allowed("example.com", 443));
        assert!(policy.host_allowed("a.svc.test", 8443));
        assert!(!policy.host_allowed("a.svc.test", 443));
        assert!(!policy.host_allowed("svc.test", 8443));
        assert!(policy.host_allowed("127.0.0.1", 9000));
        assert!(!policy.host_allowed("127.0.0.1", 9001));
        assert!(FetchPolicy::default().host_allowed("anything", 1));
        assert!(policy.explicitly_allowed("127.0.0.1", 9000));
        assert!(
            !policy.explicitly_allowed("a.svc.test", 8443),
            "wildcards are not explicit"
        );
        let both = FetchPolicy {
            allow: vec!["*.corp.internal".into(), "db.corp.internal".into()],
            ..FetchPolicy::default()
        };
        assert!(
            both.explicitly_allowed("db.corp.internal", 443),
            "an exact entry after a wildcard still counts"
        );
        assert!(!both.explicitly_allowed("web.corp.internal", 443));
        // A port that is not one matches nothing (not every port).
        let typo = FetchPolicy {
            allow: vec!["db.internal:https".into(), "api.x:99999".into()],
            ..FetchPolicy::default()
        };
        assert!(!typo.host_allowed("db.internal", 443));
        assert!(!typo.host_allowed("api.x", 443));
    }

    #[test]
    fn allow_entries_are_checked() {
        for good in [
            "api.example.com",
            "api.example.com:8443",
            "*.example.com",
            "10.0.0.5:9000",
            "[::1]:8080",
            "::1",
        ] {
            assert!(check_allow_entry(good).is_ok(), "{good}");
        }
        for bad in [
            "db.internal:https",
            "api.x:99999",
            "api.x:0",
            "",
            "*",
            "a.*.example.com",
            "https://api.example.com",
            "user@api.example.com",
            ".example.com",
        ] {
            assert!(check_allow_entry(bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn loopback_is_denied_unless_allowed() {
        let policy = FetchPolicy::default();
        assert!(matches!(
            policy.resolve("127.0.0.1", 80).await,
            Err(FetchFailure::Denied(_))
        ));
        assert!(matches!(
            policy.resolve("localhost", 80).await,
            Err(FetchFailure::Denied(_))
        ));
        let open = FetchPolicy {
            allow_private: true,
            ..FetchPolicy::default()
        };
        assert!(open.resolve("127.0.0.1", 80).await.is_ok());
        let off = FetchPolicy {
            enabled: false,
            ..FetchPolicy::default()
        };
        assert!(matches!(
            off.resolve("127.0.0.1", 80).await,
            Err(FetchFailure::NotEnabled)
        ));
    }
}
