//! Name resolution under the address guard: a destination's name is resolved here, and only the
//! addresses the guard accepts are connected to — what was checked is what is used.
use std::net::{IpAddr, SocketAddr};

use super::Failure;
use crate::alerts::guard;

/// The addresses of `host:port` the guard lets through (all of them with `allow_private`).
pub(crate) async fn resolve(host: &str, port: u16, allow_private: bool) -> Result<Vec<SocketAddr>, Failure> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let found: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| Failure::failed(format!("cannot resolve {host}: {e}")))?
            .collect(),
    };
    if allow_private {
        return Ok(found);
    }
    let mut refused = None;
    let allowed: Vec<SocketAddr> = found
        .into_iter()
        .filter(|a| match guard::refused(a.ip()) {
            Some(why) => {
                refused.get_or_insert_with(|| guard::refusal(host, a.ip(), why));
                false
            }
            None => true,
        })
        .collect();
    match (allowed.is_empty(), refused) {
        (true, Some(refused)) => Err(Failure::refused(refused)),
        (true, None) => Err(Failure::failed(format!("{host} has no address"))),
        (false, _) => Ok(allowed),
    }
}
