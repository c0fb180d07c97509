//! Status lines and headers: generated responses, error answers, HTTP dates.

use std::io::{self, Write};
use std::net::TcpStream;
use std::time::{SystemTime, UNIX_EPOCH};

use super::request::is_token;
use super::Response;

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
        202 => "Accepted",
        411 => "Length Required",
        413 => "Content Too Large",
        _ => "Status",
    }
}

pub(super) fn error_response(code: u16) -> Response {
    Response::text(code, format!("{code} {}\n", reason(code)))
}

pub(super) fn status_head(
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
pub(super) fn write_response(
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
pub(super) fn http_date(t: SystemTime) -> String {
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
