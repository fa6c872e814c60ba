//! `wharf-proxy`: the platform's one front door. Routes `/v2/` to the
//! registry, `/service/`, `/api/` and `/c/` to core and the rest to the
//! portal, refuses `/api/internal/` from outside, terminates TLS, and streams
//! bodies both ways without buffering or size limits.

pub mod body;
pub mod config;
pub mod error;
pub mod forward;
pub mod routes;
pub mod tls;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

pub use config::Config;
use forward::{Conn, Proxy};

/// How long open connections get to finish after shutdown is asked for.
const DRAIN: Duration = Duration::from_secs(30);
const TLS_HANDSHAKE: Duration = Duration::from_secs(10);

/// Serves until `shutdown` resolves. `https` must be given exactly when
/// `config.tls` is set. Tests call this (or the binary) with port 0 listeners.
pub async fn run(
    config: Config,
    http: TcpListener,
    https: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let acceptor = match (&config.tls, &https) {
        (Some(t), Some(_)) => Some(tls::acceptor(t)?),
        (None, None) => None,
        _ => anyhow::bail!("an HTTPS listener needs tls settings, and tls settings a listener"),
    };
    let https_port = match &https {
        Some(l) => Some(config.redirect_port(l.local_addr()?.port())),
        None => None,
    };
    let proxy = Arc::new(Proxy::new(&config, https_port)?);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(config.timeouts.header_read_secs))
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();

    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = http.accept() => {
                let Some((stream, peer)) = accepted_or_pause(accepted).await else { continue };
                let conn = Conn { peer, tls: false };
                let fut = serve(&builder, graceful.watcher(), stream, proxy.clone(), conn);
                tokio::spawn(fut);
            }
            accepted = accept_optional(https.as_ref()) => {
                let Some((stream, peer)) = accepted_or_pause(accepted).await else { continue };
                let acceptor = acceptor.clone().expect("HTTPS listener has an acceptor");
                let (builder, watcher, proxy) = (builder.clone(), graceful.watcher(), proxy.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(TLS_HANDSHAKE, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => serve(&builder, watcher, tls, proxy, Conn { peer, tls: true }).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        }
    }
    drop(http);
    drop(https);
    tracing::info!("shutting down: draining open connections");
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {DRAIN:?}; closing them");
    }
    Ok(())
}

async fn accept_optional(
    listener: Option<&TcpListener>,
) -> std::io::Result<(TcpStream, std::net::SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// An accept error (e.g. out of file descriptors) pauses accepting briefly
/// instead of spinning.
async fn accepted_or_pause(
    accepted: std::io::Result<(TcpStream, std::net::SocketAddr)>,
) -> Option<(TcpStream, std::net::SocketAddr)> {
    match accepted {
        Ok((stream, peer)) => {
            let _ = stream.set_nodelay(true);
            Some((stream, peer))
        }
        Err(e) => {
            tracing::warn!(error = %e, "accept failed");
            tokio::time::sleep(Duration::from_millis(100)).await;
            None
        }
    }
}

fn serve<I>(
    builder: &auto::Builder<TokioExecutor>,
    watcher: Watcher,
    io: I,
    proxy: Arc<Proxy>,
    conn: Conn,
) -> impl Future<Output = ()> + Send + 'static
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| proxy.clone().handle(req, conn));
    let connection = builder.serve_connection(TokioIo::new(io), svc).into_owned();
    let watched = watcher.watch(connection);
    async move {
        if let Err(e) = watched.await {
            tracing::debug!(peer = %conn.peer, error = %e, "connection ended with an error");
        }
    }
}
