//! The SSRF guard of push deliveries: which addresses a webhook may reach.
//!
//! Loopback, private (RFC 1918, fc00::/7), link-local (including the cloud
//! metadata service 169.254.169.254), shared (CGNAT 100.64/10),
//! unspecified, multicast, broadcast and reserved addresses are refused —
//! also when they hide inside IPv6 forms (IPv4-mapped, IPv4-compatible,
//! NAT64, 6to4) — unless the server's `push_allow_networks` contains them.
//! A host name is refused when ANY of its addresses is; the request then
//! connects to exactly the vetted addresses, so a second DNS answer
//! (rebinding) cannot redirect it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Parses a comma-separated list of networks (`10.0.0.0/8, ::1/128`); a
/// bare address is a network of that one address. Empty items are skipped.
pub fn parse_networks(text: &str) -> Result<Vec<IpNet>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|item| {
            item.parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map(|n| n.trunc())
                .map_err(|_| {
                    format!("`{item}` is not a network in CIDR notation (e.g. 10.0.0.0/8) or an address")
                })
        })
        .collect()
}

/// Why `ip` may not be reached, or `None` when it may.
pub fn refusal(ip: IpAddr, allowed: &[IpNet]) -> Option<String> {
    let canonical = canonical(ip);
    if allowed
        .iter()
        .any(|net| net.contains(&ip) || net.contains(&canonical))
    {
        return None;
    }
    let why = match canonical {
        IpAddr::V4(v4) => v4_class(v4),
        IpAddr::V6(v6) => v6_class(v6),
    }?;
    Some(format!(
        "{ip} is {why} (allow it with `push_allow_networks`)"
    ))
}

/// The IPv4 address hidden in an IPv6 one (mapped, compatible, NAT64,
/// 6to4), else the address itself.
fn canonical(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else { return ip };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return IpAddr::V4(v4);
    }
    let s = v6.segments();
    let o = v6.octets();
    // IPv4-compatible ::a.b.c.d (deprecated), but not :: and ::1.
    if s[..6] == [0; 6] && !(s[6] == 0 && s[7] <= 1) {
        return IpAddr::V4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    // NAT64 well-known prefix 64:ff9b::/96.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return IpAddr::V4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    // 6to4 2002:AABB:CCDD::/48 carries AA.BB.CC.DD.
    if s[0] == 0x2002 {
        return IpAddr::V4(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    ip
}

fn v4_class(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    let why = if ip == Ipv4Addr::new(169, 254, 169, 254) {
        "the cloud metadata service"
    } else if ip.is_loopback() {
        "a loopback address"
    } else if ip.is_private() {
        "a private address"
    } else if ip.is_link_local() {
        "a link-local address"
    } else if a == 0 {
        "an unspecified (\"this network\") address"
    } else if a == 100 && (64..128).contains(&b) {
        "a shared (carrier-grade NAT) address"
    } else if ip.is_broadcast() {
        "the broadcast address"
    } else if ip.is_multicast() {
        "a multicast address"
    } else if a >= 240 {
        "a reserved address"
    } else if (a, b, c) == (192, 0, 0) {
        "an IETF protocol assignment address"
    } else if a == 198 && (b == 18 || b == 19) {
        "a benchmarking address"
    } else {
        return None;
    };
    Some(why)
}

fn v6_class(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    let why = if ip.is_unspecified() {
        "the unspecified address"
    } else if ip.is_loopback() {
        "a loopback address"
    } else if first & 0xfe00 == 0xfc00 {
        "a unique-local (private) address"
    } else if first & 0xffc0 == 0xfe80 {
        "a link-local address"
    } else if first & 0xffc0 == 0xfec0 {
        "a site-local address"
    } else if ip.is_multicast() {
        "a multicast address"
    } else {
        return None;
    };
    Some(why)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(ip: &str, allowed: &str) -> bool {
        let allowed = parse_networks(allowed).unwrap();
        refusal(ip.parse().unwrap(), &allowed).is_some()
    }

    #[test]
    fn internal_addresses_are_refused() {
        for ip in [
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "240.0.0.1",
            "::",
            "::1",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:a00:1::",
        ] {
            assert!(refused(ip, ""), "{ip} should be refused");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:2800:220:1:248:1893:25c8:1946",
            "::ffff:8.8.8.8",
        ] {
            assert!(!refused(ip, ""), "{ip} should pass");
        }
    }

    #[test]
    fn the_allow_list_wins() {
        assert!(!refused("127.0.0.1", "127.0.0.0/8"));
        assert!(!refused("::ffff:127.0.0.1", "127.0.0.0/8"));
        assert!(!refused("10.2.3.4", "192.168.0.0/16, 10.0.0.0/8"));
        assert!(refused("10.2.3.4", "10.1.0.0/16"));
        assert!(!refused("::1", "::1"));
        let why = refusal("169.254.169.254".parse().unwrap(), &[]).unwrap();
        assert!(why.contains("metadata"), "{why}");
    }

    #[test]
    fn networks_parse_or_are_named() {
        assert_eq!(parse_networks("").unwrap(), vec![]);
        assert_eq!(parse_networks(" 10.0.0.1/8 ,, ").unwrap().len(), 1);
        assert_eq!(
            parse_networks("10.0.0.1/8").unwrap()[0].to_string(),
            "10.0.0.0/8"
        );
        let err = parse_networks("127.0.0.0/8,nope").unwrap_err();
        assert!(err.contains("`nope`"), "{err}");
        assert!(parse_networks("10.0.0.0/33").is_err());
    }
}
