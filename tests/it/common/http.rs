//! A minimal blocking HTTP/1.1 client for the admin listener (served by hyper): one request
//! per connection, the status and body back.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// An HTTP response: status code and body text.
#[derive(Debug)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The header block, as text.
    pub headers: String,
    /// The body, as text.
    pub body: String,
}

/// Sends `method path` to `addr` and reads the whole response (the server closes).
///
/// # Panics
/// When the connection or the read fails, or the answer is not HTTP.
pub fn http(addr: SocketAddr, method: &str, path: &str) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set read timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("send the request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read the response");
    let text = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a header block");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP status line: {head}"));
    HttpResponse {
        status,
        headers: head.to_string(),
        body: body.to_string(),
    }
}

/// `GET path`.
pub fn get(addr: SocketAddr, path: &str) -> HttpResponse {
    http(addr, "GET", path)
}

/// The value of the sample `name{labels}` (labels as written in the exposition, or "" for
/// none) in a Prometheus text body, summed over every sample whose labels contain `labels`.
pub fn metric(body: &str, name: &str, labels: &str) -> Option<f64> {
    let mut found = None;
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (series_name, series_labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (series, ""),
        };
        if series_name == name && series_labels.contains(labels) {
            let value: f64 = value.parse().expect("a numeric sample");
            *found.get_or_insert(0.0) += value;
        }
    }
    found
}
