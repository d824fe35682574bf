//! A webhook receiver on 127.0.0.1 for the delivery tests: a small
//! HTTP/1.1 server (keep-alive, Content-Length bodies) that records every
//! POST, answers with a chosen status, and can be taken down (its socket
//! closed, open connections cut) and brought back on the same port.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

/// One request taken.
#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub body: Vec<u8>,
}

struct Shared {
    port: u16,
    up: AtomicBool,
    status: AtomicU16,
    requests: Mutex<Vec<Request>>,
    connections: Mutex<Vec<TcpStream>>,
}

/// The receiver.
pub struct Receiver {
    shared: Arc<Shared>,
}

impl Receiver {
    /// A receiver on a free port, up and answering 200.
    pub fn start() -> Receiver {
        let receiver = Receiver::reserve();
        receiver.up();
        receiver
    }

    /// A port for a receiver, which is down until [`Receiver::up`].
    pub fn reserve() -> Receiver {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Receiver {
            shared: Arc::new(Shared {
                port,
                up: AtomicBool::new(false),
                status: AtomicU16::new(200),
                requests: Mutex::new(Vec::new()),
                connections: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.shared.port)
    }

    /// Starts accepting (on the same port as before).
    pub fn up(&self) {
        if self.shared.up.swap(true, Ordering::SeqCst) {
            return;
        }
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.shared.port)) {
                Ok(l) => break l,
                // The port may linger for a moment after going down.
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        listener.set_nonblocking(true).unwrap();
        let shared = self.shared.clone();
        std::thread::spawn(move || {
            while shared.up.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        shared
                            .connections
                            .lock()
                            .unwrap()
                            .push(stream.try_clone().unwrap());
                        let shared = shared.clone();
                        std::thread::spawn(move || serve(stream, &shared));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            // Dropping the listener closes the port.
        });
    }

    /// Stops accepting and cuts the open connections.
    pub fn down(&self) {
        self.shared.up.store(false, Ordering::SeqCst);
        for c in self.shared.connections.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    /// Answers every request with `status` from now on.
    pub fn answer(&self, status: u16) {
        self.shared.status.store(status, Ordering::SeqCst);
    }

    /// Every request taken so far.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Every alert received so far, in order (a JSON array body is its
    /// elements), with the path it was posted to.
    pub fn alerts(&self) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        for r in self.requests() {
            match serde_json::from_slice::<Value>(&r.body) {
                Ok(Value::Array(items)) => {
                    out.extend(items.into_iter().map(|a| (r.path.clone(), a)))
                }
                Ok(one) => out.push((r.path.clone(), one)),
                Err(e) => panic!("a body that is not JSON: {e}"),
            }
        }
        out
    }

    /// Ids of the alerts received so far, in order.
    pub fn ids(&self) -> Vec<String> {
        self.alerts()
            .into_iter()
            .map(|(_, a)| a["id"].as_str().unwrap().to_string())
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.down();
    }
}

/// Serves one connection's requests until it closes or the receiver goes
/// down.
fn serve(stream: TcpStream, shared: &Shared) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_string();
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() || !shared.up.load(Ordering::SeqCst) {
            return;
        }
        let status = shared.status.load(Ordering::SeqCst);
        if status == 200 {
            shared.requests.lock().unwrap().push(Request { path, body });
        }
        let answer = if status == 200 {
            ""
        } else {
            "no such organisation"
        };
        let response = format!(
            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n{answer}",
            answer.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}
