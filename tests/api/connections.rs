//! The API's connections to PostgreSQL send a statement the moment it is written (TCP_NODELAY,
//! as libpq always sets): a statement larger than one TCP segment — a hand-off's 256 KiB chunk,
//! a batch of verdicts — must not wait for the server's delayed ACK (about 40 ms on Linux).
use std::os::fd::{BorrowedFd, RawFd};

use sea_orm::{ConnectionTrait, Statement};

use crate::helpers::*;

/// This process's TCP socket whose local port is `port`.
fn socket_with_local_port(port: u16) -> Option<RawFd> {
    std::fs::read_dir("/proc/self/fd").ok()?.flatten().find_map(|entry| {
        let fd: RawFd = entry.file_name().to_str()?.parse().ok()?;
        std::fs::read_link(entry.path()).ok()?.to_string_lossy().starts_with("socket:").then_some(())?;
        // SAFETY: only asked for its address while the pool below holds the connection open.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let local = socket2::SockRef::from(&borrowed).local_addr().ok()?.as_socket()?;
        (local.port() == port).then_some(fd)
    })
}

#[tokio::test]
async fn every_connection_to_postgresql_has_tcp_nodelay() {
    let url = as_api_role(&fresh_database(Backend::Postgres).await);
    let db = mailsensor::store::connect(&url, 4).await.expect("connecting as mailsensor_api");
    // Four statements at once take four connections of the pool, each asked its own port.
    let port_of = || {
        let db = db.clone();
        async move {
            let sql = "SELECT inet_client_port() AS port, pg_sleep(0.2)::text AS slept";
            let row = db.query_one_raw(Statement::from_string(db.get_database_backend(), sql)).await.unwrap().unwrap();
            row.try_get::<i32>("", "port").unwrap() as u16
        }
    };
    let ports = futures_util::future::join_all((0..4).map(|_| port_of())).await;
    let mut distinct = ports.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert!(distinct.len() > 1, "the statements ran on one connection only: {ports:?}");
    for port in distinct {
        let fd =
            socket_with_local_port(port).unwrap_or_else(|| panic!("no socket of this process has local port {port}"));
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        assert!(
            socket2::SockRef::from(&borrowed).tcp_nodelay().unwrap(),
            "the connection from port {port} to PostgreSQL has no TCP_NODELAY"
        );
    }
    db.close().await.unwrap();
}
