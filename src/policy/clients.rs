use std::collections::hash_map::Entry as MapEntry;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net};
use serde::Serialize;

use super::Violation;
use super::violation::{quote, too_many_entries};

const FIELD: &str = "clients";

/// The client list, validated and indexed like a routing table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientRules {
    entries: Vec<String>,
    v4: PrefixTable,
    v6: PrefixTable,
    has_positive: bool,
}

/// Entries of one address family grouped by prefix length, longest first, so a lookup
/// costs one hash probe per distinct prefix length (at most 33 or 129) whatever the list size.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct PrefixTable {
    by_length: Vec<(u8, HashMap<u128, Route>)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Route {
    entry: usize,
    included: bool,
}

/// The outcome for one peer, with the entry (or the blank-field rule) that decided it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientDecision {
    pub allowed: bool,
    pub matched_entry: Option<String>,
    pub rule: ClientRule,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientRule {
    /// The most specific entry decided.
    Entry,
    /// Positive entries exist and none matched: rejected.
    NoMatchingEntry,
    /// Blank-field rule: no positive client entry and destination domains set: accepted.
    AnyClientBecauseDomainsSet,
    /// Blank-field rule: no positive client entry, no domains, peer in the sensor's subnet: accepted.
    SensorSubnet,
    /// Same rule, peer outside the sensor's subnet (or the subnet is unknown): rejected.
    OutsideSensorSubnet,
}

/// One parsed entry; `net` has its host bits cleared, and a bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ClientEntry {
    net: IpNet,
    bare: bool,
    included: bool,
}

impl ClientEntry {
    /// The stored form: canonical lowercase text, bare addresses kept bare.
    fn text(&self) -> String {
        let sign = if self.included { "" } else { "!" };
        if self.bare { format!("{sign}{}", self.net.addr()) } else { format!("{sign}{}", self.net) }
    }
}

impl ClientRules {
    /// Validates and normalises every entry, reporting every bad one at `/clients/{i}`
    /// and an over-long list at `/clients`.
    pub fn parse(entries: &[String]) -> Result<ClientRules, Vec<Violation>> {
        let mut violations: Vec<Violation> = too_many_entries(FIELD, entries.len()).into_iter().collect();
        let mut texts = Vec::new();
        let mut has_positive = false;
        // Network → (input index, included): "192.0.2.7" and "192.0.2.7/32" are one key.
        let mut seen: HashMap<IpNet, (usize, bool)> = HashMap::new();
        let mut v4: BTreeMap<u8, HashMap<u128, Route>> = BTreeMap::new();
        let mut v6: BTreeMap<u8, HashMap<u128, Route>> = BTreeMap::new();

        for (index, raw) in entries.iter().enumerate() {
            let pointer = format!("/{FIELD}/{index}");
            let entry = match parse_entry(raw) {
                Ok(entry) => entry,
                Err(message) => {
                    violations.push(Violation::new(pointer, message));
                    continue;
                }
            };
            match seen.entry(entry.net) {
                MapEntry::Occupied(earlier) => {
                    let (earlier_index, earlier_included) = *earlier.get();
                    violations.push(Violation::new(
                        pointer,
                        conflict_message(entry.net, earlier_index, earlier_included, entry.included),
                    ));
                }
                MapEntry::Vacant(slot) => {
                    slot.insert((index, entry.included));
                    let route = Route { entry: texts.len(), included: entry.included };
                    let (table, bits, width) = match entry.net.addr() {
                        IpAddr::V4(addr) => (&mut v4, u128::from(u32::from(addr)), 32),
                        IpAddr::V6(addr) => (&mut v6, u128::from(addr), 128),
                    };
                    let len = entry.net.prefix_len();
                    table.entry(len).or_default().insert(route_key(bits, width, len), route);
                    texts.push(entry.text());
                    has_positive |= entry.included;
                }
            }
        }

        if !violations.is_empty() {
            return Err(violations);
        }
        Ok(ClientRules {
            entries: texts,
            v4: PrefixTable { by_length: v4.into_iter().rev().collect() },
            v6: PrefixTable { by_length: v6.into_iter().rev().collect() },
            has_positive,
        })
    }

    /// Normalised entries in the order given, e.g. `"192.0.2.7"`, `"!2001:db8::/32"`.
    pub fn entries(&self) -> &[String] {
        &self.entries
    }

    pub fn has_positive_entry(&self) -> bool {
        self.has_positive
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Decides one connecting peer. The longest matching prefix wins whatever the order;
    /// with no positive entry the blank-field rules of ARCHITECTURE §4 give the base
    /// (`domains_configured`: the destination-domain list has at least one entry;
    /// `sensor_network`: the network of the worker's interface that took the connection),
    /// and exclusions still apply on top of it.
    pub fn evaluate(&self, peer: IpAddr, domains_configured: bool, sensor_network: Option<IpNet>) -> ClientDecision {
        // A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d; they are IPv4 peers.
        let peer = peer.to_canonical();
        if let Some(route) = self.lookup(peer) {
            return ClientDecision {
                allowed: route.included,
                matched_entry: self.entries.get(route.entry).cloned(),
                rule: ClientRule::Entry,
            };
        }
        let (allowed, rule) = if self.has_positive {
            (false, ClientRule::NoMatchingEntry)
        } else if domains_configured {
            (true, ClientRule::AnyClientBecauseDomainsSet)
        } else if sensor_network.map(canonical_network).is_some_and(|net| net.contains(&peer)) {
            (true, ClientRule::SensorSubnet)
        } else {
            (false, ClientRule::OutsideSensorSubnet)
        };
        ClientDecision { allowed, matched_entry: None, rule }
    }

    fn lookup(&self, peer: IpAddr) -> Option<Route> {
        let (table, bits, width) = match peer {
            IpAddr::V4(addr) => (&self.v4, u128::from(u32::from(addr)), 32),
            IpAddr::V6(addr) => (&self.v6, u128::from(addr), 128),
        };
        table.by_length.iter().find_map(|(len, routes)| routes.get(&route_key(bits, width, *len)).copied())
    }
}

/// The network bits of an address, shifted down so equal networks give equal keys.
fn route_key(bits: u128, width: u8, prefix_len: u8) -> u128 {
    bits.checked_shr(u32::from(width.saturating_sub(prefix_len))).unwrap_or(0)
}

/// An IPv4-mapped IPv6 network (`::ffff:0:0/96` and inside) as the IPv4 network it means,
/// so a dual-stack worker's interface network compares with canonical peers.
fn canonical_network(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net
        && let Some(v4) = v6.addr().to_ipv4_mapped()
        && let Some(len) = v6.prefix_len().checked_sub(96)
        && let Ok(mapped) = Ipv4Net::new(v4, len)
    {
        return IpNet::V4(mapped.trunc());
    }
    net
}

fn conflict_message(net: IpNet, earlier_index: usize, earlier_included: bool, included: bool) -> String {
    if earlier_included == included {
        format!("duplicates entry {earlier_index}: both mean {net}; remove one")
    } else if earlier_included {
        format!("{net} is included by entry {earlier_index} and excluded here; keep one of them")
    } else {
        format!("{net} is excluded by entry {earlier_index} and included here; keep one of them")
    }
}

/// Parses `[!]address[/prefix]`; `Err` is the message for a 422.
fn parse_entry(raw: &str) -> Result<ClientEntry, String> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err("empty entry; write an IP address or network such as \"192.0.2.0/24\", or remove the entry".into());
    }
    let (included, body) = match trimmed.strip_prefix('!') {
        Some(rest) => (false, rest.trim()),
        None => (true, trimmed),
    };
    let sign = if included { "" } else { "!" };
    if body.is_empty() {
        return Err("\"!\" must be followed by the address or network to exclude, e.g. \"!192.0.2.7\"".into());
    }
    if body.starts_with('!') {
        return Err("only one \"!\" is allowed, at the start of the entry".into());
    }
    if body.contains(['[', ']']) {
        return Err(bracket_message(body, sign));
    }
    if body.chars().any(char::is_whitespace) {
        return Err("spaces are not allowed in an address or network".into());
    }

    let (addr_text, len_text) = match body.split_once('/') {
        Some((addr, len)) => (addr, Some(len)),
        None => (body, None),
    };
    if addr_text.is_empty() {
        return Err("missing the address before \"/\", e.g. \"192.0.2.0/24\"".into());
    }
    let addr = parse_address(addr_text, sign)?;
    let max_len: u8 = if addr.is_ipv4() { 32 } else { 128 };
    let prefix_len = match len_text {
        None => None,
        Some(text) => Some(parse_prefix_len(text, addr.is_ipv4(), max_len)?),
    };

    if let IpAddr::V6(v6) = addr
        && let Some(v4) = v6.to_ipv4_mapped()
    {
        let mapped_len = prefix_len.map_or(Some(32), |len| len.checked_sub(96));
        if let Some(v4_len) = mapped_len {
            return Err(mapped_message(v4, v4_len, prefix_len.is_none(), sign));
        }
    }

    let net =
        IpNet::new(addr, prefix_len.unwrap_or(max_len)).map_err(|_| String::from("prefix length is out of range"))?;
    if net.trunc() != net {
        return Err(format!("host bits set; did you mean {sign}{}?", net.trunc()));
    }
    Ok(ClientEntry { net, bare: prefix_len.is_none(), included })
}

fn parse_address(text: &str, sign: &str) -> Result<IpAddr, String> {
    if let Ok(addr) = text.parse::<IpAddr>() {
        return Ok(addr);
    }
    if let Some((host, port)) = text.split_once(':')
        && !port.contains(':')
        && let Ok(v4) = host.parse::<Ipv4Addr>()
    {
        return Err(format!(
            "ports are not allowed (\":{}\"); write \"{sign}{v4}\"",
            port.chars().take(8).collect::<String>()
        ));
    }
    if let Some((host, _zone)) = text.split_once('%')
        && let Ok(v6) = host.parse::<Ipv6Addr>()
    {
        return Err(format!("IPv6 zone indexes are not allowed; write \"{sign}{v6}\""));
    }
    if text.contains(':') {
        return Err(format!("{} is not a valid IPv6 address", quote(text)));
    }
    if text.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(format!(
            "{} is not a valid IPv4 address: write four numbers 0–255 separated by dots, without leading zeros",
            quote(text)
        ));
    }
    if text.chars().any(char::is_alphabetic) {
        return Err("host names are not allowed; write an IP address or a network in CIDR notation".into());
    }
    Err(format!("{} is not an IP address or a network in CIDR notation", quote(text)))
}

fn parse_prefix_len(text: &str, is_ipv4: bool, max_len: u8) -> Result<u8, String> {
    let family = if is_ipv4 { "IPv4" } else { "IPv6" };
    if text.is_empty() {
        return Err("missing the prefix length after \"/\", e.g. \"/24\"".into());
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("prefix length {} must be a whole number from 0 to {max_len} for {family}", quote(text)));
    }
    match text.parse::<u8>() {
        Ok(len) if len <= max_len => Ok(len),
        _ => Err(format!(
            "prefix length {} is out of range for {family} (0–{max_len})",
            text.trim_start_matches('0').chars().take(12).collect::<String>()
        )),
    }
}

/// Mapped entries are refused rather than rewritten: peers arrive canonicalised to IPv4,
/// so the entry could only ever match as its IPv4 twin, and saying so is clearer than
/// storing something other than what the administrator typed.
fn mapped_message(v4: Ipv4Addr, v4_len: u8, bare: bool, sign: &str) -> String {
    let suggestion = if bare {
        v4.to_string()
    } else {
        Ipv4Net::new(v4, v4_len).map(|net| net.trunc().to_string()).unwrap_or_else(|_| v4.to_string())
    };
    format!(
        "IPv4-mapped IPv6 addresses are not accepted: peers connecting as ::ffff:a.b.c.d are matched as IPv4; write \"{sign}{suggestion}\""
    )
}

fn bracket_message(body: &str, sign: &str) -> String {
    let inner = body
        .strip_prefix('[')
        .and_then(|rest| rest.split_once(']'))
        .and_then(|(inside, after)| Some((inside.parse::<IpAddr>().ok()?, after)));
    match inner {
        Some((addr, after)) if after.starts_with(':') => {
            format!("brackets and ports are not allowed; write \"{sign}{addr}\"")
        }
        Some((addr, after)) if after.is_empty() || (after.len() <= 4 && after.starts_with('/')) => {
            format!("brackets are not allowed; write \"{sign}{addr}{after}\"")
        }
        _ => "brackets are not allowed; write the bare address or network, e.g. \"2001:db8::/32\"".into(),
    }
}
