use super::files::{glob_match, parse_range, RangeSpec};
use super::request::percent_decode;
use super::*;
use std::io::{BufRead, BufReader};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::UNIX_EPOCH;

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
                Response::new(201, "application/json", b"{}".to_vec()).with_header("X-Test", "1"),
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
        send(
            &mut c,
            &format!(
                "GET /images/img1/squashfs.img HTTP/1.1\r\nHost: x\r\nRange: bytes={spec}\r\n\r\n"
            ),
        );
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
