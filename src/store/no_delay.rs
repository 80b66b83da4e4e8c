//! TCP_NODELAY on the connections to PostgreSQL, which sqlx (0.9) does not set and offers no
//! option for (libpq always sets it). Without it, a statement larger than one TCP segment (a
//! hand-off's 256 KiB chunk, a batch of verdicts) leaves its last segment waiting for the
//! server's delayed ACK, about 40 ms, before the server even sees the whole statement.
//!
//! sqlx gives a new connection to `after_connect` but not its socket, so the sockets are found by
//! where they lead: every TCP socket of this process connected to the database's address. Setting
//! the option on one that already has it, or on one a moment later closed, changes nothing.
use std::net::SocketAddr;

/// The addresses `url` (a PostgreSQL URL) connects to by TCP; none for a Unix socket or a URL
/// sqlx would not take.
pub async fn database_addresses(url: &str) -> Vec<SocketAddr> {
    let Ok(options) = url.parse::<sea_orm::sqlx::postgres::PgConnectOptions>() else {
        return Vec::new();
    };
    let host = options.get_host().trim_matches(['[', ']']);
    if host.starts_with('/') || options.get_socket().is_some() {
        return Vec::new();
    }
    match tokio::net::lookup_host((host, options.get_port())).await {
        Ok(addresses) => addresses.collect(),
        Err(_) => Vec::new(),
    }
}

/// Sets TCP_NODELAY on every TCP socket of this process connected to one of `peers`.
#[cfg(target_os = "linux")]
pub fn set_to(peers: &[SocketAddr]) {
    use std::os::fd::{BorrowedFd, RawFd};
    if peers.is_empty() {
        return;
    }
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else { return };
    for entry in fds.flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse::<RawFd>().ok()) else { continue };
        let is_socket = std::fs::read_link(entry.path()).is_ok_and(|l| l.to_string_lossy().starts_with("socket:"));
        if !is_socket {
            continue;
        }
        // SAFETY: the descriptor is only asked for its peer and given a socket option; if it was
        // closed (and its number reused) since it was listed, both calls fail or, at worst, set
        // TCP_NODELAY on another connection to the database.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&fd);
        let peer = socket.peer_addr().ok().and_then(|a| a.as_socket());
        if peer.is_some_and(|p| peers.contains(&p)) {
            socket.set_tcp_nodelay(true).ok();
        }
    }
}

#[cfg(not(target_os = "linux"))]
pub fn set_to(_peers: &[SocketAddr]) {}
