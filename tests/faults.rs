//! Fault campaign against the real `disklessset serve` process (issue 11): clients that
//! abort, reset, hang half-open, dribble their heads or send garbage cost their own
//! connection only. After each phase `/health` answers, a full download is byte-exact
//! and the process has not exited.
mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use common::Serve;
use common::Store;

const IMG: &str = "/diskless/images/x/squashfs.img";
const SIZE: usize = 8 * 1024 * 1024;

/// xorshift64*: reproducible randomness without a crate.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn store_with_image(seed: u64) -> (Store, Vec<u8>) {
    let s = Store::new();
    let dir = s.root().join("www/diskless/images/x");
    std::fs::create_dir_all(&dir).unwrap();
    let mut rng = Rng(seed);
    let data: Vec<u8> = (0..SIZE / 8)
        .flat_map(|_| rng.next().to_le_bytes())
        .collect();
    std::fs::write(dir.join("squashfs.img"), &data).unwrap();
    (s, data)
}

fn connect(port: u16) -> TcpStream {
    let c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    c
}

/// One request, the whole answer (head, body).
fn request(port: u16, raw: &str) -> (u16, String, Vec<u8>) {
    let mut c = connect(port);
    c.write_all(raw.as_bytes()).unwrap();
    let mut buf = Vec::new();
    c.read_to_end(&mut buf).unwrap();
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, head, buf[end + 4..].to_vec())
}

fn get(port: u16, path: &str, headers: &str) -> (u16, String, Vec<u8>) {
    request(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: t\r\n{headers}Connection: close\r\n\r\n"),
    )
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// The server is alive, healthy and serves the image byte-exact.
fn check(srv: &mut Serve, data: &[u8], phase: &str) {
    assert!(
        srv.child.try_wait().unwrap().is_none(),
        "{phase}: the server exited"
    );
    let (code, _, body) = get(srv.port, "/health", "");
    assert_eq!(
        (code, body.as_slice()),
        (200, &b"ok\n"[..]),
        "{phase}: /health"
    );
    let (code, _, body) = get(srv.port, IMG, "");
    assert_eq!(code, 200, "{phase}: download");
    assert!(body == data, "{phase}: the download is not byte-exact");
}

fn start_download(port: u16) -> TcpStream {
    let mut c = connect(port);
    write!(c, "GET {IMG} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    c
}

fn read_exactly(c: &mut TcpStream, mut n: usize) {
    let mut buf = [0u8; 16384];
    while n > 0 {
        let want = n.min(buf.len());
        match c.read(&mut buf[..want]) {
            Ok(0) | Err(_) => return,
            Ok(k) => n -= k,
        }
    }
}

/// SO_LINGER {on, 0}: close() sends a reset instead of a FIN.
fn set_linger_zero(c: &TcpStream) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket descriptor and a properly sized linger struct.
    let rc = unsafe {
        libc::setsockopt(
            c.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt SO_LINGER");
}

fn raise_own_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
}

/// Malformed requests, generated: broken request lines, versions, escapes, headers,
/// sizes, framing, ranges, and random bytes.
fn corpus(rng: &mut Rng, n: usize) -> Vec<Vec<u8>> {
    let fixed: Vec<Vec<u8>> = vec![
        b"\r\n\r\n".to_vec(),
        b"GET\r\n\r\n".to_vec(),
        b"GET /\r\n\r\n".to_vec(),
        b"GET / HTTP/9.9\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1 extra\r\n\r\n".to_vec(),
        b"G\0T / HTTP/1.1\r\n\r\n".to_vec(),
        b"GET /%zz HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
        b"GET /%00 HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
        b"GET /diskless/%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\n\r\n".to_vec(),
        b"GET /..%2f..%2fetc/passwd HTTP/1.1\r\n\r\n".to_vec(),
        b"GET http://evil/ HTTP/1.1\r\n\r\n".to_vec(),
        b"GET * HTTP/1.1\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nNo-Colon\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\n : empty name\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n".to_vec(),
        b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nabcde".to_vec(),
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
        format!("GET {IMG} HTTP/1.1\r\nRange: bytes=999999999999-\r\n\r\n").into_bytes(),
        format!("GET {IMG} HTTP/1.1\r\nRange: bytes=-0\r\n\r\n").into_bytes(),
        format!("GET {IMG} HTTP/1.1\r\nRange: bytes=5-1\r\n\r\n").into_bytes(),
        format!("GET {IMG} HTTP/1.1\r\nRange: bytes=0-1,2-3,4-5\r\n\r\n").into_bytes(),
        format!("GET {IMG} HTTP/1.1\r\nRange: bits=0-1\r\n\r\n").into_bytes(),
        format!(
            "GET {IMG} HTTP/1.1\r\nRange: bytes=18446744073709551615-18446744073709551616\r\n\r\n"
        )
        .into_bytes(),
        format!("GET {IMG} HTTP/1.1\r\nIf-Range: W/\"x\"\r\nRange: bytes=1-2\r\n\r\n").into_bytes(),
        format!("GET / HTTP/1.1\r\n{}\r\n\r\n", "X: y\r\n".repeat(500)).into_bytes(),
        format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(20_000)).into_bytes(),
        format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "b".repeat(20_000)).into_bytes(),
        "GET /ü/\u{202e} HTTP/1.1\r\n\r\n".as_bytes().to_vec(),
    ];
    let base = format!("GET {IMG} HTTP/1.1\r\nHost: t\r\nRange: bytes=0-9\r\n\r\n").into_bytes();
    let mut out = fixed.clone();
    while out.len() < n {
        let mut m = match rng.below(4) {
            0 => fixed[rng.below(fixed.len() as u64) as usize].clone(),
            _ => base.clone(),
        };
        match rng.below(6) {
            // flip bytes
            0 | 1 => {
                for _ in 0..=rng.below(8) {
                    let i = rng.below(m.len() as u64) as usize;
                    m[i] = rng.next() as u8;
                }
            }
            // truncate
            2 => m.truncate(rng.below(m.len() as u64) as usize),
            // insert random bytes
            3 => {
                let at = rng.below(m.len() as u64) as usize;
                let junk: Vec<u8> = (0..rng.below(64)).map(|_| rng.next() as u8).collect();
                m.splice(at..at, junk);
            }
            // duplicate a slice
            4 => {
                let a = rng.below(m.len() as u64) as usize;
                let b = (a + rng.below(200) as usize).min(m.len());
                let piece = m[a..b].to_vec();
                m.splice(a..a, piece);
            }
            // pure noise
            _ => m = (0..rng.below(300) + 1).map(|_| rng.next() as u8).collect(),
        }
        out.push(m);
    }
    out
}

#[test]
fn serve_survives_a_fault_campaign() {
    raise_own_fd_limit();
    let (s, data) = store_with_image(0x5eed_1234);
    let mut srv = s.serve(&[]);
    check(&mut srv, &data, "start");
    let mut rng = Rng(42);

    // 1. 100 downloads aborted at random offsets (the client closes: EPIPE/ECONNRESET
    //    on the server's next write)
    for _ in 0..100 {
        let mut c = start_download(srv.port);
        read_exactly(&mut c, rng.below(SIZE as u64) as usize);
        drop(c);
    }
    check(&mut srv, &data, "aborted downloads");

    // 2. 100 connections reset mid-body
    for _ in 0..100 {
        let mut c = start_download(srv.port);
        read_exactly(&mut c, 1 + rng.below(SIZE as u64 / 2) as usize);
        set_linger_zero(&c);
        drop(c);
    }
    check(&mut srv, &data, "resets mid-body");

    // 3. 1000 idle half-open connections, held while the server must answer others:
    //    silent ones, ones with half a request line, ones that shut their sending side
    let mut held = Vec::new();
    for i in 0..1000 {
        let mut c = connect(srv.port);
        match i % 3 {
            0 => {}
            1 => c.write_all(b"GET /diskl").unwrap(),
            _ => {
                c.write_all(format!("GET {IMG} HTTP/1.1\r\n").as_bytes())
                    .unwrap();
                let _ = c.shutdown(Shutdown::Write);
            }
        }
        held.push(c);
    }
    check(&mut srv, &data, "1000 half-open connections held");
    drop(held);
    check(&mut srv, &data, "1000 half-open connections dropped");

    // 4. slowloris: 50 heads dribbled one byte every 300 ms; the server must end each
    //    within its head timeout (10 s) + margin, and serve others meanwhile
    let mut slow: Vec<(TcpStream, bool)> = (0..50)
        .map(|_| {
            let c = connect(srv.port);
            c.set_nonblocking(true).unwrap();
            (c, false)
        })
        .collect();
    let head = format!("GET {IMG} HTTP/1.1\r\nX-Slow: {}", "z".repeat(1000));
    let t = Instant::now();
    let mut i = 0;
    while slow.iter().any(|(_, done)| !done) && t.elapsed() < Duration::from_secs(20) {
        for (c, done) in slow.iter_mut().filter(|(_, d)| !d) {
            let b = head.as_bytes()[i % head.len()];
            let mut sink = [0u8; 512];
            let closed = match c.read(&mut sink) {
                Ok(_) => true, // 408 or EOF: the server ended it
                Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
            };
            if closed || c.write_all(&[b]).is_err() {
                *done = true;
            }
        }
        if i == 10 {
            check(&mut srv, &data, "during slowloris");
        }
        i += 1;
        std::thread::sleep(Duration::from_millis(300));
    }
    let open = slow.iter().filter(|(_, d)| !d).count();
    assert_eq!(open, 0, "slowloris connections still open after 20 s");
    drop(slow);
    check(&mut srv, &data, "slowloris");

    // 5. 1000 malformed requests: every answer, if any, is a well-formed HTTP status
    //    that is not a server error
    let mut statuses = std::collections::BTreeMap::new();
    for raw in corpus(&mut rng, 1000) {
        let mut c = connect(srv.port);
        c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let _ = c.write_all(&raw);
        let _ = c.shutdown(Shutdown::Write);
        let mut buf = Vec::new();
        let _ = Read::take(&c, 4096).read_to_end(&mut buf);
        if buf.is_empty() {
            *statuses.entry(0).or_insert(0) += 1;
            continue;
        }
        let text = String::from_utf8_lossy(&buf);
        assert!(
            text.starts_with("HTTP/1.1 "),
            "not an HTTP answer to {:?}: {text:?}",
            String::from_utf8_lossy(&raw)
        );
        let code: u16 = text[9..12].parse().unwrap();
        assert!(
            code < 500 || code == 501 || code == 505,
            "{code} for {:?}",
            String::from_utf8_lossy(&raw)
        );
        *statuses.entry(code).or_insert(0) += 1;
    }
    eprintln!("malformed corpus: statuses {statuses:?}");
    assert!(
        statuses.len() > 3,
        "the corpus hit too few paths: {statuses:?}"
    );
    check(&mut srv, &data, "malformed requests");
}

#[test]
fn etag_is_strong_and_if_range_restarts_across_generations() {
    let (s, data) = store_with_image(7);
    let srv = s.serve(&[]);
    let (code, head, _) = get(srv.port, IMG, "Range: bytes=0-99\r\n");
    assert_eq!(code, 206);
    let etag = header(&head, "etag").unwrap().to_string();
    assert!(!etag.starts_with("W/"), "{etag}");
    let (code, _, body) = get(
        srv.port,
        IMG,
        &format!("If-Range: {etag}\r\nRange: bytes=100-199\r\n"),
    );
    assert_eq!((code, body.as_slice()), (206, &data[100..200]));

    // a new generation renamed in place within the same second, same size: the old
    // tag must not match, the resume gets the whole new file
    let dir = s.root().join("www/diskless/images/x");
    let mut new = data.clone();
    new[150] ^= 0xff;
    std::fs::write(dir.join("next.tmp"), &new).unwrap();
    std::fs::rename(dir.join("next.tmp"), dir.join("squashfs.img")).unwrap();
    let (code, head, body) = get(
        srv.port,
        IMG,
        &format!("If-Range: {etag}\r\nRange: bytes=100-199\r\n"),
    );
    assert_eq!(
        code, 200,
        "a resume across generations must restart: {head}"
    );
    assert!(body == new);
    assert_ne!(header(&head, "etag").unwrap(), etag);
    // a weak tag never satisfies If-Range
    let new_tag = header(&head, "etag").unwrap().to_string();
    let (code, _, _) = get(
        srv.port,
        IMG,
        &format!("If-Range: W/{new_tag}\r\nRange: bytes=0-0\r\n"),
    );
    assert_eq!(code, 200);
}

#[test]
fn symlinks_leaving_the_web_root_are_refused_inside_ones_served() {
    let (s, data) = store_with_image(9);
    let dir = s.root().join("www/diskless/images/x");
    let outside = s.root().join("secret.txt");
    std::fs::write(&outside, "host secret\n").unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("abs-out")).unwrap();
    std::os::unix::fs::symlink("../../../../secret.txt", dir.join("rel-out")).unwrap();
    std::os::unix::fs::symlink("squashfs.img", dir.join("alias.img")).unwrap();
    std::os::unix::fs::symlink("/proc/self/root/etc/passwd", dir.join("magic")).unwrap();
    std::fs::write(dir.join("image_data.yml"), "secret: 1\n").unwrap();
    std::os::unix::fs::symlink("image_data.yml", dir.join("hidden-alias")).unwrap();
    let srv = s.serve(&[]);
    for (name, want) in [
        ("abs-out", 403),
        ("rel-out", 403),
        ("magic", 403),
        ("hidden-alias", 404),
        ("image_data.yml", 404),
    ] {
        let (code, _, body) = get(srv.port, &format!("/diskless/images/x/{name}"), "");
        assert_eq!(code, want, "{name}: {}", String::from_utf8_lossy(&body));
        assert!(!String::from_utf8_lossy(&body).contains("secret"));
    }
    let (code, _, body) = get(srv.port, "/diskless/images/x/alias.img", "");
    assert_eq!(code, 200);
    assert!(body == data);
}

#[test]
fn max_connections_from_the_flag_and_the_config() {
    let (s, _) = store_with_image(3);
    let srv = s.serve(&["--max-connections", "2"]);
    // the readiness probe's connection must be gone before the slots are counted
    std::thread::sleep(Duration::from_millis(300));
    let held: Vec<TcpStream> = (0..2).map(|_| connect(srv.port)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let (code, head, _) = get(srv.port, "/health", "");
    assert_eq!(code, 503, "{head}");
    assert!(header(&head, "retry-after").is_some(), "{head}");
    drop(held);
    drop(srv);

    // config key; the default (no key) takes 1000 held connections without a refusal
    let (s, _) = store_with_image(4);
    std::fs::write(s.root().join("config.yaml"), "max_connections: 1\n").unwrap();
    let cfg = s.root().join("config.yaml");
    let cfg = cfg.to_str().unwrap();
    let srv = s.serve(&["--config", cfg]);
    std::thread::sleep(Duration::from_millis(300));
    let _held = connect(srv.port);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(get(srv.port, "/health", "").0, 503);
    let o = s.run(&["--config", cfg, "serve", "--max-connections", "0"]);
    assert_eq!(o.status.code(), Some(2), "clap refuses 0");
    std::fs::write(s.root().join("config.yaml"), "max_connections: 0\n").unwrap();
    let err = s.fails(&["--config", cfg, "serve"]);
    assert!(err.contains("max_connections"), "{err}");
}
