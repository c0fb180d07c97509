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
//! * bodies are streamed with `std::io::copy` from the file to the socket,
//!   which Linux's std turns into `sendfile(2)`: no user-space buffer, memory
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
//! 3. the path is resolved with `canonicalize`; a result outside the
//!    (canonical) root -> **403** (a symlink leaving the tree); the resolved
//!    path is checked against rule 2 again (a symlink to a hidden file);
//! 4. directories and non-regular files -> 404 (no listings); the file is
//!    opened with `O_NOFOLLOW`.
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

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Largest request head (request line + headers) accepted.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Most header lines accepted in one request.
pub const MAX_HEADERS: usize = 100;
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
    /// Defaults: 256 connections, 10 s for a request head, 30 s idle,
    /// 60 s per write, 1000 requests per connection, 5 s shutdown grace.
    pub fn new(root: impl Into<PathBuf>, listen: SocketAddr) -> Self {
        ServerConfig {
            root: root.into(),
            listen,
            max_connections: 256,
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
    dynamic: Arc<dyn DynamicHandler>,
    stats: Arc<ServerStats>,
}

struct Shared {
    cfg: ServerConfig,
    root: PathBuf,
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
            dynamic,
            stats,
        } = self;
        // the connections watch the same flag
        let shared = Arc::new(Shared {
            cfg,
            root,
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

struct Head {
    method: String,
    target: String,
    version: Version,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

enum HeadError {
    /// Answer with this status and close.
    Status(u16),
    /// Close silently (client gone, idle timeout, I/O error).
    Close,
}

struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    buf: Vec<u8>,
}

fn find_head_end(buf: &[u8]) -> Option<(usize, usize)> {
    // returns (end of head content, bytes to drain)
    let mut i = 0;
    while i < buf.len() {
        if buf[i] == b'\n' {
            if buf.get(i + 1) == Some(&b'\n') {
                return Some((i, i + 2));
            }
            if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') {
                return Some((i, i + 3));
            }
        }
        i += 1;
    }
    None
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

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn parse_head(raw: &[u8]) -> Result<Head, HeadError> {
    let text = std::str::from_utf8(raw).map_err(|_| HeadError::Status(400))?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = lines.next().ok_or(HeadError::Status(400))?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Status(400));
    };
    if !is_token(method) || target.is_empty() {
        return Err(HeadError::Status(400));
    }
    let version = match version {
        "HTTP/1.1" => Version::Http11,
        "HTTP/1.0" => Version::Http10,
        v if v.starts_with("HTTP/") => return Err(HeadError::Status(505)),
        _ => return Err(HeadError::Status(400)),
    };
    let mut headers = Vec::new();
    for line in lines {
        if headers.len() >= MAX_HEADERS {
            return Err(HeadError::Status(431));
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            return Err(HeadError::Status(400)); // obsolete line folding
        }
        let (name, value) = line.split_once(':').ok_or(HeadError::Status(400))?;
        if !is_token(name) {
            return Err(HeadError::Status(400));
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    Ok(Head {
        method: method.to_string(),
        target: target.to_string(),
        version,
        headers,
    })
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

struct Outcome {
    status: u16,
    bytes: u64,
    keep_alive: bool,
}

fn wants_keep_alive(head: &Head) -> bool {
    match head.version {
        Version::Http11 => !head.has_token("connection", "close"),
        Version::Http10 => head.has_token("connection", "keep-alive"),
    }
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

    let req = match build_request(head, conn.peer) {
        Ok(r) => r,
        Err(code) => return respond(conn, error_response(code), false),
    };

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
        Ok(path) => serve_file(
            conn,
            head,
            &path,
            head_only,
            keep_alive,
            shared.cfg.zero_copy,
        ),
        Err(code) => respond(conn, error_response(code), keep_alive),
    }
}

fn build_request(head: &Head, peer: SocketAddr) -> Result<Request, u16> {
    let mut target = head.target.as_str();
    // absolute-form (proxies): http://host/path
    if let Some(rest) = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
    {
        target = rest.find('/').map_or("/", |i| &rest[i..]);
    }
    if !target.starts_with('/') {
        return Err(400);
    }
    let target = target.split('#').next().unwrap_or(target);
    let (raw_path, raw_query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let path_bytes = percent_decode(raw_path, false).ok_or(400u16)?;
    let path = String::from_utf8(path_bytes).map_err(|_| 400u16)?;
    if path.contains('\0') {
        return Err(400);
    }
    let mut query = Vec::new();
    if let Some(q) = raw_query {
        for pair in q.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = percent_decode(k, true)
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or(400u16)?;
            let v = percent_decode(v, true)
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or(400u16)?;
            query.push((k, v));
        }
    }
    Ok(Request {
        method: head.method.clone(),
        path,
        raw_path: raw_path.to_string(),
        query,
        host: head.header("host").map(str::to_string),
        peer,
        version: head.version,
        headers: head.headers.clone(),
    })
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decode; `None` on a malformed escape.
fn percent_decode(s: &str, plus_is_space: bool) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = hex_val(*bytes.get(i + 1)?)?;
                let lo = hex_val(*bytes.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------
// Static files

/// Simple glob: `*` any run, `?` one character.
fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Whether a root-relative path (segments) is hidden.
fn is_hidden(segments: &[&str], cfg: &ServerConfig) -> bool {
    for seg in segments {
        if seg.starts_with('.') || *seg == "image_data.yml" || seg.ends_with(".tmp") {
            return true;
        }
        if cfg.deny_names.iter().any(|g| glob_match(g, seg)) {
            return true;
        }
    }
    let rel = segments.join("/");
    for denied in &cfg.deny_paths {
        let d = denied.trim_matches('/');
        if d.is_empty() {
            continue;
        }
        if rel == d || (rel.starts_with(d) && rel.as_bytes().get(d.len()) == Some(&b'/')) {
            return true;
        }
    }
    if let Some(deny) = &cfg.deny {
        if deny(&rel) {
            return true;
        }
    }
    false
}

/// Map a request to a file under the root, or the status refusing it.
fn resolve_static(req: &Request, shared: &Shared) -> Result<PathBuf, u16> {
    let raw_lower = req.raw_path.to_ascii_lowercase();
    if raw_lower.contains("%2f") || raw_lower.contains("%5c") || req.path.contains('\\') {
        return Err(403);
    }
    let mut segments: Vec<&str> = Vec::new();
    for seg in req.path.split('/') {
        match seg {
            "" | "." => {}
            ".." => return Err(403),
            s => segments.push(s),
        }
    }
    if segments.is_empty() {
        return Err(404); // the root directory: no listing
    }
    if is_hidden(&segments, &shared.cfg) {
        return Err(404);
    }
    let mut path = shared.root.clone();
    path.extend(&segments);
    let real = match path.canonicalize() {
        Ok(p) => p,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return Err(403),
        Err(_) => return Err(404),
    };
    let Ok(rel) = real.strip_prefix(&shared.root) else {
        return Err(403);
    };
    let rel_str = rel.to_string_lossy().into_owned();
    let real_segments: Vec<&str> = rel_str.split('/').filter(|s| !s.is_empty()).collect();
    if real_segments.is_empty() {
        return Err(404);
    }
    if is_hidden(&real_segments, &shared.cfg) {
        return Err(404);
    }
    Ok(real)
}

fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "ipxe" | "txt" | "cfg" | "conf" | "sh" | "log" => "text/plain; charset=utf-8",
        "html" | "htm" => "text/html; charset=utf-8",
        "json" => "application/json",
        "yml" | "yaml" => "text/plain; charset=utf-8",
        "iso" => "application/x-iso9660-image",
        _ => "application/octet-stream",
    }
}

/// Parse a `Range` header against a file size.
#[derive(Debug, PartialEq, Eq)]
enum RangeSpec {
    /// Ignore the header, send the whole file.
    Whole,
    /// Inclusive byte range.
    Part(u64, u64),
    Unsatisfiable,
}

fn parse_range(value: &str, size: u64) -> RangeSpec {
    let Some((unit, spec)) = value.split_once('=') else {
        return RangeSpec::Whole;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return RangeSpec::Whole;
    }
    let spec = spec.trim();
    if spec.contains(',') {
        return RangeSpec::Whole; // multi-range: whole file, 200 (documented)
    }
    let Some((a, b)) = spec.split_once('-') else {
        return RangeSpec::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            None
        } else {
            s.parse().ok()
        }
    };
    if a.is_empty() {
        // suffix: the last n bytes
        let Some(n) = num(b) else {
            return RangeSpec::Whole;
        };
        if n == 0 || size == 0 {
            return RangeSpec::Unsatisfiable;
        }
        return RangeSpec::Part(size - n.min(size), size - 1);
    }
    let Some(start) = num(a) else {
        return RangeSpec::Whole;
    };
    let end = if b.is_empty() {
        u64::MAX
    } else {
        match num(b) {
            Some(e) if e >= start => e,
            _ => return RangeSpec::Whole,
        }
    };
    if start >= size {
        return RangeSpec::Unsatisfiable;
    }
    RangeSpec::Part(start, end.min(size - 1))
}

fn serve_file(
    conn: &mut Conn,
    head: &Head,
    path: &Path,
    head_only: bool,
    keep_alive: bool,
    zero_copy: bool,
) -> Outcome {
    let fail = |conn: &mut Conn, code: u16| -> Outcome {
        let resp = error_response(code);
        let ok = write_response(&mut conn.stream, &resp, head_only, keep_alive).is_ok();
        Outcome {
            status: code,
            bytes: 0,
            keep_alive: keep_alive && ok,
        }
    };
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return fail(conn, 403),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return fail(conn, 404),
        Err(_) => return fail(conn, 404),
    };
    let meta = match file.metadata() {
        Ok(m) => m,
        Err(_) => return fail(conn, 500),
    };
    if !meta.is_file() {
        return fail(conn, 404);
    }
    let size = meta.len();
    let mtime = meta.modified().unwrap_or(UNIX_EPOCH);
    let last_modified = http_date(mtime);
    let secs = mtime
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let etag = format!("\"{size:x}-{secs:x}\"");

    let not_modified = match head.header("if-none-match") {
        Some(inm) => inm.split(',').any(|t| {
            let t = t.trim();
            t == "*" || t.trim_start_matches("W/") == etag
        }),
        None => head.header("if-modified-since") == Some(last_modified.as_str()),
    };
    let mut extra =
        format!("Accept-Ranges: bytes\r\nLast-Modified: {last_modified}\r\nETag: {etag}\r\n");
    if not_modified {
        let h = status_head(304, None, None, &extra, keep_alive);
        return match conn.stream.write_all(h.as_bytes()) {
            Ok(()) => Outcome {
                status: 304,
                bytes: 0,
                keep_alive,
            },
            Err(_) => Outcome {
                status: 304,
                bytes: 0,
                keep_alive: false,
            },
        };
    }

    let mut range = match head.header("range") {
        Some(r) => parse_range(r, size),
        None => RangeSpec::Whole,
    };
    if let Some(cond) = head.header("if-range") {
        if cond != etag && cond != last_modified {
            range = RangeSpec::Whole;
        }
    }
    let (status, start, len) = match range {
        RangeSpec::Whole => (200, 0, size),
        RangeSpec::Part(a, b) => {
            extra.push_str(&format!("Content-Range: bytes {a}-{b}/{size}\r\n"));
            (206, a, b - a + 1)
        }
        RangeSpec::Unsatisfiable => {
            extra.push_str(&format!("Content-Range: bytes */{size}\r\n"));
            let body = b"416 Range Not Satisfiable\n";
            let h = status_head(
                416,
                Some("text/plain; charset=utf-8"),
                Some(body.len() as u64),
                &extra,
                keep_alive,
            );
            let mut ok = conn.stream.write_all(h.as_bytes()).is_ok();
            if ok && !head_only {
                ok = conn.stream.write_all(body).is_ok();
            }
            return Outcome {
                status: 416,
                bytes: if head_only { 0 } else { body.len() as u64 },
                keep_alive: keep_alive && ok,
            };
        }
    };
    let h = status_head(
        status,
        Some(content_type(path)),
        Some(len),
        &extra,
        keep_alive,
    );
    if conn.stream.write_all(h.as_bytes()).is_err() {
        return Outcome {
            status,
            bytes: 0,
            keep_alive: false,
        };
    }
    if head_only || len == 0 {
        return Outcome {
            status,
            bytes: 0,
            keep_alive,
        };
    }
    let sent = send_body(&file, start, len, &mut conn.stream, zero_copy);
    Outcome {
        status,
        bytes: sent,
        // a short body (file truncated meanwhile, client gone) breaks the
        // framing: the connection must end
        keep_alive: keep_alive && sent == len,
    }
}

/// Stream `len` bytes from `start` to the socket: `sendfile(2)` (no
/// user-space copy), or a fixed 64 KiB buffer when `sendfile` is not
/// possible (std's `io::copy` only uses `sendfile` towards pipes, not
/// sockets). Returns the bytes sent; fewer than `len` means the connection
/// must be closed.
fn send_body(file: &File, start: u64, len: u64, stream: &mut TcpStream, zero_copy: bool) -> u64 {
    let mut sent = 0u64;
    if zero_copy {
        match sendfile_all(file, start, len, stream) {
            SendfileEnd::Done(n) => return n,
            SendfileEnd::Unsupported(n) => sent = n,
        }
    }
    sent + copy_buffered(file, start + sent, len - sent, stream)
}

enum SendfileEnd {
    /// Finished, or stopped for good (error, client gone, file shrunk).
    Done(u64),
    /// `sendfile` cannot be used here; this much was sent before.
    Unsupported(u64),
}

fn sendfile_all(file: &File, start: u64, len: u64, stream: &TcpStream) -> SendfileEnd {
    use std::os::fd::AsRawFd;
    let Ok(mut offset) = libc::off_t::try_from(start) else {
        return SendfileEnd::Unsupported(0);
    };
    let mut sent = 0u64;
    while sent < len {
        let chunk = usize::try_from((len - sent).min(1 << 30)).unwrap_or(1 << 30);
        // SAFETY: both descriptors are open for the duration of the call
        // (borrowed from live `File` and `TcpStream`), and `offset` is a
        // valid, exclusively borrowed `off_t`.
        let n = unsafe { libc::sendfile(stream.as_raw_fd(), file.as_raw_fd(), &mut offset, chunk) };
        if n > 0 {
            sent += n as u64;
            continue;
        }
        if n == 0 {
            return SendfileEnd::Done(sent); // file shrunk under us
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP) if sent == 0 => {
                return SendfileEnd::Unsupported(0)
            }
            // EAGAIN here is the write timeout (SO_SNDTIMEO) expiring
            _ => return SendfileEnd::Done(sent),
        }
    }
    SendfileEnd::Done(sent)
}

fn copy_buffered(mut file: &File, start: u64, len: u64, stream: &mut TcpStream) -> u64 {
    if file.seek(SeekFrom::Start(start)).is_err() {
        return 0;
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut sent = 0u64;
    while sent < len {
        let want = usize::try_from((len - sent).min(buf.len() as u64)).unwrap_or(buf.len());
        let n = match file.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        if stream.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n as u64;
    }
    sent
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        206 => "Partial Content",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        414 => "URI Too Long",
        416 => "Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        401 => "Unauthorized",
        409 => "Conflict",
        _ => "Status",
    }
}

fn error_response(code: u16) -> Response {
    Response::text(code, format!("{code} {}\n", reason(code)))
}

fn status_head(
    status: u16,
    content_type: Option<&str>,
    len: Option<u64>,
    extra: &str,
    keep_alive: bool,
) -> String {
    let mut h = format!(
        "HTTP/1.1 {status} {}\r\nDate: {}\r\nServer: disklessset\r\n",
        reason(status),
        http_date(SystemTime::now())
    );
    if let Some(ct) = content_type {
        h.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    if let Some(len) = len {
        h.push_str(&format!("Content-Length: {len}\r\n"));
    }
    h.push_str(extra);
    h.push_str(if keep_alive {
        "Connection: keep-alive\r\n\r\n"
    } else {
        "Connection: close\r\n\r\n"
    });
    h
}

/// Write a generated response (one write for head and small bodies).
fn write_response(
    stream: &mut TcpStream,
    resp: &Response,
    head_only: bool,
    keep_alive: bool,
) -> io::Result<u64> {
    let mut extra = String::new();
    for (k, v) in &resp.headers {
        // header injection: values with line breaks are dropped
        if is_token(k) && !v.contains(['\r', '\n']) {
            extra.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    let ct = if resp.content_type.contains(['\r', '\n']) {
        "application/octet-stream"
    } else {
        resp.content_type.as_str()
    };
    let mut out = status_head(
        resp.status,
        Some(ct),
        Some(resp.body.len() as u64),
        &extra,
        keep_alive,
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(&resp.body);
    }
    stream.write_all(&out)?;
    Ok(if head_only { 0 } else { resp.body.len() as u64 })
}

/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn http_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // civil_from_days (H. Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let wd = DAYS[days.rem_euclid(7) as usize];
    let mon = MONTHS[(month - 1).clamp(0, 11) as usize];
    format!("{wd}, {d:02} {mon} {year} {h:02}:{m:02}:{s:02} GMT")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::sync::Mutex;
    use std::thread::JoinHandle;

    struct TestServer {
        addr: SocketAddr,
        shutdown: Arc<AtomicBool>,
        handle: Option<JoinHandle<Result<(), HttpError>>>,
        stats: Arc<ServerStats>,
        dir: tempfile::TempDir,
    }

    impl Drop for TestServer {
        fn drop(&mut self) {
            self.shutdown.store(true, Ordering::Relaxed);
            if let Some(h) = self.handle.take() {
                let _ = h.join();
            }
        }
    }

    struct TestDyn;

    impl DynamicHandler for TestDyn {
        fn handle(&self, req: &Request) -> Option<Response> {
            match req.path.as_str() {
                "/boot.ipxe" => Some(Response::text(
                    200,
                    format!(
                        "#!ipxe\nmac={} host={} peer={} path={}\n",
                        req.query_param("mac").unwrap_or("-"),
                        req.host.as_deref().unwrap_or("-"),
                        req.peer.ip(),
                        req.path
                    ),
                )),
                "/nodes/c 1.ipxe" => Some(Response::text(200, "decoded\n")),
                "/panic" => panic!("handler bug"),
                "/created" => Some(
                    Response::new(201, "application/json", b"{}".to_vec())
                        .with_header("X-Test", "1"),
                ),
                _ => None,
            }
        }
    }

    fn fill(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.extend_from_slice(&x.to_le_bytes());
        }
        v.truncate(len);
        v
    }

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("images/img1")).unwrap();
        std::fs::create_dir_all(root.join("kernels")).unwrap();
        std::fs::create_dir_all(root.join("secret-dir")).unwrap();
        std::fs::write(root.join("hello.txt"), b"hello\n").unwrap();
        std::fs::write(
            root.join("images/img1/image_data.yml"),
            b"root_password: x\n",
        )
        .unwrap();
        std::fs::write(root.join("image_data.yml"), b"top\n").unwrap();
        std::fs::write(root.join(".hidden"), b"dot\n").unwrap();
        std::fs::write(root.join("part.tmp"), b"tmp\n").unwrap();
        std::fs::write(root.join("kernels/key.pem"), b"key\n").unwrap();
        std::fs::write(root.join("secret-dir/a"), b"a\n").unwrap();
        std::fs::write(root.join("callback-hidden"), b"cb\n").unwrap();
        std::fs::write(root.join("empty"), b"").unwrap();
        std::fs::write(root.join("images/img1/squashfs.img"), fill(1 << 20, 7)).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("evil")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("evildir")).unwrap();
        std::os::unix::fs::symlink("images/img1/image_data.yml", root.join("alias")).unwrap();
        std::os::unix::fs::symlink("hello.txt", root.join("good-link")).unwrap();
        dir
    }

    fn start_with(dir: tempfile::TempDir, tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let mut cfg = ServerConfig::new(dir.path(), "127.0.0.1:0".parse().unwrap());
        cfg.deny_paths = vec!["secret-dir".into()];
        cfg.deny_names = vec!["*.pem".into()];
        cfg.deny = Some(Arc::new(|p: &str| p == "callback-hidden"));
        cfg.shutdown_grace = Duration::from_millis(200);
        tweak(&mut cfg);
        let server = bind(cfg, Arc::new(TestDyn)).expect("bind");
        let addr = server.local_addr();
        let stats = server.stats();
        let shutdown = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&shutdown);
        let handle = thread::spawn(move || server.run(flag));
        TestServer {
            addr,
            shutdown,
            handle: Some(handle),
            stats,
            dir,
        }
    }

    fn start() -> TestServer {
        start_with(tree(), |_| {})
    }

    #[derive(Debug)]
    struct Resp {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Resp {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    fn connect(addr: SocketAddr) -> BufReader<TcpStream> {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        BufReader::new(s)
    }

    fn send(conn: &mut BufReader<TcpStream>, raw: &str) {
        conn.get_mut().write_all(raw.as_bytes()).expect("send");
    }

    fn read_resp(conn: &mut BufReader<TcpStream>, head_only: bool) -> Resp {
        let mut line = String::new();
        conn.read_line(&mut line).expect("status line");
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {line:?}"));
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            conn.read_line(&mut h).expect("header");
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').expect("header colon");
            headers.push((k.to_string(), v.trim().to_string()));
        }
        let mut resp = Resp {
            status,
            headers,
            body: Vec::new(),
        };
        if !head_only && status != 304 {
            let len: usize = resp
                .header("content-length")
                .and_then(|v| v.parse().ok())
                .expect("content-length");
            resp.body = vec![0; len];
            conn.read_exact(&mut resp.body).expect("body");
        }
        resp
    }

    fn get(addr: SocketAddr, path: &str, extra: &str) -> Resp {
        let mut c = connect(addr);
        send(
            &mut c,
            &format!("GET {path} HTTP/1.1\r\nHost: boot\r\n{extra}Connection: close\r\n\r\n"),
        );
        read_resp(&mut c, false)
    }

    /// The server closed the connection (EOF, no more bytes).
    fn closed(conn: &mut BufReader<TcpStream>) -> bool {
        let mut b = [0u8; 1];
        matches!(conn.read(&mut b), Ok(0))
    }

    #[test]
    fn get_and_head() {
        let srv = start();
        let r = get(srv.addr, "/hello.txt", "");
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"hello\n");
        assert_eq!(r.header("content-length"), Some("6"));
        assert_eq!(r.header("accept-ranges"), Some("bytes"));
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        assert!(r
            .header("last-modified")
            .is_some_and(|v| v.ends_with(" GMT")));
        assert_eq!(r.header("connection"), Some("close"));
        // HEAD: headers only; the next response on the connection parses fine
        let mut c = connect(srv.addr);
        send(
            &mut c,
            "HEAD /images/img1/squashfs.img HTTP/1.1\r\nHost: x\r\n\r\n",
        );
        let h = read_resp(&mut c, true);
        assert_eq!(h.status, 200);
        assert_eq!(h.header("content-length"), Some("1048576"));
        send(&mut c, "GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(read_resp(&mut c, false).body, b"hello\n");
        // empty file, symlink inside the tree
        assert_eq!(get(srv.addr, "/empty", "").body, b"");
        assert_eq!(get(srv.addr, "/good-link", "").body, b"hello\n");
        assert_eq!(
            get(srv.addr, "/images//img1/./squashfs.img", "").status,
            200
        );
    }

    #[test]
    fn random_ranges_are_byte_exact() {
        let srv = start();
        let data = std::fs::read(srv.dir.path().join("images/img1/squashfs.img")).unwrap();
        let size = data.len() as u64;
        let mut c = connect(srv.addr);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        for i in 0..300 {
            let (spec, a, b) = match i % 3 {
                0 => {
                    let a = rnd(size);
                    let b = (a + rnd(200_000)).min(size + 5000);
                    (format!("{a}-{b}"), a, b.min(size - 1))
                }
                1 => {
                    let a = rnd(size);
                    (format!("{a}-"), a, size - 1)
                }
                _ => {
                    let n = 1 + rnd(size + 1000);
                    (format!("-{n}"), size - n.min(size), size - 1)
                }
            };
            send(&mut c, &format!("GET /images/img1/squashfs.img HTTP/1.1\r\nHost: x\r\nRange: bytes={spec}\r\n\r\n"));
            let r = read_resp(&mut c, false);
            assert_eq!(r.status, 206, "range {spec}");
            assert_eq!(
                r.header("content-range"),
                Some(format!("bytes {a}-{b}/{size}").as_str()),
                "range {spec}"
            );
            assert!(
                r.body == data[a as usize..=b as usize],
                "bytes differ for {spec}"
            );
        }
    }

    #[test]
    fn range_edge_cases() {
        let srv = start();
        let f = "/images/img1/squashfs.img";
        let r = get(srv.addr, f, "Range: bytes=1048576-\r\n");
        assert_eq!(r.status, 416);
        assert_eq!(r.header("content-range"), Some("bytes */1048576"));
        assert_eq!(get(srv.addr, f, "Range: bytes=-0\r\n").status, 416);
        assert_eq!(get(srv.addr, "/empty", "Range: bytes=0-\r\n").status, 416);
        // multi-range and invalid ranges: the whole file, 200
        let r = get(srv.addr, f, "Range: bytes=0-1,5-9\r\n");
        assert_eq!((r.status, r.body.len()), (200, 1 << 20));
        assert_eq!(get(srv.addr, f, "Range: bytes=9-1\r\n").status, 200);
        assert_eq!(get(srv.addr, f, "Range: items=0-1\r\n").status, 200);
        assert_eq!(get(srv.addr, f, "Range: bytes=x-1\r\n").status, 200);
        // HEAD with a range
        let mut c = connect(srv.addr);
        send(
            &mut c,
            &format!("HEAD {f} HTTP/1.1\r\nRange: bytes=10-19\r\n\r\n"),
        );
        let r = read_resp(&mut c, true);
        assert_eq!(r.status, 206);
        assert_eq!(r.header("content-length"), Some("10"));
        // validators
        let full = get(srv.addr, f, "");
        let etag = full.header("etag").unwrap().to_string();
        let lm = full.header("last-modified").unwrap().to_string();
        assert_eq!(
            get(srv.addr, f, &format!("If-None-Match: {etag}\r\n")).status,
            304
        );
        assert_eq!(
            get(srv.addr, f, &format!("If-Modified-Since: {lm}\r\n")).status,
            304
        );
        let r = get(
            srv.addr,
            f,
            &format!("If-Range: {etag}\r\nRange: bytes=0-0\r\n"),
        );
        assert_eq!(r.status, 206);
        let r = get(srv.addr, f, "If-Range: \"other\"\r\nRange: bytes=0-0\r\n");
        assert_eq!(r.status, 200);
    }

    #[test]
    fn parse_range_table() {
        use RangeSpec::*;
        assert_eq!(parse_range("bytes=0-9", 100), Part(0, 9));
        assert_eq!(parse_range("bytes=90-200", 100), Part(90, 99));
        assert_eq!(parse_range("bytes=90-", 100), Part(90, 99));
        assert_eq!(parse_range("bytes=-10", 100), Part(90, 99));
        assert_eq!(parse_range("bytes=-1000", 100), Part(0, 99));
        assert_eq!(parse_range("bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-0,5-6", 100), Whole);
        assert_eq!(parse_range("bytes=5-1", 100), Whole);
        assert_eq!(parse_range("bytes=", 100), Whole);
        assert_eq!(parse_range("bytes=-", 100), Whole);
        assert_eq!(parse_range("bytes=+1-2", 100), Whole);
        assert_eq!(parse_range("bytes=99999999999999999999-", 100), Whole);
        assert_eq!(parse_range("Bytes = 1-2", 100), Part(1, 2));
    }

    #[test]
    fn traversal_is_refused() {
        let srv = start();
        for path in [
            "/../etc/passwd",
            "/../../../../etc/passwd",
            "/%2e%2e/etc/passwd",
            "/%2E%2E/%2e%2e/etc/passwd",
            "/images/%2e%2e/%2e%2e/etc/passwd",
            "/a/%2e%2e/%2e%2e/etc/passwd",
            "/..%2f..%2fetc/passwd",
            "/images%2f..%2f..%2fetc%2fpasswd",
            "/..\\..\\etc\\passwd",
            "/%5c..%5cetc",
            "/evil",
            "/evildir/passwd",
            "/images/../../etc/passwd",
        ] {
            let r = get(srv.addr, path, "");
            assert!(matches!(r.status, 403 | 404), "{path}: {}", r.status);
            assert!(
                !String::from_utf8_lossy(&r.body).contains("root:"),
                "{path}"
            );
        }
        assert_eq!(get(srv.addr, "/evil", "").status, 403);
        assert_eq!(get(srv.addr, "/%2e%2e/etc/passwd", "").status, 403);
        assert_eq!(get(srv.addr, "/hello%00.txt", "").status, 400);
        assert_eq!(get(srv.addr, "/bad%zzescape", "").status, 400);
        assert_eq!(get(srv.addr, "/%ff%fe", "").status, 400);
        assert_eq!(get(srv.addr, "relative", "").status, 400);
        // absolute-form is reduced to its path
        assert_eq!(
            get(srv.addr, "http://evil.example/hello.txt", "").status,
            200
        );
    }

    #[test]
    fn hidden_files_and_directories_are_404() {
        let srv = start();
        for path in [
            "/image_data.yml",
            "/images/img1/image_data.yml",
            "/images/img1/image%5Fdata.yml",
            "/alias",
            "/.hidden",
            "/%2ehidden",
            "/part.tmp",
            "/kernels/key.pem",
            "/secret-dir/a",
            "/secret-dir",
            "/callback-hidden",
            "/images",
            "/images/",
            "/images/img1",
            "/",
            "/nope",
        ] {
            assert_eq!(get(srv.addr, path, "").status, 404, "{path}");
        }
        let r = get(srv.addr, "/images/img1/image_data.yml", "");
        assert!(!String::from_utf8_lossy(&r.body).contains("root_password"));
    }

    #[test]
    fn keep_alive_and_close() {
        let srv = start();
        let mut c = connect(srv.addr);
        send(&mut c, "GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n");
        let r1 = read_resp(&mut c, false);
        assert_eq!(r1.header("connection"), Some("keep-alive"));
        send(
            &mut c,
            "GET /images/img1/squashfs.img HTTP/1.1\r\nHost: x\r\nRange: bytes=0-3\r\n\r\n",
        );
        let r2 = read_resp(&mut c, false);
        assert_eq!((r1.status, r2.status, r2.body.len()), (200, 206, 4));
        // pipelined: two requests in one write
        send(
            &mut c,
            "GET /hello.txt HTTP/1.1\r\n\r\nGET /boot.ipxe HTTP/1.1\r\n\r\n",
        );
        assert_eq!(read_resp(&mut c, false).body, b"hello\n");
        assert_eq!(read_resp(&mut c, false).status, 200);
        send(
            &mut c,
            "GET /hello.txt HTTP/1.1\r\nConnection: close\r\n\r\n",
        );
        let r3 = read_resp(&mut c, false);
        assert_eq!(r3.header("connection"), Some("close"));
        assert!(closed(&mut c));
        // HTTP/1.0: close by default, keep-alive on request
        let mut c = connect(srv.addr);
        send(&mut c, "GET /hello.txt HTTP/1.0\r\n\r\n");
        assert_eq!(read_resp(&mut c, false).status, 200);
        assert!(closed(&mut c));
        let mut c = connect(srv.addr);
        send(
            &mut c,
            "GET /hello.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        );
        assert_eq!(
            read_resp(&mut c, false).header("connection"),
            Some("keep-alive")
        );
        send(&mut c, "GET /hello.txt HTTP/1.0\r\n\r\n");
        assert_eq!(read_resp(&mut c, false).status, 200);
        // a request with a body is answered, then the connection closes
        let mut c = connect(srv.addr);
        send(
            &mut c,
            "POST /hello.txt HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
        );
        let r = read_resp(&mut c, false);
        assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
        assert!(closed(&mut c));
    }

    #[test]
    fn dynamic_handler_first() {
        let srv = start();
        let r = get(
            srv.addr,
            "/boot.ipxe?mac=52%3A54%3A00%3A12%3A34%3A56&x=a+b",
            "",
        );
        assert_eq!(r.status, 200);
        let body = String::from_utf8(r.body).unwrap();
        assert!(body.contains("mac=52:54:00:12:34:56"), "{body}");
        assert!(
            body.contains("host=boot") && body.contains("peer=127.0.0.1"),
            "{body}"
        );
        assert_eq!(get(srv.addr, "/nodes/c%201.ipxe", "").body, b"decoded\n");
        let r = get(srv.addr, "/created", "");
        assert_eq!((r.status, r.header("x-test")), (201, Some("1")));
        assert_eq!(r.header("content-type"), Some("application/json"));
        let mut c = connect(srv.addr);
        send(&mut c, "HEAD /boot.ipxe HTTP/1.1\r\n\r\n");
        let h = read_resp(&mut c, true);
        assert!(h.header("content-length").is_some_and(|v| v != "0"));
        send(&mut c, "GET /hello.txt HTTP/1.1\r\n\r\n");
        assert_eq!(read_resp(&mut c, false).body, b"hello\n");
        assert_eq!(get(srv.addr, "/panic", "").status, 500);
        assert_eq!(get(srv.addr, "/hello.txt", "").status, 200);
    }

    #[test]
    fn malformed_requests() {
        let srv = start();
        let raw = |req: &str| {
            let mut c = connect(srv.addr);
            send(&mut c, req);
            read_resp(&mut c, false).status
        };
        assert_eq!(raw("GARBAGE\r\n\r\n"), 400);
        assert_eq!(raw("GET /hello.txt HTTP/2.0\r\n\r\n"), 505);
        assert_eq!(raw("GET /hello.txt FTP/1.0\r\n\r\n"), 400);
        assert_eq!(raw("GET /hello.txt HTTP/1.1\r\nNo colon\r\n\r\n"), 400);
        assert_eq!(
            raw("GET /hello.txt HTTP/1.1\r\nA: b\r\n folded\r\n\r\n"),
            400
        );
        assert_eq!(raw("\r\n\r\nGET /hello.txt HTTP/1.1\r\n\r\n"), 200);
        assert_eq!(raw("GET /hello.txt HTTP/1.1\n\n"), 200);
        assert_eq!(raw("DELETE /hello.txt HTTP/1.1\r\n\r\n"), 405);
        let big = "x".repeat(9000);
        assert_eq!(
            raw(&format!("GET /hello.txt HTTP/1.1\r\nX-Big: {big}\r\n\r\n")),
            431
        );
        assert_eq!(raw(&format!("GET /{big} HTTP/1.1\r\n\r\n")), 414);
        let many: String = (0..150).map(|i| format!("X-{i}: y\r\n")).collect();
        assert_eq!(raw(&format!("GET /hello.txt HTTP/1.1\r\n{many}\r\n")), 431);
    }

    #[test]
    fn slowloris_and_idle_timeouts() {
        let srv = start_with(tree(), |c| {
            c.header_timeout = Duration::from_millis(300);
            c.idle_timeout = Duration::from_millis(300);
        });
        let t = Instant::now();
        let mut c = connect(srv.addr);
        send(&mut c, "GET /hello.txt HTTP/1.1\r\nHost: x\r\n");
        // keep dribbling bytes: the deadline is for the whole head
        for _ in 0..3 {
            thread::sleep(Duration::from_millis(100));
            let _ = c.get_mut().write_all(b"X-A: b\r\n");
        }
        assert_eq!(read_resp(&mut c, false).status, 408);
        assert!(t.elapsed() < Duration::from_secs(3));
        // a connection that never sends anything is closed
        let mut c = connect(srv.addr);
        assert!(closed(&mut c));
        // idle keep-alive connection is closed after a request
        let mut c = connect(srv.addr);
        send(&mut c, "GET /hello.txt HTTP/1.1\r\n\r\n");
        assert_eq!(read_resp(&mut c, false).status, 200);
        let t = Instant::now();
        assert!(closed(&mut c));
        assert!(t.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn connection_limit_gives_503() {
        let srv = start_with(tree(), |c| c.max_connections = 2);
        let mut held: Vec<BufReader<TcpStream>> = (0..2).map(|_| connect(srv.addr)).collect();
        let deadline = Instant::now() + Duration::from_secs(5);
        while srv.stats.active.load(Ordering::Relaxed) < 2 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        let r = get(srv.addr, "/hello.txt", "");
        assert_eq!(r.status, 503);
        assert_eq!(r.header("retry-after"), Some("1"));
        assert!(srv.stats.refused.load(Ordering::Relaxed) >= 1);
        // the held connections still work, and once closed others get in
        send(
            &mut held[0],
            "GET /hello.txt HTTP/1.1\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(read_resp(&mut held[0], false).status, 200);
        drop(held);
        let deadline = Instant::now() + Duration::from_secs(5);
        while srv.stats.active.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(get(srv.addr, "/hello.txt", "").status, 200);
    }

    #[test]
    fn shutdown_stops_run() {
        let mut srv = start();
        assert_eq!(get(srv.addr, "/hello.txt", "").status, 200);
        let _idle = connect(srv.addr);
        srv.shutdown.store(true, Ordering::Relaxed);
        let t = Instant::now();
        let res = srv.handle.take().map(|h| h.join());
        assert!(matches!(res, Some(Ok(Ok(())))));
        assert!(t.elapsed() < Duration::from_secs(3));
        assert!(TcpStream::connect(srv.addr).is_err());
    }

    #[test]
    fn bind_errors() {
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let missing = ServerConfig::new("/nonexistent/boot/tree", addr);
        assert!(matches!(
            bind(missing, Arc::new(NoDynamic)),
            Err(HttpError::Root { .. })
        ));
        let file = tempfile::NamedTempFile::new().unwrap();
        let not_dir = ServerConfig::new(file.path(), addr);
        assert!(matches!(
            bind(not_dir, Arc::new(NoDynamic)),
            Err(HttpError::RootNotDir { .. })
        ));
        let dir = tempfile::tempdir().unwrap();
        let mut zero = ServerConfig::new(dir.path(), addr);
        zero.max_connections = 0;
        assert!(matches!(
            bind(zero, Arc::new(NoDynamic)),
            Err(HttpError::Config(_))
        ));
        let srv = start();
        let taken = ServerConfig::new(dir.path(), srv.addr);
        let err = bind(taken, Arc::new(NoDynamic)).err().expect("port in use");
        assert!(err.to_string().contains(&srv.addr.to_string()));
    }

    #[test]
    fn helpers() {
        let t = |s: u64| http_date(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(t(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(t(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(t(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(t(4_102_444_799), "Thu, 31 Dec 2099 23:59:59 GMT");
        assert!(glob_match("*.pem", "a.pem"));
        assert!(glob_match("s?cret*", "secret-file"));
        assert!(!glob_match("*.pem", "a.pem.txt"));
        assert!(glob_match("*", ""));
        assert_eq!(percent_decode("a%20b+c", true), Some(b"a b c".to_vec()));
        assert_eq!(percent_decode("%2", false), None);
    }

    fn vm_rss_kib() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
            })
            .unwrap_or(0)
    }

    const LOAD_CHILD_ENV: &str = "DISKLESSSET_HTTP_LOAD_CHILD";

    /// Runs the load test in a fresh process (this test binary, filtered to
    /// one ignored test), so other tests' memory does not blur the RSS.
    #[test]
    fn load_200_concurrent_range_downloads() {
        let exe = std::env::current_exe().expect("test binary");
        let module = module_path!();
        let test_name = match module.split_once("::") {
            Some((_, rest)) => format!("{rest}::load_child"),
            None => "load_child".to_string(),
        };
        let mut child = std::process::Command::new(exe)
            .args([
                test_name.as_str(),
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(LOAD_CHILD_ENV, "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run load child");
        // bounded: the child is killed after 5 minutes
        let deadline = Instant::now() + Duration::from_secs(300);
        while child.try_wait().expect("wait child").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            thread::sleep(Duration::from_millis(100));
        }
        let out = child.wait_with_output().expect("child output");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        println!("{stdout}");
        assert!(
            out.status.success(),
            "load child failed:\n{stdout}\n{stderr}"
        );
        assert!(
            stdout.contains("1 passed"),
            "load child did not run:\n{stdout}"
        );
    }

    #[test]
    #[ignore = "run by load_200_concurrent_range_downloads in its own process"]
    fn load_child() {
        if std::env::var_os(LOAD_CHILD_ENV).is_none() {
            return;
        }
        const SIZE: usize = 64 << 20;
        const CLIENTS: usize = 200;
        let dir = tempfile::tempdir().unwrap();
        let data = Arc::new(fill(SIZE, 42));
        std::fs::write(dir.path().join("big.img"), &data[..]).unwrap();
        let srv = start_with(dir, |c| c.max_connections = 256);
        thread::sleep(Duration::from_millis(100));
        let base = vm_rss_kib();
        let peak_rss = Arc::new(AtomicU64::new(base));
        let peak_active = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let monitor = {
            let (peak_rss, peak_active, done, stats) = (
                peak_rss.clone(),
                peak_active.clone(),
                done.clone(),
                srv.stats.clone(),
            );
            thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    peak_rss.fetch_max(vm_rss_kib(), Ordering::Relaxed);
                    peak_active.fetch_max(stats.active.load(Ordering::Relaxed), Ordering::Relaxed);
                    thread::sleep(Duration::from_millis(10));
                }
            })
        };
        let barrier = Arc::new(std::sync::Barrier::new(CLIENTS));
        let all_open = Arc::new(std::sync::Barrier::new(CLIENTS));
        let errors = Arc::new(Mutex::new(Vec::<String>::new()));
        let total = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let addr = srv.addr;
        let clients: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let (data, barrier, all_open, errors, total) = (
                    data.clone(),
                    barrier.clone(),
                    all_open.clone(),
                    errors.clone(),
                    total.clone(),
                );
                thread::Builder::new()
                    .stack_size(128 * 1024)
                    .spawn(move || {
                        let seed = (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                        let a = (seed >> 7) as usize % SIZE;
                        let (spec, start, end) = match i % 10 {
                            0 => ("0-".to_string(), 0, SIZE - 1),
                            1 => {
                                let n = 1 + (seed >> 20) as usize % (4 << 20);
                                (format!("-{n}"), SIZE - n, SIZE - 1)
                            }
                            _ => {
                                let b = (a + (seed >> 17) as usize % (4 << 20)).min(SIZE - 1);
                                (format!("{a}-{b}"), a, b)
                            }
                        };
                        barrier.wait();
                        // phase 1: connect, send the request, read the head
                        let opened = (|| -> Result<BufReader<TcpStream>, String> {
                            let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
                            s.set_read_timeout(Some(Duration::from_secs(60))).map_err(|e| e.to_string())?;
                            let req = format!("GET /big.img HTTP/1.1\r\nHost: t\r\nRange: bytes={spec}\r\nConnection: close\r\n\r\n");
                            s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
                            let mut r = BufReader::with_capacity(64 * 1024, s);
                            let mut line = String::new();
                            r.read_line(&mut line).map_err(|e| e.to_string())?;
                            if !line.starts_with("HTTP/1.1 206") {
                                return Err(format!("status {line:?}"));
                            }
                            loop {
                                let mut h = String::new();
                                r.read_line(&mut h).map_err(|e| e.to_string())?;
                                if h.trim_end().is_empty() {
                                    break;
                                }
                            }
                            Ok(r)
                        })();
                        // every client has a download in flight before any
                        // body is read: 200 truly concurrent transfers
                        all_open.wait();
                        let res = opened.and_then(|mut r| {
                            let mut pos = start;
                            let mut buf = vec![0u8; 64 * 1024];
                            loop {
                                let n = r.read(&mut buf).map_err(|e| e.to_string())?;
                                if n == 0 {
                                    break;
                                }
                                if pos + n > end + 1 || buf[..n] != data[pos..pos + n] {
                                    return Err(format!("bad bytes at {pos}"));
                                }
                                pos += n;
                            }
                            if pos != end + 1 {
                                return Err(format!("short body: {pos} of {}", end + 1));
                            }
                            Ok((end + 1 - start) as u64)
                        });
                        match res {
                            Ok(n) => {
                                total.fetch_add(n, Ordering::Relaxed);
                            }
                            Err(e) => errors.lock().unwrap().push(format!("client {i}: {e}")),
                        }
                    })
                    .expect("spawn client")
            })
            .collect();
        for c in clients {
            c.join().expect("client thread");
        }
        let elapsed = started.elapsed();
        done.store(true, Ordering::Relaxed);
        monitor.join().unwrap();
        let errors = errors.lock().unwrap();
        let bytes = total.load(Ordering::Relaxed);
        let grown_mib = peak_rss.load(Ordering::Relaxed).saturating_sub(base) / 1024;
        println!(
            "load: {CLIENTS} clients, {} MiB in {:.2}s = {:.0} MiB/s, peak concurrent {}, RSS base {} MiB, peak growth {grown_mib} MiB, errors {}",
            bytes >> 20,
            elapsed.as_secs_f64(),
            (bytes >> 20) as f64 / elapsed.as_secs_f64(),
            peak_active.load(Ordering::Relaxed),
            base / 1024,
            errors.len()
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(srv.stats.requests.load(Ordering::Relaxed), CLIENTS as u64);
        assert!(grown_mib < 64, "RSS grew by {grown_mib} MiB");
        assert!(peak_active.load(Ordering::Relaxed) >= CLIENTS / 2);
    }
}
