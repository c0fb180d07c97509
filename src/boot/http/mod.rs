//! The built-in HTTP/1.1 boot server (std only: `std::net` and threads).
//!
//! Serves the boot tree to iPXE, dracut's livenet (curl) and busybox wget:
//!
//! * a [`DynamicHandler`] is asked first for every request (the core answers
//!   `/boot.ipxe`, per-node scripts and `/health` there); when it returns
//!   `None` the static file handler runs;
//! * static files: `GET` and `HEAD`; one byte range per request
//!   (`bytes=a-b`, `a-`, `-n`) answered with `206` and `Content-Range`;
//!   **a multi-range request is answered `200` with the whole file** (allowed
//!   by RFC 9110, which lets a server ignore `Range`), a syntactically invalid
//!   `Range` likewise; an unsatisfiable one gets `416` with
//!   `Content-Range: bytes */SIZE`; `If-Range`, `If-None-Match` and
//!   `If-Modified-Since` (exact match of our validators) are honoured;
//! * bodies are sent with `sendfile(2)` (nix) from the file to the socket
//!   (a buffered copy where the kernel refuses it): no user-space buffer, memory
//!   per connection is the thread stack plus an 8 KiB request buffer;
//! * keep-alive is the HTTP/1.1 default (`Connection: close` honoured,
//!   HTTP/1.0 keep-alive on request); requests with a body are answered and
//!   the connection closed.
//!
//! Safety rules for static files, in this order:
//! 1. `%2f`, `%5c` (encoded slash or backslash), a backslash, or a `..`
//!    segment (also `%2e%2e`) -> **403**; a NUL byte or a bad `%` escape -> 400;
//! 2. hidden files -> **404** (their existence is not revealed): any path
//!    segment starting with `.`, any segment named `image_data.yml` or ending
//!    in `.tmp`, the root-relative paths of [`ServerConfig::deny_paths`]
//!    (a directory hides everything below it), names matching a glob of
//!    [`ServerConfig::deny_names`], and whatever [`ServerConfig::deny`]
//!    returns `true` for;
//! 3. the file is opened with `openat2(2)` from a descriptor of the root,
//!    `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`: the kernel refuses any step
//!    out of the tree (a symlink leaving it -> **403**) in the same call that
//!    opens, so no rename between a check and the open can swap a symlink in;
//!    the path the descriptor really names (`/proc/self/fd`) is checked
//!    against rule 2 again (a symlink to a hidden file). Where the kernel has
//!    no `openat2` (ENOSYS, Linux < 5.6) the path is resolved with
//!    `canonicalize`, checked to be inside the root and opened `O_NOFOLLOW`;
//! 4. directories and non-regular files -> 404 (no listings).
//!
//! Validators: the `ETag` is strong, `"INODE-SIZE-MTIME_NS"` (hex): a new
//! generation (a new file renamed in place) never shares it, so a resume with
//! `If-Range` across generations gets the whole new file (`200`) instead of
//! a splice of two.
//!
//! Limits: request head (request line and headers) at most 8 KiB (`414` when
//! the request line alone does not fit, `431` otherwise), at most 100 header
//! lines; the whole head must arrive within [`ServerConfig::header_timeout`]
//! (slowloris) or the client gets `408`; idle keep-alive connections are
//! closed after [`ServerConfig::idle_timeout`]; a write blocked longer than
//! [`ServerConfig::write_timeout`] drops the connection. At most
//! [`ServerConfig::max_connections`] connections are served at once (one
//! thread each); the next ones get `503` with `Retry-After` (up to 64 such
//! refusals at once, beyond that the connection is simply closed).
//!
//! Every request is logged through `tracing` at `info` level (target
//! `disklessset::http`): peer, method, path, status, bytes, ms.
//!
//! Files:
//! * `mod.rs`: settings, errors, the public types, [`bind`] / [`serve`],
//!   the accept loop, connection dispatch and limits, the per-connection
//!   request loop and logging;
//! * `request.rs`: request-head parsing, the [`Request`] built from it
//!   (percent decoding, query), keep-alive;
//! * `files.rs`: static files: the safety and hiding rules, `Range`,
//!   validators (`ETag`, `304`), body sending (`sendfile(2)` or a buffered
//!   copy);
//! * `response.rs`: status lines, headers, generated responses, HTTP dates;
//! * `tests.rs`: the tests (including the 200-client load test).

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

mod files;
mod request;
mod response;
#[cfg(test)]
mod tests;

use files::{resolve_static, serve_file};
use nix::fcntl::OFlag;
use request::{build_request, find_head_end, parse_head, wants_keep_alive, Head, HeadError};
use response::{error_response, http_date, write_response};

/// Largest request head (request line + headers) accepted.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Most header lines accepted in one request.
pub const MAX_HEADERS: usize = 100;
/// Descriptors kept aside beyond two per connection (listener, logs, ...).
const SPARE_FDS: u64 = 64;
/// Connections beyond `max_connections` answered 503 at the same time.
const MAX_REFUSERS: usize = 64;
const LOG_TARGET: &str = "disklessset::http";

/// Callback hiding files: gets the root-relative path (`images/x/file`,
/// `/`-separated, no leading slash), returns `true` to answer 404.
pub type DenyFn = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Server settings. Build with [`ServerConfig::new`] and adjust the fields.
#[derive(Clone)]
pub struct ServerConfig {
    /// The boot tree served (must exist and be a directory).
    pub root: PathBuf,
    /// Address to listen on (port 0 picks a free port, see [`Server::local_addr`]).
    pub listen: SocketAddr,
    /// Connections served at once; further ones get 503.
    pub max_connections: usize,
    /// Time allowed for a whole request head, from its first byte (and for
    /// the first request, from the connection).
    pub header_timeout: Duration,
    /// Time an idle keep-alive connection is kept open.
    pub idle_timeout: Duration,
    /// Time one blocked write may take before the connection is dropped.
    pub write_timeout: Duration,
    /// Requests served on one connection before it is closed.
    pub max_requests_per_connection: usize,
    /// Root-relative paths never served (a directory hides its content).
    pub deny_paths: Vec<String>,
    /// File-name globs (`*`, `?`) never served, matched on every path segment.
    pub deny_names: Vec<String>,
    /// Extra callback hiding files (see [`DenyFn`]).
    pub deny: Option<DenyFn>,
    /// How long [`Server::run`] waits for open connections after shutdown.
    pub shutdown_grace: Duration,
    /// Send file bodies with `sendfile(2)` (default); `false` copies through
    /// a 64 KiB buffer.
    pub zero_copy: bool,
}

impl ServerConfig {
    /// Defaults: 10000 connections, 10 s for a request head, 30 s idle,
    /// 60 s per write, 1000 requests per connection, 5 s shutdown grace.
    pub fn new(root: impl Into<PathBuf>, listen: SocketAddr) -> Self {
        ServerConfig {
            root: root.into(),
            listen,
            max_connections: crate::config::DEFAULT_MAX_CONNECTIONS,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(60),
            max_requests_per_connection: 1000,
            deny_paths: Vec::new(),
            deny_names: Vec::new(),
            deny: None,
            shutdown_grace: Duration::from_secs(5),
            zero_copy: true,
        }
    }
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("root", &self.root)
            .field("listen", &self.listen)
            .field("max_connections", &self.max_connections)
            .field("header_timeout", &self.header_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("write_timeout", &self.write_timeout)
            .field(
                "max_requests_per_connection",
                &self.max_requests_per_connection,
            )
            .field("deny_paths", &self.deny_paths)
            .field("deny_names", &self.deny_names)
            .field("deny", &self.deny.as_ref().map(|_| "<callback>"))
            .field("shutdown_grace", &self.shutdown_grace)
            .field("zero_copy", &self.zero_copy)
            .finish()
    }
}

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot listen on {addr}: {source} (is the port in use, or privileged?)")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("boot tree root {}: {source}", path.display())]
    Root {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("boot tree root {} is not a directory", path.display())]
    RootNotDir { path: PathBuf },
    #[error("invalid HTTP server setting: {0}")]
    Config(String),
    #[error("HTTP server on {addr}: {source}")]
    Io {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
}

/// HTTP version of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// A parsed request, as the [`DynamicHandler`] sees it.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `HEAD`, ... (as sent, case-sensitive).
    pub method: String,
    /// Percent-decoded path, starting with `/`, without the query.
    pub path: String,
    /// The request target's path as sent (not decoded).
    pub raw_path: String,
    /// Decoded query parameters in order (`+` is a space).
    pub query: Vec<(String, String)>,
    /// The `Host` header, if any.
    pub host: Option<String>,
    /// The client's address.
    pub peer: SocketAddr,
    /// HTTP version.
    pub version: Version,
    /// All headers, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// The request body: read only when the handler's [`DynamicHandler::body_limit`]
    /// accepts one for this request (else empty).
    pub body: Vec<u8>,
}

impl Request {
    /// First value of a query parameter.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// First value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A generated response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
    /// Extra headers (`Content-Length`, `Connection` and `Date` are set by
    /// the server).
    pub headers: Vec<(String, String)>,
}

impl Response {
    pub fn new(status: u16, content_type: impl Into<String>, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            content_type: content_type.into(),
            body: body.into(),
            headers: Vec::new(),
        }
    }

    /// A `text/plain; charset=utf-8` response.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Response::new(
            status,
            "text/plain; charset=utf-8",
            body.into().into_bytes(),
        )
    }

    /// Add a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// Generated content, asked before the static files.
pub trait DynamicHandler: Send + Sync {
    /// Answer the request, or `None` to let the static file handler run.
    fn handle(&self, req: &Request) -> Option<Response>;

    /// The largest body this handler reads for `req` (its head only: `body` is empty
    /// here). `None` (the default): bodies are never read, the connection is closed
    /// after the answer. A body beyond the limit gets `413`, a chunked one `411`, one
    /// that does not arrive within the header timeout `408`.
    fn body_limit(&self, _req: &Request) -> Option<usize> {
        None
    }
}

/// A [`DynamicHandler`] that never answers (static files only).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoDynamic;

impl DynamicHandler for NoDynamic {
    fn handle(&self, _req: &Request) -> Option<Response> {
        None
    }
}

/// Counters, readable while the server runs.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Connections being served now.
    pub active: AtomicUsize,
    /// Connections accepted since start (served or refused).
    pub accepted: AtomicU64,
    /// Connections refused with 503 or dropped because of the limit.
    pub refused: AtomicU64,
    /// Requests answered.
    pub requests: AtomicU64,
    /// Body bytes sent.
    pub bytes: AtomicU64,
}

/// A bound server, not yet accepting (see [`bind`]).
pub struct Server {
    listener: TcpListener,
    addr: SocketAddr,
    cfg: ServerConfig,
    root: PathBuf,
    root_fd: Option<OwnedFd>,
    dynamic: Arc<dyn DynamicHandler>,
    stats: Arc<ServerStats>,
}

struct Shared {
    cfg: ServerConfig,
    root: PathBuf,
    /// The root opened `O_PATH`, the base of every `openat2`.
    root_fd: Option<OwnedFd>,
    dynamic: Arc<dyn DynamicHandler>,
    shutdown: Arc<AtomicBool>,
    stats: Arc<ServerStats>,
    refusers: AtomicUsize,
}

/// Bind the listening socket and check the root; nothing is served until
/// [`Server::run`].
pub fn bind(cfg: ServerConfig, dynamic: Arc<dyn DynamicHandler>) -> Result<Server, HttpError> {
    if cfg.max_connections == 0 {
        return Err(HttpError::Config(
            "max_connections must be at least 1".into(),
        ));
    }
    if cfg.max_requests_per_connection == 0 {
        return Err(HttpError::Config(
            "max_requests_per_connection must be at least 1".into(),
        ));
    }
    let root = cfg.root.canonicalize().map_err(|source| HttpError::Root {
        path: cfg.root.clone(),
        source,
    })?;
    if !root.is_dir() {
        return Err(HttpError::RootNotDir {
            path: cfg.root.clone(),
        });
    }
    let root_fd = nix::fcntl::open(
        &root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ok();
    // two descriptors per connection (socket, file) and some spare
    let want = (cfg.max_connections as u64)
        .saturating_mul(2)
        .saturating_add(SPARE_FDS);
    match crate::sys::proc::raise_nofile_limit() {
        Some(limit) if limit < want => {
            tracing::warn!(target: LOG_TARGET, limit, max_connections = cfg.max_connections,
                "the open-files limit is below two per connection: raise it (ulimit -Hn, LimitNOFILE=) or lower max_connections");
        }
        _ => {}
    }
    let listener = TcpListener::bind(cfg.listen).map_err(|source| HttpError::Bind {
        addr: cfg.listen,
        source,
    })?;
    let addr = listener.local_addr().map_err(|source| HttpError::Bind {
        addr: cfg.listen,
        source,
    })?;
    Ok(Server {
        listener,
        addr,
        cfg,
        root,
        root_fd,
        dynamic,
        stats: Arc::new(ServerStats::default()),
    })
}

/// Bind and serve until `shutdown` becomes true.
pub fn serve(
    cfg: ServerConfig,
    dynamic: Arc<dyn DynamicHandler>,
    shutdown: Arc<AtomicBool>,
) -> Result<(), HttpError> {
    bind(cfg, dynamic)?.run(shutdown)
}

impl Server {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Live counters.
    pub fn stats(&self) -> Arc<ServerStats> {
        Arc::clone(&self.stats)
    }

    /// Accept and serve until `shutdown` becomes true (checked every few
    /// milliseconds), then wait up to `shutdown_grace` for open connections.
    pub fn run(self, shutdown: Arc<AtomicBool>) -> Result<(), HttpError> {
        let Server {
            listener,
            addr,
            cfg,
            root,
            root_fd,
            dynamic,
            stats,
        } = self;
        // the connections watch the same flag
        let shared = Arc::new(Shared {
            cfg,
            root,
            root_fd,
            dynamic,
            shutdown: Arc::clone(&shutdown),
            stats,
            refusers: AtomicUsize::new(0),
        });
        listener
            .set_nonblocking(true)
            .map_err(|source| HttpError::Io { addr, source })?;
        tracing::info!(target: LOG_TARGET, %addr, root = %shared.root.display(), "HTTP boot server listening");
        while !shutdown.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((stream, peer)) => {
                    shared.stats.accepted.fetch_add(1, Ordering::Relaxed);
                    dispatch(stream, peer, &shared);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    thread::sleep(Duration::from_millis(5));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and friends: keep serving the open connections
                    tracing::warn!(target: LOG_TARGET, error = %e, "accept failed");
                    thread::sleep(Duration::from_millis(50));
                }
            }
        }
        drop(listener);
        let deadline = Instant::now() + shared.cfg.shutdown_grace;
        while shared.stats.active.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        tracing::info!(target: LOG_TARGET, %addr, "HTTP boot server stopped");
        Ok(())
    }
}

/// Decrements a counter when dropped (also on panic).
struct CountGuard<'a>(&'a AtomicUsize);

impl Drop for CountGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn dispatch(stream: TcpStream, peer: SocketAddr, shared: &Arc<Shared>) {
    let _ = stream.set_nonblocking(false);
    let active = shared.stats.active.fetch_add(1, Ordering::AcqRel);
    if active < shared.cfg.max_connections {
        let sh = Arc::clone(shared);
        let spawned = thread::Builder::new()
            .name("http-conn".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                let _guard = CountGuard(&sh.stats.active);
                handle_connection(stream, peer, &sh);
            });
        if let Err(e) = spawned {
            shared.stats.active.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!(target: LOG_TARGET, error = %e, "cannot start a connection thread");
        }
        return;
    }
    shared.stats.active.fetch_sub(1, Ordering::AcqRel);
    shared.stats.refused.fetch_add(1, Ordering::Relaxed);
    if shared.refusers.fetch_add(1, Ordering::AcqRel) >= MAX_REFUSERS {
        shared.refusers.fetch_sub(1, Ordering::AcqRel);
        tracing::warn!(target: LOG_TARGET, %peer, "connection dropped: server overloaded");
        return;
    }
    let sh = Arc::clone(shared);
    let spawned = thread::Builder::new()
        .name("http-refuse".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let _guard = CountGuard(&sh.refusers);
            refuse(stream, peer);
        });
    if spawned.is_err() {
        shared.refusers.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Answer 503 to a connection over the limit: read what the client sent
/// (so closing does not reset the connection before it reads the answer).
fn refuse(mut stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 2048];
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_millis(500);
    while Instant::now() < deadline && seen.len() < MAX_HEAD_BYTES {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                seen.extend_from_slice(&buf[..n]);
                if find_head_end(&seen).is_some() {
                    break;
                }
            }
        }
    }
    let body = b"503 Service Unavailable: too many connections, retry\n";
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\nDate: {}\r\nServer: disklessset\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n",
        http_date(SystemTime::now()),
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
    let _ = stream.shutdown(Shutdown::Write);
    tracing::info!(target: LOG_TARGET, %peer, status = 503, "too many connections");
}

// ---------------------------------------------------------------------------
// Connection handling

struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    buf: Vec<u8>,
}

impl Conn {
    /// Read one request head. `Ok(None)`: the client closed or stayed idle.
    fn read_head(&mut self, first: bool, shared: &Shared) -> Result<Option<Head>, HeadError> {
        let cfg = &shared.cfg;
        let started = Instant::now();
        let mut head_deadline = if first {
            Some(started + cfg.header_timeout)
        } else {
            None
        };
        let idle_deadline = started + cfg.idle_timeout;
        let mut chunk = [0u8; 4096];
        loop {
            // skip empty lines before a request line (RFC 9112 2.2)
            let lead = self
                .buf
                .iter()
                .take_while(|b| **b == b'\r' || **b == b'\n')
                .count();
            if lead > 0 {
                self.buf.drain(..lead);
            }
            if let Some((end, drain)) = find_head_end(&self.buf) {
                let parsed = parse_head(&self.buf[..end]);
                self.buf.drain(..drain);
                return parsed.map(Some);
            }
            if self.buf.len() >= MAX_HEAD_BYTES {
                let line_done = self.buf.contains(&b'\n');
                return Err(HeadError::Status(if line_done { 431 } else { 414 }));
            }
            if !self.buf.is_empty() && head_deadline.is_none() {
                head_deadline = Some(Instant::now() + cfg.header_timeout);
            }
            let deadline = head_deadline.unwrap_or(idle_deadline);
            let now = Instant::now();
            if now >= deadline {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(HeadError::Status(408))
                };
            }
            if self.buf.is_empty() && shared.shutdown.load(Ordering::Relaxed) {
                return Ok(None);
            }
            // wake up regularly to notice a shutdown
            let wait = (deadline - now).min(Duration::from_millis(500));
            if self
                .stream
                .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
                .is_err()
            {
                return Err(HeadError::Close);
            }
            let room = (MAX_HEAD_BYTES + 2 - self.buf.len()).min(chunk.len());
            match self.stream.read(&mut chunk[..room]) {
                Ok(0) => return Ok(None),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(_) => return Err(HeadError::Close),
            }
        }
    }
}

fn handle_connection(stream: TcpStream, peer: SocketAddr, shared: &Shared) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(shared.cfg.write_timeout));
    let mut conn = Conn {
        stream,
        peer,
        buf: Vec::with_capacity(1024),
    };
    let mut served = 0usize;
    loop {
        let head = match conn.read_head(served == 0, shared) {
            Ok(Some(h)) => h,
            Ok(None) | Err(HeadError::Close) => break,
            Err(HeadError::Status(code)) => {
                let started = Instant::now();
                let resp = error_response(code);
                let sent = write_response(&mut conn.stream, &resp, false, false).unwrap_or(0);
                log_request(peer, "-", "-", code, sent, started);
                shared.stats.requests.fetch_add(1, Ordering::Relaxed);
                break;
            }
        };
        served += 1;
        let started = Instant::now();
        let outcome = process(&mut conn, &head, shared);
        shared.stats.requests.fetch_add(1, Ordering::Relaxed);
        shared
            .stats
            .bytes
            .fetch_add(outcome.bytes, Ordering::Relaxed);
        log_request(
            peer,
            &head.method,
            &head.target,
            outcome.status,
            outcome.bytes,
            started,
        );
        if !outcome.keep_alive
            || served >= shared.cfg.max_requests_per_connection
            || shared.shutdown.load(Ordering::Relaxed)
        {
            break;
        }
    }
    let _ = conn.stream.shutdown(Shutdown::Write);
    // let the client read the last answer before the socket goes away
    drain_briefly(&mut conn.stream);
}

/// Read (and discard) what the client still sends for a short while, so
/// closing does not turn into a reset that destroys the last response.
fn drain_briefly(stream: &mut TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + Duration::from_millis(500);
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

fn log_request(
    peer: SocketAddr,
    method: &str,
    path: &str,
    status: u16,
    bytes: u64,
    started: Instant,
) {
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    tracing::info!(
        target: LOG_TARGET,
        %peer,
        method,
        path,
        status,
        bytes,
        ms = format_args!("{ms:.1}"),
    );
}

/// Reads a `Content-Length` body of at most `limit` bytes (what the head read left in
/// the buffer first), all of it within `timeout`. Err: the status to answer.
fn read_body(
    conn: &mut Conn,
    head: &Head,
    limit: usize,
    timeout: Duration,
) -> Result<Vec<u8>, u16> {
    if head.header("transfer-encoding").is_some() {
        return Err(411);
    }
    let len: usize = head
        .header("content-length")
        .and_then(|v| v.trim().parse().ok())
        .ok_or(400u16)?;
    if len > limit {
        return Err(413);
    }
    let mut body: Vec<u8> = conn.buf.drain(..len.min(conn.buf.len())).collect();
    let deadline = Instant::now() + timeout;
    let mut chunk = [0u8; 8192];
    while body.len() < len {
        let now = Instant::now();
        if now >= deadline {
            return Err(408);
        }
        if conn.stream.set_read_timeout(Some(deadline - now)).is_err() {
            return Err(400);
        }
        let room = (len - body.len()).min(chunk.len());
        match conn.stream.read(&mut chunk[..room]) {
            Ok(0) => return Err(400),
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(408)
            }
            Err(_) => return Err(400),
        }
    }
    Ok(body)
}

struct Outcome {
    status: u16,
    bytes: u64,
    keep_alive: bool,
}

fn process(conn: &mut Conn, head: &Head, shared: &Shared) -> Outcome {
    // A request body is never read: answer, then close the connection.
    let has_body = head.header("transfer-encoding").is_some()
        || head
            .header("content-length")
            .is_some_and(|v| v.trim() != "0");
    let keep_alive = wants_keep_alive(head) && !has_body;
    let head_only = head.method == "HEAD";
    let respond = |conn: &mut Conn, resp: Response, keep: bool| -> Outcome {
        let status = resp.status;
        match write_response(&mut conn.stream, &resp, head_only, keep) {
            Ok(bytes) => Outcome {
                status,
                bytes,
                keep_alive: keep,
            },
            Err(_) => Outcome {
                status,
                bytes: 0,
                keep_alive: false,
            },
        }
    };

    let mut req = match build_request(head, conn.peer) {
        Ok(r) => r,
        Err(code) => return respond(conn, error_response(code), false),
    };
    let mut keep_alive = keep_alive;
    if has_body {
        if let Some(limit) = shared.dynamic.body_limit(&req) {
            match read_body(conn, head, limit, shared.cfg.header_timeout) {
                Ok(body) => {
                    req.body = body;
                    keep_alive = wants_keep_alive(head);
                }
                Err(code) => return respond(conn, error_response(code), false),
            }
        }
    }

    let dynamic = Arc::clone(&shared.dynamic);
    let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| dynamic.handle(&req)));
    match answer {
        Ok(Some(resp)) => return respond(conn, resp, keep_alive),
        Ok(None) => {}
        Err(_) => {
            tracing::error!(target: LOG_TARGET, path = %req.path, "dynamic handler panicked");
            return respond(conn, error_response(500), false);
        }
    }

    if head.method != "GET" && head.method != "HEAD" {
        let resp = error_response(405).with_header("Allow", "GET, HEAD");
        return respond(conn, resp, keep_alive);
    }
    match resolve_static(&req, shared) {
        Ok((file, path)) => serve_file(
            conn,
            head,
            file,
            &path,
            head_only,
            keep_alive,
            shared.cfg.zero_copy,
        ),
        Err(code) => respond(conn, error_response(code), keep_alive),
    }
}
