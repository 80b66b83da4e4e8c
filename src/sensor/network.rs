//! The network of the local interface a connection arrived on (for the blank-field rule).
use std::net::IpAddr;

use ipnet::IpNet;

/// `local` with the prefix length of the interface that holds it, or a host route if none does.
pub fn interface_network(local: IpAddr) -> IpNet {
    let local = match local {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    let found = if_addrs::get_if_addrs().ok().and_then(|interfaces| {
        interfaces.into_iter().find(|i| i.ip() == local).and_then(|i| match i.addr {
            if_addrs::IfAddr::V4(a) => ipnet::Ipv4Net::with_netmask(a.ip, a.netmask).ok().map(IpNet::V4),
            if_addrs::IfAddr::V6(a) => ipnet::Ipv6Net::with_netmask(a.ip, a.netmask).ok().map(IpNet::V6),
        })
    });
    found.map(|n| n.trunc()).unwrap_or_else(|| IpNet::from(local))
}
