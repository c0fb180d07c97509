//! Static files: the safety and hiding rules, content types, `Range`,
//! validators (`ETag`, `Last-Modified`, `304`) and body sending
//! (`sendfile(2)`, or a buffered copy).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::sendfile::sendfile;

use super::request::Head;
use super::response::{error_response, http_date, status_head, write_response};
use super::{Conn, Outcome, Request, ServerConfig, Shared};

/// Simple glob: `*` any run, `?` one character.
pub(super) fn glob_match(pattern: &str, name: &str) -> bool {
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

/// Map a request to a file under the root, opened, with the path it really names;
/// or the status refusing it.
pub(super) fn resolve_static(req: &Request, shared: &Shared) -> Result<(File, PathBuf), u16> {
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
    if let Some(root_fd) = &shared.root_fd {
        let rel = segments.join("/");
        let how = OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK | OFlag::O_NOCTTY)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        match openat2(root_fd, rel.as_str(), how) {
            Ok(fd) => {
                let file = File::from(fd);
                // the path the descriptor names: a symlink to a hidden file stays hidden
                let real = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
                    .map_err(|_| 404u16)?;
                check_real(&real, shared)?;
                return Ok((file, real));
            }
            Err(Errno::ENOSYS) => {} // kernel < 5.6: the checks below
            Err(Errno::EXDEV) => return Err(403), // a step out of the tree
            Err(Errno::EACCES | Errno::EPERM) => return Err(403),
            Err(_) => return Err(404),
        }
    }
    let mut path = shared.root.clone();
    path.extend(&segments);
    let real = match path.canonicalize() {
        Ok(p) => p,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return Err(403),
        Err(_) => return Err(404),
    };
    check_real(&real, shared)?;
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK).bits())
        .open(&real)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return Err(403),
        Err(_) => return Err(404),
    };
    Ok((file, real))
}

/// A resolved path must be below the root and not hidden.
fn check_real(real: &Path, shared: &Shared) -> Result<(), u16> {
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
    Ok(())
}

/// `"INODE-SIZE-MTIME_NS"` in hex: changes with any new file renamed in place
/// (a new generation) and with any write (nanosecond mtime).
pub(super) fn strong_etag(meta: &std::fs::Metadata) -> String {
    let ns = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
    format!("\"{:x}-{:x}-{:x}\"", meta.ino(), meta.len(), ns.max(0))
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
pub(super) enum RangeSpec {
    /// Ignore the header, send the whole file.
    Whole,
    /// Inclusive byte range.
    Part(u64, u64),
    Unsatisfiable,
}

pub(super) fn parse_range(value: &str, size: u64) -> RangeSpec {
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

pub(super) fn serve_file(
    conn: &mut Conn,
    head: &Head,
    file: File,
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
    let etag = strong_etag(&meta);

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
        // strong comparison only (RFC 9110 13.1.5): a weak tag never matches
        if cond.trim() != etag && cond.trim() != last_modified {
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
    let Ok(mut offset) = libc::off_t::try_from(start) else {
        return SendfileEnd::Unsupported(0);
    };
    let mut sent = 0u64;
    while sent < len {
        let chunk = usize::try_from((len - sent).min(1 << 30)).unwrap_or(1 << 30);
        match sendfile(stream, file, Some(&mut offset), chunk) {
            Ok(0) => return SendfileEnd::Done(sent), // file shrunk under us
            Ok(n) => sent += n as u64,
            Err(Errno::EINTR) => continue,
            Err(Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP) if sent == 0 => {
                return SendfileEnd::Unsupported(0)
            }
            // EAGAIN here is the write timeout (SO_SNDTIMEO) expiring
            Err(_) => return SendfileEnd::Done(sent),
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
