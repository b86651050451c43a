//! Which addresses may cost a lookup: [`classify`] against the IANA special-purpose tables.
//!
//! No provider knows a company for an address that is not globally reachable, so looking one
//! up only burns a credit. [`classify`] answers [`Classification::Public`] (spend the lookup,
//! on the address it names) or [`Classification::Skip`] with a typed [`SkipReason`].
//!
//! The answer comes from two tables, [`IPV4_RANGES`] and [`IPV6_RANGES`], one row per block:
//! `(network, prefix length, kind, IANA name, reference)`. The **longest matching prefix
//! wins**, so a row may carve an exception out of a larger block (192.0.0.9/32, globally
//! reachable, inside 192.0.0.0/24, which is not). The tables follow, row by row:
//!
//! - the *IANA IPv4 Special-Purpose Address Registry* (RFC 6890, last updated 2025) — every
//!   block whose "Globally Reachable" column is `False`, plus the blocks marked `True` inside
//!   them (as [`RangeKind::Global`] rows, so the exceptions are visible too);
//! - the *IANA IPv4 Address Space Registry* for 224.0.0.0/4 (multicast), which the
//!   special-purpose registry does not list;
//! - the *IANA IPv6 Special-Purpose Address Registry* (RFC 6890, RFC 8190, last updated 2025)
//!   in the same way;
//! - the *IANA Internet Protocol Version 6 Address Space* registry: every block "Reserved by
//!   IETF" (everything outside 2000::/3, fc00::/7, fe80::/10 and ff00::/8), site-local
//!   fec0::/10 (deprecated by RFC 3879) and multicast ff00::/8.
//!
//! Addresses that carry an IPv4 address — IPv4-mapped `::ffff:a.b.c.d`, the deprecated
//! IPv4-compatible `::a.b.c.d`, 6to4 `2002:aabb:ccdd::/48`, Teredo `2001:0::/32` (the client's
//! address, bit-inverted, in the last 32 bits) and the NAT64 well-known prefix
//! `64:ff9b::/96` — are classified by the IPv4 address they carry: a private one is skipped
//! with the IPv4 reason (`::ffff:10.0.0.1` is [`SkipReason::Private`]), a public one is
//! looked up *as that IPv4 address*, which is what a provider knows about and what a
//! dual-stack socket reports for every IPv4 client (`::ffff:8.8.8.8` → `8.8.8.8`).
//!
//! Three deliberate departures from the "Globally Reachable" column, each because the block
//! can never be a visitor's source address and no provider holds a company for it:
//! 192.88.99.0/24 (6to4 relay anycast, deprecated by RFC 7526, reachability "N/A"),
//! 2001:10::/28 (ORCHID, deprecated, "N/A") and 2001:20::/28 (ORCHIDv2, marked `True`, but
//! ORCHIDs are identifiers "not routable at the IP layer", RFC 7343 §2) are skipped.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why an address gets no lookup. Stable camelCase names ([`SkipReason::as_str`]) are used in
/// statistics and storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum SkipReason {
    /// The unspecified address: `0.0.0.0`, `::`.
    Unspecified,
    /// "This network", 0.0.0.0/8 (RFC 791, RFC 1122).
    ThisNetwork,
    /// Private-use, RFC 1918: 10/8, 172.16/12, 192.168/16.
    Private,
    /// Shared address space for carrier-grade NAT, 100.64.0.0/10 (RFC 6598).
    SharedAddressSpace,
    /// Loopback: 127/8, `::1`.
    Loopback,
    /// Link-local: 169.254/16 (RFC 3927), fe80::/10.
    LinkLocal,
    /// IETF protocol assignments: 192.0.0.0/24 (DS-Lite, NAT64 discovery, …), 2001::/23.
    IetfProtocolAssignment,
    /// Dummy addresses: 192.0.0.8/32 (RFC 7600), 100:0:0:1::/64 (RFC 9780).
    Dummy,
    /// Documentation: TEST-NET-1/2/3 (RFC 5737), 2001:db8::/32 (RFC 3849), 3fff::/20 (RFC 9637).
    Documentation,
    /// Benchmarking: 198.18.0.0/15 (RFC 2544), 2001:2::/48 (RFC 5180).
    Benchmarking,
    /// Multicast: 224.0.0.0/4, ff00::/8.
    Multicast,
    /// The limited broadcast address 255.255.255.255.
    Broadcast,
    /// Reserved: 240.0.0.0/4 (future use) and the IPv6 blocks "Reserved by IETF".
    Reserved,
    /// The deprecated 6to4 relay anycast block 192.88.99.0/24 (RFC 7526).
    SixToFourRelay,
    /// The local-use IPv4/IPv6 translation prefix 64:ff9b:1::/48 (RFC 8215).
    LocalTranslation,
    /// The discard-only prefix 100::/64 (RFC 6666).
    DiscardOnly,
    /// ORCHID identifiers: 2001:10::/28 (RFC 4843, deprecated), 2001:20::/28 (RFC 7343).
    Orchid,
    /// Segment Routing (SRv6) SIDs, 5f00::/16 (RFC 9602).
    SegmentRouting,
    /// Unique local addresses, fc00::/7 (RFC 4193).
    UniqueLocal,
    /// Site-local addresses, fec0::/10 (deprecated by RFC 3879).
    SiteLocal,
}

impl SkipReason {
    /// Every reason, in declaration order.
    pub const ALL: [SkipReason; 20] = [
        SkipReason::Unspecified,
        SkipReason::ThisNetwork,
        SkipReason::Private,
        SkipReason::SharedAddressSpace,
        SkipReason::Loopback,
        SkipReason::LinkLocal,
        SkipReason::IetfProtocolAssignment,
        SkipReason::Dummy,
        SkipReason::Documentation,
        SkipReason::Benchmarking,
        SkipReason::Multicast,
        SkipReason::Broadcast,
        SkipReason::Reserved,
        SkipReason::SixToFourRelay,
        SkipReason::LocalTranslation,
        SkipReason::DiscardOnly,
        SkipReason::Orchid,
        SkipReason::SegmentRouting,
        SkipReason::UniqueLocal,
        SkipReason::SiteLocal,
    ];

    /// The stable camelCase name, as in JSON (`"sharedAddressSpace"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            SkipReason::Unspecified => "unspecified",
            SkipReason::ThisNetwork => "thisNetwork",
            SkipReason::Private => "private",
            SkipReason::SharedAddressSpace => "sharedAddressSpace",
            SkipReason::Loopback => "loopback",
            SkipReason::LinkLocal => "linkLocal",
            SkipReason::IetfProtocolAssignment => "ietfProtocolAssignment",
            SkipReason::Dummy => "dummy",
            SkipReason::Documentation => "documentation",
            SkipReason::Benchmarking => "benchmarking",
            SkipReason::Multicast => "multicast",
            SkipReason::Broadcast => "broadcast",
            SkipReason::Reserved => "reserved",
            SkipReason::SixToFourRelay => "sixToFourRelay",
            SkipReason::LocalTranslation => "localTranslation",
            SkipReason::DiscardOnly => "discardOnly",
            SkipReason::Orchid => "orchid",
            SkipReason::SegmentRouting => "segmentRouting",
            SkipReason::UniqueLocal => "uniqueLocal",
            SkipReason::SiteLocal => "siteLocal",
        }
    }

    /// Whether the address belongs to the visitor's own or a nearby network (private,
    /// loopback, link-local, CGNAT, ULA, site-local, unspecified): such visitors are shown as
    /// [`DIRECT_VISITOR`](super::DIRECT_VISITOR).
    pub const fn is_local(self) -> bool {
        matches!(
            self,
            SkipReason::Unspecified
                | SkipReason::Private
                | SkipReason::SharedAddressSpace
                | SkipReason::Loopback
                | SkipReason::LinkLocal
                | SkipReason::UniqueLocal
                | SkipReason::SiteLocal
        )
    }

    /// The company shown instead of a lookup: `"Direct Visitor"` for local addresses
    /// ([`is_local`](Self::is_local)), `"Unknown Company"` for every other reason.
    pub const fn fallback_company(self) -> &'static str {
        if self.is_local() {
            super::DIRECT_VISITOR
        } else {
            super::UNKNOWN_COMPANY
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a [`SkipReason`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown skip reason {0:?}")]
pub struct UnknownSkipReason(pub String);

impl FromStr for SkipReason {
    type Err = UnknownSkipReason;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SkipReason::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownSkipReason(s.to_owned()))
    }
}

/// The verdict on one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Classification {
    /// Globally reachable: a lookup may be spent, on this address — the visitor's own, or the
    /// IPv4 address embedded in it (see the [module docs](self)). Cache and look up by it.
    Public(IpAddr),
    /// No lookup, for this reason.
    Skip(SkipReason),
}

impl Classification {
    /// Whether a lookup may be spent.
    pub const fn is_public(&self) -> bool {
        matches!(self, Classification::Public(_))
    }

    /// The address to look up, if any.
    pub const fn lookup_address(&self) -> Option<IpAddr> {
        match self {
            Classification::Public(ip) => Some(*ip),
            Classification::Skip(_) => None,
        }
    }

    /// The reason for skipping, if skipped.
    pub const fn skip_reason(&self) -> Option<SkipReason> {
        match self {
            Classification::Public(_) => None,
            Classification::Skip(r) => Some(*r),
        }
    }
}

/// What an IPv4 table row means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeKind {
    /// Not globally reachable: skip for this reason.
    Skip(SkipReason),
    /// Globally reachable although inside a skipped block: look up as usual.
    Global,
}

/// What an IPv6 table row means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ipv6RangeKind {
    /// Not globally reachable: skip for this reason.
    Skip(SkipReason),
    /// Globally reachable although inside a skipped block: look up as usual.
    Global,
    /// Carries an IPv4 address: classify that instead.
    Embeds(Embedding),
}

/// How an IPv6 address carries an IPv4 address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Embedding {
    /// `::ffff:a.b.c.d` (RFC 4291 §2.5.5.2): the last 32 bits.
    Ipv4Mapped,
    /// `::a.b.c.d`, deprecated (RFC 4291 §2.5.5.1): the last 32 bits.
    Ipv4Compatible,
    /// `64:ff9b::a.b.c.d`, the NAT64 well-known prefix (RFC 6052): the last 32 bits.
    Nat64,
    /// `2002:aabb:ccdd::/48`, 6to4 (RFC 3056): bits 16 to 48.
    SixToFour,
    /// `2001:0:…`, Teredo (RFC 4380): the client's address, bit-inverted, in the last 32 bits.
    Teredo,
}

impl Embedding {
    /// The IPv4 address `ip` carries.
    pub fn extract(self, ip: Ipv6Addr) -> Ipv4Addr {
        let bits = u128::from(ip);
        match self {
            Embedding::Ipv4Mapped | Embedding::Ipv4Compatible | Embedding::Nat64 => {
                Ipv4Addr::from(bits as u32)
            }
            Embedding::SixToFour => Ipv4Addr::from((bits >> 80) as u32),
            Embedding::Teredo => Ipv4Addr::from(!(bits as u32)),
        }
    }
}

/// One row of a classification table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpecialRange<A, K> {
    /// The first address of the block.
    pub network: A,
    /// The prefix length.
    pub prefix_len: u8,
    /// What the block means for enrichment.
    pub kind: K,
    /// The block's name in its IANA registry.
    pub name: &'static str,
    /// The registry and RFC it comes from.
    pub reference: &'static str,
}

/// A row of [`IPV4_RANGES`].
pub type Ipv4Range = SpecialRange<Ipv4Addr, RangeKind>;
/// A row of [`IPV6_RANGES`].
pub type Ipv6Range = SpecialRange<Ipv6Addr, Ipv6RangeKind>;

impl Ipv4Range {
    /// Whether `ip` is in the block.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix_len))
            .unwrap_or(0);
        u32::from(ip) & mask == u32::from(self.network) & mask
    }

    /// The last address of the block.
    pub fn last(&self) -> Ipv4Addr {
        let host = u32::MAX
            .checked_shr(u32::from(self.prefix_len))
            .unwrap_or(0);
        Ipv4Addr::from(u32::from(self.network) | host)
    }
}

impl Ipv6Range {
    /// Whether `ip` is in the block.
    pub fn contains(&self, ip: Ipv6Addr) -> bool {
        let mask = u128::MAX
            .checked_shl(128 - u32::from(self.prefix_len))
            .unwrap_or(0);
        u128::from(ip) & mask == u128::from(self.network) & mask
    }

    /// The last address of the block.
    pub fn last(&self) -> Ipv6Addr {
        let host = u128::MAX
            .checked_shr(u32::from(self.prefix_len))
            .unwrap_or(0);
        Ipv6Addr::from(u128::from(self.network) | host)
    }
}

const fn v4(
    octets: [u8; 4],
    prefix_len: u8,
    kind: RangeKind,
    name: &'static str,
    reference: &'static str,
) -> Ipv4Range {
    let [a, b, c, d] = octets;
    SpecialRange {
        network: Ipv4Addr::new(a, b, c, d),
        prefix_len,
        kind,
        name,
        reference,
    }
}

const fn v6(
    segments: [u16; 8],
    prefix_len: u8,
    kind: Ipv6RangeKind,
    name: &'static str,
    reference: &'static str,
) -> Ipv6Range {
    let [a, b, c, d, e, f, g, h] = segments;
    SpecialRange {
        network: Ipv6Addr::new(a, b, c, d, e, f, g, h),
        prefix_len,
        kind,
        name,
        reference,
    }
}

use Ipv6RangeKind as K6;
use RangeKind as K4;
use SkipReason as R;

/// The IPv4 table: every block that is not globally reachable, and the globally reachable
/// exceptions inside them. Longest prefix wins.
#[rustfmt::skip]
pub static IPV4_RANGES: &[Ipv4Range] = &[
    v4([0, 0, 0, 0], 8, K4::Skip(R::ThisNetwork), "\"This network\"", "IANA IPv4 Special-Purpose Address Registry; RFC 791 §3.2"),
    v4([0, 0, 0, 0], 32, K4::Skip(R::Unspecified), "\"This host on this network\"", "IANA IPv4 Special-Purpose Address Registry; RFC 1122 §3.2.1.3"),
    v4([10, 0, 0, 0], 8, K4::Skip(R::Private), "Private-Use", "IANA IPv4 Special-Purpose Address Registry; RFC 1918"),
    v4([100, 64, 0, 0], 10, K4::Skip(R::SharedAddressSpace), "Shared Address Space", "IANA IPv4 Special-Purpose Address Registry; RFC 6598"),
    v4([127, 0, 0, 0], 8, K4::Skip(R::Loopback), "Loopback", "IANA IPv4 Special-Purpose Address Registry; RFC 1122 §3.2.1.3"),
    v4([169, 254, 0, 0], 16, K4::Skip(R::LinkLocal), "Link Local", "IANA IPv4 Special-Purpose Address Registry; RFC 3927"),
    v4([172, 16, 0, 0], 12, K4::Skip(R::Private), "Private-Use", "IANA IPv4 Special-Purpose Address Registry; RFC 1918"),
    v4([192, 0, 0, 0], 24, K4::Skip(R::IetfProtocolAssignment), "IETF Protocol Assignments", "IANA IPv4 Special-Purpose Address Registry; RFC 6890 §2.1"),
    v4([192, 0, 0, 0], 29, K4::Skip(R::IetfProtocolAssignment), "IPv4 Service Continuity Prefix", "IANA IPv4 Special-Purpose Address Registry; RFC 7335"),
    v4([192, 0, 0, 8], 32, K4::Skip(R::Dummy), "IPv4 dummy address", "IANA IPv4 Special-Purpose Address Registry; RFC 7600"),
    v4([192, 0, 0, 9], 32, K4::Global, "Port Control Protocol Anycast", "IANA IPv4 Special-Purpose Address Registry; RFC 7723"),
    v4([192, 0, 0, 10], 32, K4::Global, "Traversal Using Relays around NAT Anycast", "IANA IPv4 Special-Purpose Address Registry; RFC 8155"),
    v4([192, 0, 0, 170], 32, K4::Skip(R::IetfProtocolAssignment), "NAT64/DNS64 Discovery", "IANA IPv4 Special-Purpose Address Registry; RFC 8880, RFC 7050 §2.2"),
    v4([192, 0, 0, 171], 32, K4::Skip(R::IetfProtocolAssignment), "NAT64/DNS64 Discovery", "IANA IPv4 Special-Purpose Address Registry; RFC 8880, RFC 7050 §2.2"),
    v4([192, 0, 2, 0], 24, K4::Skip(R::Documentation), "Documentation (TEST-NET-1)", "IANA IPv4 Special-Purpose Address Registry; RFC 5737"),
    v4([192, 31, 196, 0], 24, K4::Global, "AS112-v4", "IANA IPv4 Special-Purpose Address Registry; RFC 7535"),
    v4([192, 52, 193, 0], 24, K4::Global, "AMT", "IANA IPv4 Special-Purpose Address Registry; RFC 7450"),
    v4([192, 88, 99, 0], 24, K4::Skip(R::SixToFourRelay), "Deprecated (6to4 Relay Anycast)", "IANA IPv4 Special-Purpose Address Registry; RFC 7526"),
    v4([192, 168, 0, 0], 16, K4::Skip(R::Private), "Private-Use", "IANA IPv4 Special-Purpose Address Registry; RFC 1918"),
    v4([192, 175, 48, 0], 24, K4::Global, "Direct Delegation AS112 Service", "IANA IPv4 Special-Purpose Address Registry; RFC 7534"),
    v4([198, 18, 0, 0], 15, K4::Skip(R::Benchmarking), "Benchmarking", "IANA IPv4 Special-Purpose Address Registry; RFC 2544"),
    v4([198, 51, 100, 0], 24, K4::Skip(R::Documentation), "Documentation (TEST-NET-2)", "IANA IPv4 Special-Purpose Address Registry; RFC 5737"),
    v4([203, 0, 113, 0], 24, K4::Skip(R::Documentation), "Documentation (TEST-NET-3)", "IANA IPv4 Special-Purpose Address Registry; RFC 5737"),
    v4([224, 0, 0, 0], 4, K4::Skip(R::Multicast), "Multicast", "IANA IPv4 Address Space Registry; RFC 5771"),
    v4([240, 0, 0, 0], 4, K4::Skip(R::Reserved), "Reserved", "IANA IPv4 Special-Purpose Address Registry; RFC 1112 §4"),
    v4([255, 255, 255, 255], 32, K4::Skip(R::Broadcast), "Limited Broadcast", "IANA IPv4 Special-Purpose Address Registry; RFC 8190, RFC 919 §7"),
];

/// The IPv6 table: every block that is not globally reachable, the globally reachable
/// exceptions inside them, and the blocks that carry an IPv4 address. Longest prefix wins.
#[rustfmt::skip]
pub static IPV6_RANGES: &[Ipv6Range] = &[
    // IANA IPv6 Special-Purpose Address Registry.
    v6([0, 0, 0, 0, 0, 0, 0, 0], 128, K6::Skip(R::Unspecified), "Unspecified Address", "IANA IPv6 Special-Purpose Address Registry; RFC 4291"),
    v6([0, 0, 0, 0, 0, 0, 0, 1], 128, K6::Skip(R::Loopback), "Loopback Address", "IANA IPv6 Special-Purpose Address Registry; RFC 4291"),
    v6([0, 0, 0, 0, 0, 0xffff, 0, 0], 96, K6::Embeds(Embedding::Ipv4Mapped), "IPv4-mapped Address", "IANA IPv6 Special-Purpose Address Registry; RFC 4291"),
    v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96, K6::Embeds(Embedding::Nat64), "IPv4-IPv6 Translat.", "IANA IPv6 Special-Purpose Address Registry; RFC 6052"),
    v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48, K6::Skip(R::LocalTranslation), "IPv4-IPv6 Translat.", "IANA IPv6 Special-Purpose Address Registry; RFC 8215"),
    v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64, K6::Skip(R::DiscardOnly), "Discard-Only Address Block", "IANA IPv6 Special-Purpose Address Registry; RFC 6666"),
    v6([0x100, 0, 0, 1, 0, 0, 0, 0], 64, K6::Skip(R::Dummy), "Dummy IPv6 Prefix", "IANA IPv6 Special-Purpose Address Registry; RFC 9780"),
    v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23, K6::Skip(R::IetfProtocolAssignment), "IETF Protocol Assignments", "IANA IPv6 Special-Purpose Address Registry; RFC 2928"),
    v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32, K6::Embeds(Embedding::Teredo), "TEREDO", "IANA IPv6 Special-Purpose Address Registry; RFC 4380, RFC 8190"),
    v6([0x2001, 1, 0, 0, 0, 0, 0, 1], 128, K6::Global, "Port Control Protocol Anycast", "IANA IPv6 Special-Purpose Address Registry; RFC 7723"),
    v6([0x2001, 1, 0, 0, 0, 0, 0, 2], 128, K6::Global, "Traversal Using Relays around NAT Anycast", "IANA IPv6 Special-Purpose Address Registry; RFC 8155"),
    v6([0x2001, 1, 0, 0, 0, 0, 0, 3], 128, K6::Global, "DNS-SD Service Registration Protocol Anycast", "IANA IPv6 Special-Purpose Address Registry; RFC 9665"),
    v6([0x2001, 2, 0, 0, 0, 0, 0, 0], 48, K6::Skip(R::Benchmarking), "Benchmarking", "IANA IPv6 Special-Purpose Address Registry; RFC 5180"),
    v6([0x2001, 3, 0, 0, 0, 0, 0, 0], 32, K6::Global, "AMT", "IANA IPv6 Special-Purpose Address Registry; RFC 7450"),
    v6([0x2001, 4, 0x112, 0, 0, 0, 0, 0], 48, K6::Global, "AS112-v6", "IANA IPv6 Special-Purpose Address Registry; RFC 7535"),
    v6([0x2001, 0x10, 0, 0, 0, 0, 0, 0], 28, K6::Skip(R::Orchid), "Deprecated (previously ORCHID)", "IANA IPv6 Special-Purpose Address Registry; RFC 4843"),
    v6([0x2001, 0x20, 0, 0, 0, 0, 0, 0], 28, K6::Skip(R::Orchid), "ORCHIDv2", "IANA IPv6 Special-Purpose Address Registry; RFC 7343 (identifiers, never locators)"),
    v6([0x2001, 0x30, 0, 0, 0, 0, 0, 0], 28, K6::Global, "Drone Remote ID Protocol Entity Tags (DETs) Prefix", "IANA IPv6 Special-Purpose Address Registry; RFC 9374"),
    v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32, K6::Skip(R::Documentation), "Documentation", "IANA IPv6 Special-Purpose Address Registry; RFC 3849"),
    v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16, K6::Embeds(Embedding::SixToFour), "6to4", "IANA IPv6 Special-Purpose Address Registry; RFC 3056"),
    v6([0x2620, 0x4f, 0x8000, 0, 0, 0, 0, 0], 48, K6::Global, "Direct Delegation AS112 Service", "IANA IPv6 Special-Purpose Address Registry; RFC 7534"),
    v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, K6::Skip(R::Documentation), "Documentation", "IANA IPv6 Special-Purpose Address Registry; RFC 9637"),
    v6([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16, K6::Skip(R::SegmentRouting), "Segment Routing (SRv6) SIDs", "IANA IPv6 Special-Purpose Address Registry; RFC 9602"),
    v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, K6::Skip(R::UniqueLocal), "Unique-Local", "IANA IPv6 Special-Purpose Address Registry; RFC 4193"),
    v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, K6::Skip(R::LinkLocal), "Link-Local Unicast", "IANA IPv6 Special-Purpose Address Registry; RFC 4291"),
    // IANA Internet Protocol Version 6 Address Space.
    v6([0, 0, 0, 0, 0, 0, 0, 0], 96, K6::Embeds(Embedding::Ipv4Compatible), "IPv4-compatible (deprecated)", "IANA Internet Protocol Version 6 Address Space; RFC 4291 §2.5.5.1"),
    v6([0, 0, 0, 0, 0, 0, 0, 0], 8, K6::Skip(R::Reserved), "Reserved by IETF", "IANA Internet Protocol Version 6 Address Space; RFC 4291"),
    v6([0x100, 0, 0, 0, 0, 0, 0, 0], 8, K6::Skip(R::Reserved), "Reserved by IETF", "IANA Internet Protocol Version 6 Address Space; RFC 4291"),
    v6([0x200, 0, 0, 0, 0, 0, 0, 0], 7, K6::Skip(R::Reserved), "Reserved by IETF", "IANA Internet Protocol Version 6 Address Space; RFC 4048"),
    v6([0x400, 0, 0, 0, 0, 0, 0, 0], 6, K6::Skip(R::Reserved), "Reserved by IETF", "IANA Internet Protocol Version 6 Address Space; RFC 4291"),
    v6([0x800, 0, 0, 0, 0, 0, 0, 0], 5, K6::Skip(R::Reserved), "Reserved by IETF", "IANA Internet Protocol Version 6 Address Space; RFC 4291"),
    v6([0x1000, 0, 0, 0, 0, 0, 0, 0], 4, K6::Skip(R::Reserved), "Reserved by IETF", "IANA Internet Protocol Version 6 Address Space; RFC 4291"),
    v6([0x4000, 0, 0, 0, 0, 0, 0, 0], 3, K6::Skip(R::Reserved), "Reserved by IETF", "IANA Internet Protocol Version 6 Address Space; RFC 4291"),
    v6([0x6000, 0, 0, 0, 0, 0, 0, 0], 3, K6::Skip(R::Reserved), "Reserved by IETF", "IANA Internet Protocol Version 6 Address Space; RFC 4291"),
    v6([0x8000, 0, 0, 0, 0, 0, 0, 0], 3, K6::Skip(R::Reserved), "Reserved by IETF", "IANA Internet Protocol Version 6 Address Space; RFC 4291"),
    v6([0xa000, 0, 0, 0, 0, 0, 0, 0], 3, K6::Skip(R::Reserved), "Reserved by IETF", "IANA Internet Protocol Version 6 Address Space; RFC 4291"),
    v6([0xc000, 0, 0, 0, 0, 0, 0, 0], 3, K6::Skip(R::Reserved), "Reserved by IETF", "IANA Internet Protocol Version 6 Address Space; RFC 4291"),
    v6([0xe000, 0, 0, 0, 0, 0, 0, 0], 4, K6::Skip(R::Reserved), "Reserved by IETF", "IANA Internet Protocol Version 6 Address Space; RFC 4291"),
    v6([0xf000, 0, 0, 0, 0, 0, 0, 0], 5, K6::Skip(R::Reserved), "Reserved by IETF", "IANA Internet Protocol Version 6 Address Space; RFC 4291"),
    v6([0xf800, 0, 0, 0, 0, 0, 0, 0], 6, K6::Skip(R::Reserved), "Reserved by IETF", "IANA Internet Protocol Version 6 Address Space; RFC 4291"),
    v6([0xfe00, 0, 0, 0, 0, 0, 0, 0], 9, K6::Skip(R::Reserved), "Reserved by IETF", "IANA Internet Protocol Version 6 Address Space; RFC 4291"),
    v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, K6::Skip(R::SiteLocal), "Reserved by IETF (deprecated site-local)", "IANA Internet Protocol Version 6 Address Space; RFC 3879"),
    v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, K6::Skip(R::Multicast), "Multicast", "IANA Internet Protocol Version 6 Address Space; RFC 4291"),
];

/// The row of [`IPV4_RANGES`] that decides `ip` (the longest matching prefix), if any.
pub fn ipv4_range(ip: Ipv4Addr) -> Option<&'static Ipv4Range> {
    IPV4_RANGES
        .iter()
        .filter(|r| r.contains(ip))
        .max_by_key(|r| r.prefix_len)
}

/// The row of [`IPV6_RANGES`] that decides `ip` (the longest matching prefix), if any.
pub fn ipv6_range(ip: Ipv6Addr) -> Option<&'static Ipv6Range> {
    IPV6_RANGES
        .iter()
        .filter(|r| r.contains(ip))
        .max_by_key(|r| r.prefix_len)
}

/// Classifies an address: whether a lookup may be spent on it (and on which address), or why
/// not. See the [module docs](self) for the sources.
///
/// ```
/// use std::net::IpAddr;
/// use tippen_core::enrichment::{classify, Classification, SkipReason};
///
/// let ip = |s: &str| s.parse::<IpAddr>().unwrap();
/// assert_eq!(classify(ip("8.8.8.8")), Classification::Public(ip("8.8.8.8")));
/// assert_eq!(classify(ip("192.168.1.10")), Classification::Skip(SkipReason::Private));
/// assert_eq!(classify(ip("::ffff:8.8.8.8")), Classification::Public(ip("8.8.8.8")));
/// assert_eq!(classify(ip("2002:a00:1::1")), Classification::Skip(SkipReason::Private));
/// assert_eq!(SkipReason::Private.fallback_company(), "Direct Visitor");
/// assert_eq!(SkipReason::Documentation.fallback_company(), "Unknown Company");
/// ```
pub fn classify(ip: IpAddr) -> Classification {
    match ip {
        IpAddr::V4(ip) => classify_v4(ip),
        IpAddr::V6(ip) => classify_v6(ip),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Classification {
    match ipv4_range(ip).map(|r| r.kind) {
        Some(RangeKind::Skip(reason)) => Classification::Skip(reason),
        Some(RangeKind::Global) | None => Classification::Public(IpAddr::V4(ip)),
    }
}

fn classify_v6(ip: Ipv6Addr) -> Classification {
    match ipv6_range(ip).map(|r| r.kind) {
        Some(Ipv6RangeKind::Skip(reason)) => Classification::Skip(reason),
        Some(Ipv6RangeKind::Embeds(embedding)) => classify_v4(embedding.extract(ip)),
        Some(Ipv6RangeKind::Global) | None => Classification::Public(IpAddr::V6(ip)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn skip(s: &str) -> Option<SkipReason> {
        classify(ip(s)).skip_reason()
    }

    #[test]
    fn prefix_lengths_are_valid_and_networks_aligned() {
        for r in IPV4_RANGES {
            assert!(r.prefix_len <= 32, "{r:?}");
            assert_eq!(
                u32::from(r.network)
                    & !u32::MAX
                        .checked_shl(32 - u32::from(r.prefix_len))
                        .unwrap_or(0),
                0,
                "host bits set in {r:?}"
            );
        }
        for r in IPV6_RANGES {
            assert!(r.prefix_len <= 128, "{r:?}");
            assert_eq!(
                u128::from(r.network)
                    & !u128::MAX
                        .checked_shl(128 - u32::from(r.prefix_len))
                        .unwrap_or(0),
                0,
                "host bits set in {r:?}"
            );
        }
    }

    #[test]
    fn no_two_rows_share_a_block_with_different_kinds() {
        for (i, a) in IPV4_RANGES.iter().enumerate() {
            for b in &IPV4_RANGES[i + 1..] {
                assert!(
                    !(a.network == b.network && a.prefix_len == b.prefix_len),
                    "duplicate rows {a:?} {b:?}"
                );
            }
        }
        for (i, a) in IPV6_RANGES.iter().enumerate() {
            for b in &IPV6_RANGES[i + 1..] {
                assert!(
                    !(a.network == b.network && a.prefix_len == b.prefix_len),
                    "duplicate rows {a:?} {b:?}"
                );
            }
        }
    }

    #[test]
    fn common_cases() {
        assert_eq!(skip("127.0.0.1"), Some(SkipReason::Loopback));
        assert_eq!(skip("::1"), Some(SkipReason::Loopback));
        assert_eq!(skip("10.1.2.3"), Some(SkipReason::Private));
        assert_eq!(skip("100.64.0.1"), Some(SkipReason::SharedAddressSpace));
        assert_eq!(skip("fd12:3456::1"), Some(SkipReason::UniqueLocal));
        assert_eq!(skip("fe80::1"), Some(SkipReason::LinkLocal));
        assert_eq!(skip("0.0.0.0"), Some(SkipReason::Unspecified));
        assert_eq!(skip("::"), Some(SkipReason::Unspecified));
        assert_eq!(skip("1.1.1.1"), None);
        assert_eq!(skip("2606:4700:4700::1111"), None);
    }

    #[test]
    fn names_round_trip() {
        for r in SkipReason::ALL {
            assert_eq!(r.as_str().parse::<SkipReason>(), Ok(r));
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.as_str())
            );
        }
        assert!("nope".parse::<SkipReason>().is_err());
    }

    #[test]
    fn embedded_extraction() {
        let v6 = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        assert_eq!(
            Embedding::SixToFour.extract(v6("2002:c000:0204::1")),
            Ipv4Addr::new(192, 0, 2, 4)
        );
        // RFC 4380 §4 example: client 192.0.2.45 is carried as 3fff:fdd2.
        assert_eq!(
            Embedding::Teredo.extract(v6("2001:0:4136:e378:8000:63bf:3fff:fdd2")),
            Ipv4Addr::new(192, 0, 2, 45)
        );
        assert_eq!(
            Embedding::Nat64.extract(v6("64:ff9b::c000:221")),
            Ipv4Addr::new(192, 0, 2, 33)
        );
    }
}
