//! The client's address: the socket peer, or — only when the peer is a trusted proxy — the
//! address that proxy reports in `Forwarded` (RFC 7239) or `X-Forwarded-For`.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use http::HeaderMap;
use ipnet::IpNet;
use thiserror::Error;

/// A trusted-proxy entry that is neither an IP address nor a CIDR network.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error(
    "invalid trusted proxy {0:?}: expected an IP address (10.0.0.1, ::1) or a CIDR network (10.0.0.0/8)"
)]
pub struct InvalidProxy(pub String);

/// The reverse proxies whose forwarding headers are believed.
///
/// Empty by default: then the socket peer is the client, and `Forwarded` / `X-Forwarded-For`
/// are ignored (anyone can send them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// No trusted proxy: the socket peer is always the client.
    pub fn none() -> Self {
        Self::default()
    }

    /// Parses entries such as `127.0.0.1`, `::1`, `10.0.0.0/8` or `fd00::/8`.
    pub fn parse<I, S>(entries: I) -> Result<Self, InvalidProxy>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        entries
            .into_iter()
            .map(|e| {
                let e = e.as_ref().trim();
                IpNet::from_str(e)
                    .or_else(|_| IpAddr::from_str(e).map(IpNet::from))
                    .map_err(|_| InvalidProxy(e.to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }

    /// Whether there is no trusted proxy.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` is one of the trusted proxies.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address for a request that arrived from `peer` with `headers`.
    ///
    /// When `peer` is trusted, the forwarding chain (`Forwarded`, else `X-Forwarded-For`) is
    /// walked from the right, skipping trusted proxies; the first untrusted address is the
    /// client. A malformed chain is ignored and the peer is used.
    pub fn client_ip(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = peer.map(|p| p.to_canonical());
        match peer {
            Some(p) if self.contains(p) => self.forwarded_client(headers).or(Some(p)),
            other => other,
        }
    }

    fn forwarded_client(&self, headers: &HeaderMap) -> Option<IpAddr> {
        let chain = forwarded_chain(headers).or_else(|| x_forwarded_for_chain(headers))?;
        let mut leftmost = None;
        for ip in chain.iter().rev() {
            if !self.contains(*ip) {
                return Some(*ip);
            }
            leftmost = Some(*ip);
        }
        leftmost
    }
}

/// Parses one forwarded address: `1.2.3.4`, `1.2.3.4:80`, `::1`, `[::1]`, `[::1]:80`.
fn parse_node(s: &str) -> Option<IpAddr> {
    let s = s.trim().trim_matches('"');
    if let Ok(ip) = IpAddr::from_str(s) {
        return Some(ip.to_canonical());
    }
    if let Ok(sa) = SocketAddr::from_str(s) {
        return Some(sa.ip().to_canonical());
    }
    let inner = s.strip_prefix('[')?.strip_suffix(']')?;
    IpAddr::from_str(inner).ok().map(|ip| ip.to_canonical())
}

/// Every address of every `X-Forwarded-For` header, left to right; `None` when absent or
/// malformed.
fn x_forwarded_for_chain(headers: &HeaderMap) -> Option<Vec<IpAddr>> {
    let mut chain = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        for part in value.to_str().ok()?.split(',') {
            chain.push(parse_node(part)?);
        }
    }
    (!chain.is_empty()).then_some(chain)
}

/// The `for=` addresses of every `Forwarded` header, left to right; `None` when absent or when
/// some element has no usable address (`unknown`, an obfuscated identifier).
fn forwarded_chain(headers: &HeaderMap) -> Option<Vec<IpAddr>> {
    let mut chain = Vec::new();
    for value in headers.get_all(http::header::FORWARDED) {
        for element in value.to_str().ok()?.split(',') {
            let node = element.split(';').find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                k.trim().eq_ignore_ascii_case("for").then_some(v)
            })?;
            chain.push(parse_node(node)?);
        }
    }
    (!chain.is_empty()).then_some(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_claims() {
        let t = TrustedProxies::parse(["10.0.0.0/8"]).unwrap();
        let h = headers(&[("x-forwarded-for", "8.8.8.8")]);
        assert_eq!(t.client_ip(Some(ip("1.2.3.4")), &h), Some(ip("1.2.3.4")));
        assert_eq!(
            TrustedProxies::none().client_ip(Some(ip("10.0.0.1")), &h),
            Some(ip("10.0.0.1"))
        );
    }

    #[test]
    fn trusted_peer_forwards_the_rightmost_untrusted_address() {
        let t = TrustedProxies::parse(["10.0.0.0/8", "::1"]).unwrap();
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 8.8.8.8, 10.1.1.1")]);
        assert_eq!(t.client_ip(Some(ip("10.0.0.1")), &h), Some(ip("8.8.8.8")));
        assert_eq!(t.client_ip(Some(ip("::1")), &h), Some(ip("8.8.8.8")));
        let all_trusted = headers(&[("x-forwarded-for", "10.9.9.9, 10.1.1.1")]);
        assert_eq!(
            t.client_ip(Some(ip("10.0.0.1")), &all_trusted),
            Some(ip("10.9.9.9"))
        );
        let garbage = headers(&[("x-forwarded-for", "not an ip")]);
        assert_eq!(
            t.client_ip(Some(ip("10.0.0.1")), &garbage),
            Some(ip("10.0.0.1"))
        );
    }

    #[test]
    fn forwarded_header_is_preferred_and_parsed() {
        let t = TrustedProxies::parse(["127.0.0.1"]).unwrap();
        let h = headers(&[
            (
                "forwarded",
                r#"for="[2001:db8::1]:4711";proto=https, for=127.0.0.1"#,
            ),
            ("x-forwarded-for", "9.9.9.9"),
        ]);
        assert_eq!(
            t.client_ip(Some(ip("::ffff:127.0.0.1")), &h),
            Some(ip("2001:db8::1"))
        );
        let unknown = headers(&[("forwarded", "for=unknown"), ("x-forwarded-for", "9.9.9.9")]);
        assert_eq!(
            t.client_ip(Some(ip("127.0.0.1")), &unknown),
            Some(ip("9.9.9.9"))
        );
        assert_eq!(
            t.client_ip(Some(ip("127.0.0.1")), &HeaderMap::new()),
            Some(ip("127.0.0.1"))
        );
    }

    #[test]
    fn bad_entries_are_rejected() {
        assert_eq!(
            TrustedProxies::parse(["10.0.0.0/33"]),
            Err(InvalidProxy("10.0.0.0/33".into()))
        );
        assert!(TrustedProxies::parse(["nope"]).is_err());
        assert!(TrustedProxies::parse(["1.2.3.4", "fd00::/8"]).is_ok());
    }
}
