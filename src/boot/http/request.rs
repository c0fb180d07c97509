//! Request-head parsing: the request line and headers ([`Head`]), the
//! [`Request`] handed to the handlers, keep-alive.

use std::net::SocketAddr;

use super::{Request, Version, MAX_HEADERS};

pub(super) struct Head {
    pub(super) method: String,
    pub(super) target: String,
    pub(super) version: Version,
    pub(super) headers: Vec<(String, String)>,
}

impl Head {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
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

pub(super) enum HeadError {
    /// Answer with this status and close.
    Status(u16),
    /// Close silently (client gone, idle timeout, I/O error).
    Close,
}

pub(super) fn find_head_end(buf: &[u8]) -> Option<(usize, usize)> {
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

pub(super) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

pub(super) fn parse_head(raw: &[u8]) -> Result<Head, HeadError> {
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

pub(super) fn wants_keep_alive(head: &Head) -> bool {
    match head.version {
        Version::Http11 => !head.has_token("connection", "close"),
        Version::Http10 => head.has_token("connection", "keep-alive"),
    }
}

pub(super) fn build_request(head: &Head, peer: SocketAddr) -> Result<Request, u16> {
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
        body: Vec::new(),
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
pub(super) fn percent_decode(s: &str, plus_is_space: bool) -> Option<Vec<u8>> {
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
