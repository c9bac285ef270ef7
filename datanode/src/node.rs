//! Bringing a datanode up and down: config, volumes, ports, the namenode handshake,
//! the data-port engine, the IPC and http servers, the namenode actor.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use ringfs_common::conf::Configuration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::{ConfigError, DataNodeConfig};
use crate::context::DataNodeContext;
use crate::engine::{self, EngineError, RunningEngine};
use crate::events::EventSink;
use crate::ipc_service::ClientDatanodeService;
use crate::limits::NAMENODE_RETRY_INTERVAL;
use crate::namenode::{self, DatanodeIdentity, Namenode, NamenodeError};
use crate::store::{BlockStore, StoreError};

/// How long a port held by a previous process is waited for.
const BIND_RETRY_TIMEOUT: Duration = Duration::from_secs(30);
const BIND_RETRY_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum DataNodeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind { what: &'static str, addr: String, source: std::io::Error },
    #[error(transparent)]
    Namenode(#[from] NamenodeError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Where a started datanode can be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyInfo {
    pub xfer: SocketAddr,
    pub ipc: SocketAddr,
    pub http: SocketAddr,
    pub uuid: String,
}

impl ReadyInfo {
    /// The line `ringfs datanode` prints once registered and reported.
    pub fn ready_line(&self) -> String {
        format!("DATANODE READY xfer={} ipc={} http={} uuid={}", self.xfer, self.ipc, self.http, self.uuid)
    }
}

/// A running datanode.
pub struct DataNode {
    pub ctx: Arc<DataNodeContext>,
    pub ready: ReadyInfo,
    engine: Option<RunningEngine>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl DataNode {
    /// Starts everything and returns once registered with the namenode and its first
    /// full block report is sent. Waits for the namenode as long as it takes.
    pub async fn start(conf: &Configuration) -> Result<DataNode, DataNodeError> {
        let config = DataNodeConfig::from_conf(conf)?;
        let (dirs, sync_on_close) = (config.data_dirs.clone(), config.sync_on_close);
        let store = tokio::task::spawn_blocking(move || BlockStore::open(&dirs, sync_on_close))
            .await
            .expect("opening volumes does not panic")?;
        let backlog = config.listen_backlog;
        let xfer = bind(&config.xfer_bind, "data", backlog).await?;
        let ipc = bind(&config.ipc_bind, "ipc", backlog).await?;
        let http = bind(&config.http_bind, "http", backlog).await?;
        let to_tokio = |listener: std::net::TcpListener, what, addr: &str| {
            listener
                .set_nonblocking(true)
                .and_then(|_| tokio::net::TcpListener::from_std(listener))
                .map_err(|source| DataNodeError::Bind { what, addr: addr.to_string(), source })
        };
        let ipc = to_tokio(ipc, "ipc", &config.ipc_bind)?;
        let http = to_tokio(http, "http", &config.http_bind)?;
        let local = |addr: std::io::Result<SocketAddr>, what| {
            addr.map_err(|source| DataNodeError::Bind { what, addr: String::new(), source })
        };
        let (xfer_local, ipc_local, http_local) = (
            local(xfer.local_addr(), "data")?,
            local(ipc.local_addr(), "ipc")?,
            local(http.local_addr(), "http")?,
        );

        let (events, event_rx) = EventSink::channel();
        let ctx = Arc::new(DataNodeContext::new(store, config, events));
        let ip = advertised_ip(xfer_local.ip(), &ctx.config.namenode_addr);
        let identity = DatanodeIdentity {
            ip: ip.to_string(),
            hostname: ctx.config.hostname.clone().unwrap_or_else(|| local_hostname(ip)),
            uuid: ctx.store.datanode_uuid().to_string(),
            xfer_port: xfer_local.port(),
            ipc_port: ipc_local.port(),
            http_port: http_local.port(),
        };
        let _ = ctx.xfer_addr.set(format!("{ip}:{}", xfer_local.port()));
        let (shutdown, mut shutdown_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let service = Arc::new(ClientDatanodeService::new(Arc::clone(&ctx)));
        tasks.push(tokio::spawn(async move {
            if let Err(e) = ringfs_rpc::server::serve(ipc, service).await {
                warn!(error = %e, "datanode IPC server stopped");
            }
        }));
        let http_ctx = Arc::clone(&ctx);
        tasks.push(tokio::spawn(async move {
            if let Err(e) = crate::http::serve(http, http_ctx).await {
                warn!(error = %e, "datanode http server stopped");
            }
        }));

        // The namenode names the block pool; only then can the volumes be loaded and
        // the data port opened. A namenode that answers with errors while it starts is
        // retried; a namespace this storage does not belong to is fatal.
        let mut xfer = Some(xfer);
        let mut engine = None;
        let nn = loop {
            match join_namenode(&ctx, &identity, &mut shutdown_rx, &mut xfer, &mut engine).await {
                Ok(nn) => break nn,
                Err(NamenodeError::Rpc { method, source }) => {
                    warn!(method, error = %source, "namenode handshake failed; retrying");
                    tokio::time::sleep(NAMENODE_RETRY_INTERVAL).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        let engine = engine.expect("the engine starts before registration");
        tasks.push(tokio::spawn(nn.run(event_rx, shutdown_rx)));

        let ready = ReadyInfo {
            xfer: SocketAddr::new(ip, xfer_local.port()),
            ipc: SocketAddr::new(ip, ipc_local.port()),
            http: SocketAddr::new(ip, http_local.port()),
            uuid: ctx.store.datanode_uuid().to_string(),
        };
        info!(engine = engine.info.name, "{}", ready.ready_line());
        Ok(DataNode { ctx, ready, engine: Some(engine), shutdown, tasks })
    }

    /// Has the data-port engine stopped on its own (a fatal error)?
    pub fn engine_failed(&self) -> bool {
        self.engine.as_ref().is_some_and(RunningEngine::is_finished)
    }

    /// Stops the actor, the servers and the engine. Replicas being written stay in
    /// `rbw/`, as after a crash; nothing acknowledged is lost.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks.drain(..) {
            task.abort();
        }
        if let Some(engine) = self.engine.take() {
            let _ = tokio::task::spawn_blocking(move || engine.stop()).await;
        }
        info!("datanode stopped");
    }
}

/// versionRequest, volume scan, data port, registration, first reports. The engine is
/// started once, the first time the block pool is known.
async fn join_namenode(
    ctx: &Arc<DataNodeContext>,
    identity: &DatanodeIdentity,
    shutdown: &mut watch::Receiver<bool>,
    xfer: &mut Option<std::net::TcpListener>,
    engine: &mut Option<RunningEngine>,
) -> Result<Namenode, NamenodeError> {
    let client = namenode::connect_until_up(&ctx.config.namenode_addr, &ctx.config.user, shutdown).await?;
    let namespace = namenode::version_request(&client).await?;
    let ns = namenode::namespace_identity(&namespace);
    let scan_ctx = Arc::clone(ctx);
    tokio::task::spawn_blocking(move || scan_ctx.store.attach_block_pool(&ns))
        .await
        .expect("volume scan does not panic")?;
    if let Some(listener) = xfer.take() {
        *engine =
            Some(engine::start(ctx.config.engine, listener, Arc::clone(ctx)).map_err(NamenodeError::Engine)?);
    }
    let mut nn = Namenode::new(Arc::clone(ctx), identity.clone(), client, namespace);
    nn.register().await?;
    nn.report_all().await?;
    Ok(nn)
}

/// Binds `addr`, waiting out a port still held by a previous process of this datanode:
/// after a crash the kernel may keep its listening socket open for a moment (an
/// io_uring ring tears down asynchronously, holding the socket until it is done).
async fn bind(addr: &str, what: &'static str, backlog: u32) -> Result<std::net::TcpListener, DataNodeError> {
    let deadline = tokio::time::Instant::now() + BIND_RETRY_TIMEOUT;
    loop {
        match listen(addr, backlog) {
            Ok(listener) => return Ok(listener),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(BIND_RETRY_INTERVAL).await;
            }
            Err(source) => return Err(DataNodeError::Bind { what, addr: addr.to_string(), source }),
        }
    }
}

/// A listening socket on `addr` with `backlog` (std's `TcpListener::bind` fixes it at
/// 128, which a burst of client connects overflows).
fn listen(addr: &str, backlog: u32) -> std::io::Result<std::net::TcpListener> {
    use std::net::ToSocketAddrs;
    let mut last_error = None;
    for addr in addr.to_socket_addrs()? {
        let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        let bound = socket.bind(&addr.into()).and_then(|_| socket.listen(backlog as i32));
        match bound {
            Ok(()) => return Ok(socket.into()),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{addr} resolves to no address"))
    }))
}

/// The address to register: the bound one, or (bound to any) the local address of
/// the route to the namenode.
fn advertised_ip(bound: IpAddr, namenode_addr: &str) -> IpAddr {
    if !bound.is_unspecified() {
        return bound;
    }
    let route = || -> Option<IpAddr> {
        let target = namenode_addr.to_socket_addrs().ok()?.next()?;
        let any: SocketAddr = if target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().ok()?;
        let socket = UdpSocket::bind(any).ok()?;
        socket.connect(target).ok()?;
        Some(socket.local_addr().ok()?.ip())
    };
    route().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

fn local_hostname(ip: IpAddr) -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| ip.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertises_the_bound_address_or_the_route_to_the_namenode() {
        let bound: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(advertised_ip(bound, "10.1.1.1:8020"), bound);
        assert_eq!(advertised_ip("0.0.0.0".parse().unwrap(), "127.0.0.1:8020"), bound);
    }
}
