//! A TCP proxy between the app and a dependency, for fault injection where
//! killing or freezing the dependency itself is not the fault wanted (the
//! primary database, shared by the whole test): latency added to
//! everything sent either way, and cuts (every open connection reset at
//! once, new ones refused until healed).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

struct Faults {
    latency_ms: AtomicU64,
    refusing: AtomicBool,
    /// Bumped by each cut; every connection watches it.
    cuts: watch::Sender<u64>,
}

pub struct FaultProxy {
    /// Where the app connects instead of the dependency.
    pub port: u16,
    faults: Arc<Faults>,
    accepting: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a spare port of 127.0.0.1 and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the proxy's port");
        let port = listener.local_addr().expect("a bound address").port();
        let faults = Arc::new(Faults {
            latency_ms: AtomicU64::new(0),
            refusing: AtomicBool::new(false),
            cuts: watch::channel(0).0,
        });
        let accepting = tokio::spawn({
            let faults = faults.clone();
            async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        continue;
                    };
                    if faults.refusing.load(Ordering::SeqCst) {
                        let _ = client.set_zero_linger();
                        continue;
                    }
                    tokio::spawn(forward(client, upstream, faults.clone()));
                }
            }
        });
        Self {
            port,
            faults,
            accepting,
        }
    }

    /// Delays everything sent either way by `latency` from now on (what is
    /// already on its way keeps the delay it had).
    pub fn set_latency(&self, latency: Duration) {
        let millis = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        self.faults.latency_ms.store(millis, Ordering::SeqCst);
    }

    /// Resets every open connection and refuses new ones until [`heal`].
    ///
    /// [`heal`]: Self::heal
    pub fn cut(&self) {
        self.faults.refusing.store(true, Ordering::SeqCst);
        self.faults.cuts.send_modify(|cuts| *cuts += 1);
    }

    /// No latency, connections accepted again.
    pub fn heal(&self) {
        self.faults.latency_ms.store(0, Ordering::SeqCst);
        self.faults.refusing.store(false, Ordering::SeqCst);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accepting.abort();
        self.cut();
    }
}

async fn forward(client: TcpStream, upstream: SocketAddr, faults: Arc<Faults>) {
    let mut cut = faults.cuts.subscribe();
    let Ok(server) = TcpStream::connect(upstream).await else {
        let _ = client.set_zero_linger();
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    // Closing after a cut sends RST, as a dropped network path or a killed
    // peer would, rather than an orderly FIN.
    let _ = client.set_zero_linger();
    let _ = server.set_zero_linger();
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::select! {
        () = async {
            tokio::join!(
                pipe(client_read, server_write, &faults),
                pipe(server_read, client_write, &faults),
            );
        } => {}
        _ = cut.changed() => {}
    }
}

/// Copies `from` to `to`, each chunk delivered the current latency after
/// it was read (reading goes on meanwhile, so latency is not throttling).
async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, faults: &Faults) {
    let (sender, mut receiver) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reading = async move {
        let mut buffer = vec![0_u8; 16 * 1024];
        loop {
            match from.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => {
                    let delay = Duration::from_millis(faults.latency_ms.load(Ordering::SeqCst));
                    if sender
                        .send((Instant::now() + delay, buffer[..read].to_vec()))
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    };
    let writing = async move {
        while let Some((due, chunk)) = receiver.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reading, writing);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server on a spare port.
    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = stream.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        address
    }

    async fn round_trip(stream: &mut TcpStream) -> std::io::Result<Duration> {
        let started = std::time::Instant::now();
        stream.write_all(b"ping").await?;
        let mut answer = [0_u8; 4];
        stream.read_exact(&mut answer).await?;
        assert_eq!(&answer, b"ping");
        Ok(started.elapsed())
    }

    #[tokio::test]
    async fn forwards_delays_cuts_and_heals() {
        let proxy = FaultProxy::start(echo().await).await;
        let address = SocketAddr::from(([127, 0, 0, 1], proxy.port));
        let mut stream = TcpStream::connect(address).await.unwrap();
        assert!(round_trip(&mut stream).await.unwrap() < Duration::from_millis(100));

        // Latency each way: a round trip takes twice as long.
        proxy.set_latency(Duration::from_millis(150));
        let slow = round_trip(&mut stream).await.unwrap();
        assert!(slow >= Duration::from_millis(300), "{slow:?}");

        // A cut resets the open connection and refuses new ones.
        proxy.cut();
        assert!(round_trip(&mut stream).await.is_err());
        let mut refused = TcpStream::connect(address).await.unwrap();
        assert!(round_trip(&mut refused).await.is_err());

        proxy.heal();
        let mut again = TcpStream::connect(address).await.unwrap();
        assert!(round_trip(&mut again).await.unwrap() < Duration::from_millis(100));
    }
}
