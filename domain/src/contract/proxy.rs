//! A switchable TCP proxy for outage tests: adapters' tests put it between a
//! store and its real server, then cut it mid-way. The server itself keeps
//! running for other tests; only this store loses it.

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A TCP proxy to a `host:port` that can be switched off: then it closes
/// every open connection (drivers keep them pooled) and closes new ones at
/// once, like a server that went away.
#[derive(Debug)]
pub struct Proxy {
    /// `127.0.0.1:port` of the proxy.
    pub addr: String,
    up: watch::Sender<bool>,
}

impl Proxy {
    /// Starts passing connections to `target` (`host:port`).
    pub async fn start(target: &str) -> Proxy {
        let target = target.to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let addr = listener.local_addr().expect("bound").to_string();
        let (up, watching) = watch::channel(true);
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut down = watching.clone();
                if !*down.borrow() {
                    continue; // dropped: the connection is closed at once
                }
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = down.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Proxy { addr, up }
    }

    /// Cuts (`false`) or restores (`true`) the way to the server.
    pub fn set(&self, up: bool) {
        self.up.send_replace(up);
    }
}

/// The `host:port` of a server URL (`scheme://user:pass@host:port/path?q`).
pub fn host_port(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.split(['/', '?']).next().unwrap_or(rest);
    rest.rsplit_once('@').map_or(rest, |(_, host)| host)
}

/// `url` with its `host:port` replaced by `addr` (credentials, path and
/// query kept): the same server, reached through a [`Proxy`].
pub fn through(url: &str, addr: &str) -> String {
    let host = host_port(url);
    url.replacen(host, addr, 1)
}
