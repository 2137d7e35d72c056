//! The listening socket every Starling HTTP server binds.

use std::net::SocketAddr;

use tokio::net::TcpListener;

/// Connections the kernel completes and queues for `accept` at most. The
/// standard library's 128 overflowed when a few hundred clients connected
/// at once (a load balancer warming its pool, clients reconnecting after a
/// restart): the kernel then drops their SYNs and each waits out TCP's 1 s
/// retransmission. Linux caps this at `net.core.somaxconn` (4096 by
/// default since 5.4), as nginx and Go servers rely on too.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds `address` for serving, with room for [`LISTEN_BACKLOG`] connections
/// waiting to be accepted.
pub fn listen(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As the standard library does: a restarted server binds again while
    // the old one's connections linger in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::listen;

    #[tokio::test]
    async fn a_burst_of_connections_waits_in_the_queue_instead_of_being_dropped() {
        let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let address = listener.local_addr().unwrap();
        // Nothing accepts, as while every worker is busy: each connection
        // must still complete and wait to be accepted. One the kernel
        // dropped would retry its SYN only after a second.
        let connects = (0..400).map(|_| {
            tokio::time::timeout(
                Duration::from_millis(500),
                tokio::net::TcpStream::connect(address),
            )
        });
        let outcomes = futures::future::join_all(connects).await;
        let completed = outcomes
            .iter()
            .filter(|outcome| matches!(outcome, Ok(Ok(_))))
            .count();
        assert_eq!(completed, 400, "connections dropped by a full listen queue");
    }
}
