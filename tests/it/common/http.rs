//! A minimal HTTP/1.1 file server for download tests: serves fixed bodies by path, honours
//! `Range: bytes=N-` with 206 responses, can cut its first response short (a dropped connection),
//! and records every request it saw.
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

pub struct Server {
    pub base: String,
    /// `path range-start` of each request (`-` without a Range header).
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Serves `files` (path → body). With `cut_first = Some(n)`, the first response announces the
    /// full length but sends only `n` body bytes before closing.
    pub fn start(files: Vec<(&str, Vec<u8>)>, cut_first: Option<usize>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let files: Vec<(String, Vec<u8>)> =
            files.into_iter().map(|(p, b)| (p.to_string(), b)).collect();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        std::thread::spawn(move || {
            let mut cut = cut_first;
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                let path = request_line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("")
                    .to_string();
                let mut range: Option<usize> = None;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                    let lower = h.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("range: bytes=") {
                        range = v.trim().trim_end_matches('-').parse().ok();
                    }
                }
                log.lock().unwrap().push(format!(
                    "{path} {}",
                    range.map(|r| r.to_string()).unwrap_or_else(|| "-".into())
                ));
                let Some((_, body)) = files.iter().find(|(p, _)| *p == path) else {
                    let _ = stream.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    continue;
                };
                let start = range.unwrap_or(0).min(body.len());
                let head = if range.is_some() {
                    format!(
                        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\nConnection: close\r\n\r\n",
                        body.len() - start,
                        body.len() - 1,
                        body.len()
                    )
                } else {
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                };
                let _ = stream.write_all(head.as_bytes());
                let end = match cut.take() {
                    Some(n) => (start + n).min(body.len()),
                    None => body.len(),
                };
                let _ = stream.write_all(&body[start..end]);
                let _ = stream.flush();
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
        });
        Server { base, requests }
    }

    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// A gzipped tar archive holding `dir` under the name `top`.
pub fn tar_gz(dir: &std::path::Path, top: &str) -> Vec<u8> {
    let enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut t = tar::Builder::new(enc);
    t.append_dir_all(top, dir).unwrap();
    t.into_inner().unwrap().finish().unwrap()
}
