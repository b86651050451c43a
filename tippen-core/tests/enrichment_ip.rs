//! IP classification: every table row at its edges, a hand-written list of expectations, and
//! properties against independent oracles.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use tippen_core::enrichment::{
    Classification, IPV4_RANGES, IPV6_RANGES, Ipv6RangeKind, RangeKind, SkipReason, classify,
};

use Classification::{Public, Skip};
use SkipReason as R;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// What the table says about one address: the kind of the longest matching row, computed
/// here independently of the crate's lookup.
fn expected_v4(a: Ipv4Addr) -> Classification {
    let row = IPV4_RANGES
        .iter()
        .filter(|r| {
            let n = u32::from(r.network);
            let last = u32::from(r.last());
            (n..=last).contains(&u32::from(a))
        })
        .max_by_key(|r| r.prefix_len);
    match row.map(|r| r.kind) {
        Some(RangeKind::Skip(reason)) => Skip(reason),
        _ => Public(IpAddr::V4(a)),
    }
}

fn expected_v6(a: Ipv6Addr) -> Classification {
    let row = IPV6_RANGES
        .iter()
        .filter(|r| {
            let n = u128::from(r.network);
            let last = u128::from(r.last());
            (n..=last).contains(&u128::from(a))
        })
        .max_by_key(|r| r.prefix_len);
    match row.map(|r| r.kind) {
        Some(Ipv6RangeKind::Skip(reason)) => Skip(reason),
        Some(Ipv6RangeKind::Embeds(e)) => expected_v4(e.extract(a)),
        _ => Public(IpAddr::V6(a)),
    }
}

fn in_v4_table(a: Ipv4Addr) -> bool {
    IPV4_RANGES.iter().any(|r| r.contains(a))
}

fn in_v6_table(a: Ipv6Addr) -> bool {
    IPV6_RANGES.iter().any(|r| r.contains(a))
}

#[test]
fn every_ipv4_row_first_last_and_just_outside() {
    for row in IPV4_RANGES {
        let first = u32::from(row.network);
        let last = u32::from(row.last());
        for a in [first, last] {
            let a = Ipv4Addr::from(a);
            // A more specific row may decide the edge address (0.0.0.0 in 0.0.0.0/8); what
            // counts is that this row's own kind applies unless such a row exists.
            let more_specific = IPV4_RANGES
                .iter()
                .any(|r| r.prefix_len > row.prefix_len && r.contains(a));
            let got = classify(IpAddr::V4(a));
            if !more_specific {
                let want = match row.kind {
                    RangeKind::Skip(reason) => Skip(reason),
                    RangeKind::Global => Public(IpAddr::V4(a)),
                };
                assert_eq!(got, want, "{a} in {row:?}");
            }
            assert_eq!(got, expected_v4(a), "{a}");
        }
        for outside in [first.checked_sub(1), last.checked_add(1)]
            .into_iter()
            .flatten()
        {
            let a = Ipv4Addr::from(outside);
            assert!(!row.contains(a));
            assert_eq!(
                classify(IpAddr::V4(a)),
                expected_v4(a),
                "{a} next to {row:?}"
            );
            if !in_v4_table(a) {
                assert_eq!(classify(IpAddr::V4(a)), Public(IpAddr::V4(a)), "{a}");
            }
        }
    }
}

#[test]
fn every_ipv6_row_first_last_and_just_outside() {
    for row in IPV6_RANGES {
        let first = u128::from(row.network);
        let last = u128::from(row.last());
        for a in [first, last] {
            let a = Ipv6Addr::from(a);
            let more_specific = IPV6_RANGES
                .iter()
                .any(|r| r.prefix_len > row.prefix_len && r.contains(a));
            let got = classify(IpAddr::V6(a));
            if !more_specific {
                match row.kind {
                    Ipv6RangeKind::Skip(reason) => assert_eq!(got, Skip(reason), "{a}"),
                    Ipv6RangeKind::Global => assert_eq!(got, Public(IpAddr::V6(a)), "{a}"),
                    Ipv6RangeKind::Embeds(e) => {
                        assert_eq!(got, classify(IpAddr::V4(e.extract(a))), "{a}")
                    }
                }
            }
            assert_eq!(got, expected_v6(a), "{a}");
        }
        for outside in [first.checked_sub(1), last.checked_add(1)]
            .into_iter()
            .flatten()
        {
            let a = Ipv6Addr::from(outside);
            assert!(!row.contains(a));
            assert_eq!(
                classify(IpAddr::V6(a)),
                expected_v6(a),
                "{a} next to {row:?}"
            );
            if !in_v6_table(a) {
                assert_eq!(classify(IpAddr::V6(a)), Public(IpAddr::V6(a)), "{a}");
            }
        }
    }
}

/// The auditable list: literal addresses and what they must be, first/last/outside of every
/// well-known block, written by hand rather than derived from the table.
#[test]
fn hand_written_expectations() {
    let cases: &[(&str, Option<SkipReason>)] = &[
        // "This network" and unspecified.
        ("0.0.0.0", Some(R::Unspecified)),
        ("0.0.0.1", Some(R::ThisNetwork)),
        ("0.255.255.255", Some(R::ThisNetwork)),
        ("1.0.0.0", None),
        // RFC 1918.
        ("9.255.255.255", None),
        ("10.0.0.0", Some(R::Private)),
        ("10.255.255.255", Some(R::Private)),
        ("11.0.0.0", None),
        ("172.15.255.255", None),
        ("172.16.0.0", Some(R::Private)),
        ("172.31.255.255", Some(R::Private)),
        ("172.32.0.0", None),
        ("192.167.255.255", None),
        ("192.168.0.0", Some(R::Private)),
        ("192.168.255.255", Some(R::Private)),
        ("192.169.0.0", None),
        // CGNAT.
        ("100.63.255.255", None),
        ("100.64.0.0", Some(R::SharedAddressSpace)),
        ("100.127.255.255", Some(R::SharedAddressSpace)),
        ("100.128.0.0", None),
        // Loopback, incl. the name-collision address.
        ("126.255.255.255", None),
        ("127.0.0.0", Some(R::Loopback)),
        ("127.0.53.53", Some(R::Loopback)),
        ("127.255.255.255", Some(R::Loopback)),
        ("128.0.0.0", None),
        // Link-local.
        ("169.253.255.255", None),
        ("169.254.0.0", Some(R::LinkLocal)),
        ("169.254.255.255", Some(R::LinkLocal)),
        ("169.255.0.0", None),
        // 192.0.0.0/24 and its exceptions.
        ("191.255.255.255", None),
        ("192.0.0.0", Some(R::IetfProtocolAssignment)),
        ("192.0.0.7", Some(R::IetfProtocolAssignment)),
        ("192.0.0.8", Some(R::Dummy)),
        ("192.0.0.9", None),
        ("192.0.0.10", None),
        ("192.0.0.11", Some(R::IetfProtocolAssignment)),
        ("192.0.0.170", Some(R::IetfProtocolAssignment)),
        ("192.0.0.171", Some(R::IetfProtocolAssignment)),
        ("192.0.0.255", Some(R::IetfProtocolAssignment)),
        ("192.0.1.0", None),
        // Documentation.
        ("192.0.1.255", None),
        ("192.0.2.0", Some(R::Documentation)),
        ("192.0.2.255", Some(R::Documentation)),
        ("192.0.3.0", None),
        ("198.51.99.255", None),
        ("198.51.100.0", Some(R::Documentation)),
        ("198.51.100.255", Some(R::Documentation)),
        ("198.51.101.0", None),
        ("203.0.112.255", None),
        ("203.0.113.0", Some(R::Documentation)),
        ("203.0.113.255", Some(R::Documentation)),
        ("203.0.114.0", None),
        // Globally reachable special blocks.
        ("192.31.196.1", None),
        ("192.52.193.1", None),
        ("192.175.48.1", None),
        // 6to4 relay anycast (deprecated).
        ("192.88.98.255", None),
        ("192.88.99.0", Some(R::SixToFourRelay)),
        ("192.88.99.255", Some(R::SixToFourRelay)),
        ("192.88.100.0", None),
        // Benchmarking.
        ("198.17.255.255", None),
        ("198.18.0.0", Some(R::Benchmarking)),
        ("198.19.255.255", Some(R::Benchmarking)),
        ("198.20.0.0", None),
        // Multicast, reserved, broadcast.
        ("223.255.255.255", None),
        ("224.0.0.0", Some(R::Multicast)),
        ("239.255.255.255", Some(R::Multicast)),
        ("240.0.0.0", Some(R::Reserved)),
        ("255.255.255.254", Some(R::Reserved)),
        ("255.255.255.255", Some(R::Broadcast)),
        // IPv6 basics.
        ("::", Some(R::Unspecified)),
        ("::1", Some(R::Loopback)),
        ("::2:0:0:1", Some(R::Reserved)),
        ("ff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some(R::Reserved)),
        ("1ff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some(R::Reserved)),
        ("1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some(R::Reserved)),
        ("2000::", None),
        ("3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff", None),
        ("4000::", Some(R::Reserved)),
        ("fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some(R::Reserved)),
        // Discard-only and dummy.
        ("100::", Some(R::DiscardOnly)),
        ("100::ffff:ffff:ffff:ffff", Some(R::DiscardOnly)),
        ("100:0:0:1::", Some(R::Dummy)),
        ("100:0:0:1:ffff:ffff:ffff:ffff", Some(R::Dummy)),
        ("100:0:0:2::", Some(R::Reserved)),
        // NAT64 local use.
        ("64:ff9b:1::", Some(R::LocalTranslation)),
        (
            "64:ff9b:1:ffff:ffff:ffff:ffff:ffff",
            Some(R::LocalTranslation),
        ),
        ("64:ff9b:2::", Some(R::Reserved)),
        // 2001::/23 and what it contains.
        ("2001:2::", Some(R::Benchmarking)),
        ("2001:2:0:ffff:ffff:ffff:ffff:ffff", Some(R::Benchmarking)),
        ("2001:2:1::", Some(R::IetfProtocolAssignment)),
        ("2001:1::1", None),
        ("2001:1::2", None),
        ("2001:1::3", None),
        ("2001:1::4", Some(R::IetfProtocolAssignment)),
        ("2001:3::", None),
        ("2001:3:ffff:ffff:ffff:ffff:ffff:ffff", None),
        ("2001:4:112::", None),
        ("2001:4:113::", Some(R::IetfProtocolAssignment)),
        (
            "2001:f:ffff:ffff:ffff:ffff:ffff:ffff",
            Some(R::IetfProtocolAssignment),
        ),
        ("2001:10::", Some(R::Orchid)),
        ("2001:1f:ffff:ffff:ffff:ffff:ffff:ffff", Some(R::Orchid)),
        ("2001:20::", Some(R::Orchid)),
        ("2001:2f:ffff:ffff:ffff:ffff:ffff:ffff", Some(R::Orchid)),
        ("2001:30::", None),
        ("2001:3f:ffff:ffff:ffff:ffff:ffff:ffff", None),
        ("2001:40::", Some(R::IetfProtocolAssignment)),
        (
            "2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff",
            Some(R::IetfProtocolAssignment),
        ),
        ("2001:200::", None),
        ("2000:ffff:ffff:ffff:ffff:ffff:ffff:ffff", None),
        // Documentation.
        ("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", None),
        ("2001:db8::", Some(R::Documentation)),
        (
            "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
            Some(R::Documentation),
        ),
        ("2001:db9::", None),
        ("3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff", None),
        ("3fff::", Some(R::Documentation)),
        (
            "3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff",
            Some(R::Documentation),
        ),
        ("3fff:1000::", None),
        // SRv6.
        ("5f00::", Some(R::SegmentRouting)),
        (
            "5f00:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            Some(R::SegmentRouting),
        ),
        ("5f01::", Some(R::Reserved)),
        // AS112 direct delegation.
        ("2620:4f:8000::1", None),
        // ULA, link-local, site-local, multicast.
        ("fc00::", Some(R::UniqueLocal)),
        (
            "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            Some(R::UniqueLocal),
        ),
        ("fe00::", Some(R::Reserved)),
        ("fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some(R::Reserved)),
        ("fe80::", Some(R::LinkLocal)),
        (
            "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            Some(R::LinkLocal),
        ),
        ("fec0::", Some(R::SiteLocal)),
        (
            "feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            Some(R::SiteLocal),
        ),
        ("ff00::", Some(R::Multicast)),
        ("ff02::1", Some(R::Multicast)),
        (
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            Some(R::Multicast),
        ),
    ];
    for (addr, want) in cases {
        assert_eq!(classify(ip(addr)).skip_reason(), *want, "{addr}");
    }
}

#[test]
fn embedded_ipv4_is_classified_by_the_ipv4_address() {
    let cases: &[(&str, Classification)] = &[
        // IPv4-mapped: what a dual-stack socket reports for an IPv4 client.
        ("::ffff:8.8.8.8", Public(ip("8.8.8.8"))),
        ("::ffff:10.1.2.3", Skip(R::Private)),
        ("::ffff:127.0.0.1", Skip(R::Loopback)),
        ("::ffff:100.64.0.1", Skip(R::SharedAddressSpace)),
        ("::ffff:0.0.0.0", Skip(R::Unspecified)),
        ("::fffe:ffff:ffff", Skip(R::Reserved)),
        // IPv4-compatible (deprecated).
        ("::8.8.8.8", Public(ip("8.8.8.8"))),
        ("::192.168.1.1", Skip(R::Private)),
        ("::0.0.0.2", Skip(R::ThisNetwork)),
        // NAT64 well-known prefix.
        ("64:ff9b::1.1.1.1", Public(ip("1.1.1.1"))),
        ("64:ff9b::192.168.0.1", Skip(R::Private)),
        ("64:ff9b::198.51.100.7", Skip(R::Documentation)),
        // 6to4: 2002:AABB:CCDD::/48 carries AA.BB.CC.DD.
        ("2002:808:808::1", Public(ip("8.8.8.8"))),
        ("2002:a00:1::1", Skip(R::Private)),
        ("2002:c0a8:101:1::1", Skip(R::Private)),
        ("2002:7f00:1::", Skip(R::Loopback)),
        ("2002:a9fe:1::", Skip(R::LinkLocal)),
        ("2002:e000::", Skip(R::Multicast)),
        ("2002:ffff:ffff::", Skip(R::Broadcast)),
        // Teredo: the client address, bit-inverted, in the last 32 bits.
        (
            "2001:0:4136:e378:8000:63bf:f7f7:f7f7",
            Public(ip("8.8.8.8")),
        ),
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", Skip(R::Private)),
        (
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            Skip(R::Documentation),
        ),
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", Skip(R::Loopback)),
    ];
    for (addr, want) in cases {
        assert_eq!(classify(ip(addr)), *want, "{addr}");
    }
}

#[test]
fn fallback_companies() {
    for reason in SkipReason::ALL {
        let local = matches!(
            reason,
            R::Private
                | R::Loopback
                | R::LinkLocal
                | R::SharedAddressSpace
                | R::UniqueLocal
                | R::SiteLocal
                | R::Unspecified
        );
        let want = if local {
            "Direct Visitor"
        } else {
            "Unknown Company"
        };
        assert_eq!(reason.fallback_company(), want, "{reason}");
    }
}

fn any_v6() -> impl Strategy<Value = Ipv6Addr> {
    prop_oneof![
        any::<u128>().prop_map(Ipv6Addr::from),
        // Global unicast, where real visitors live.
        any::<u128>().prop_map(|b| Ipv6Addr::from((b >> 3) | (1 << 125))),
        // Inside 2001::/23, dense with rows.
        any::<u128>().prop_map(|b| Ipv6Addr::from((b >> 23) | (0x2001u128 << 112))),
        // Embedded IPv4 forms.
        any::<u32>().prop_map(|v| Ipv4Addr::from(v).to_ipv6_mapped()),
        any::<u32>().prop_map(|v| Ipv6Addr::from((0x2002u128 << 112) | (u128::from(v) << 80))),
        any::<u32>().prop_map(|v| Ipv6Addr::from((0x0064_ff9bu128 << 96) | u128::from(v))),
        any::<(u64, u32)>().prop_map(|(s, c)| Ipv6Addr::from(
            (0x2001_0000u128 << 96) | (u128::from(s) << 32) | u128::from(c)
        )),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// Any IPv4 address no row covers is public and looked up as itself.
    #[test]
    fn ipv4_outside_the_table_is_public(bits in any::<u32>()) {
        let a = Ipv4Addr::from(bits);
        if !in_v4_table(a) {
            prop_assert_eq!(classify(IpAddr::V4(a)), Public(IpAddr::V4(a)));
        }
        prop_assert_eq!(classify(IpAddr::V4(a)), expected_v4(a));
    }

    /// Any IPv6 address no row covers is public and looked up as itself.
    #[test]
    fn ipv6_outside_the_table_is_public(a in any_v6()) {
        if !in_v6_table(a) {
            prop_assert_eq!(classify(IpAddr::V6(a)), Public(IpAddr::V6(a)));
        }
        prop_assert_eq!(classify(IpAddr::V6(a)), expected_v6(a));
    }

    /// The standard library's own predicates agree: whatever it calls private, loopback,
    /// link-local, multicast, broadcast, documentation or unspecified is skipped.
    #[test]
    fn ipv4_agrees_with_std(bits in any::<u32>()) {
        let a = Ipv4Addr::from(bits);
        let got = classify(IpAddr::V4(a));
        if a.is_private() { prop_assert_eq!(got, Skip(R::Private)); }
        if a.is_loopback() { prop_assert_eq!(got, Skip(R::Loopback)); }
        if a.is_link_local() { prop_assert_eq!(got, Skip(R::LinkLocal)); }
        if a.is_multicast() { prop_assert_eq!(got, Skip(R::Multicast)); }
        if a.is_broadcast() { prop_assert_eq!(got, Skip(R::Broadcast)); }
        if a.is_documentation() { prop_assert_eq!(got, Skip(R::Documentation)); }
        if a.is_unspecified() { prop_assert_eq!(got, Skip(R::Unspecified)); }
        // And a public answer is never one of those.
        if got.is_public() {
            prop_assert!(!(a.is_private() || a.is_loopback() || a.is_link_local()
                || a.is_multicast() || a.is_broadcast() || a.is_documentation()));
        }
    }

    #[test]
    fn ipv6_agrees_with_std(a in any_v6()) {
        let got = classify(IpAddr::V6(a));
        if a.is_loopback() { prop_assert_eq!(got, Skip(R::Loopback)); }
        if a.is_unspecified() { prop_assert_eq!(got, Skip(R::Unspecified)); }
        if a.is_multicast() { prop_assert_eq!(got, Skip(R::Multicast)); }
        if a.is_unique_local() { prop_assert_eq!(got, Skip(R::UniqueLocal)); }
        if a.is_unicast_link_local() { prop_assert_eq!(got, Skip(R::LinkLocal)); }
        // A mapped address is exactly its IPv4 address.
        if let Some(v4) = a.to_ipv4_mapped() {
            prop_assert_eq!(got, classify(IpAddr::V4(v4)));
        }
        // Whatever is public is looked up as an address that is itself public.
        if let Public(target) = got {
            prop_assert_eq!(classify(target), Public(target));
        }
    }
}
