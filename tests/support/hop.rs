//! A stand-in next hop: a small real HTTP server on loopback that takes
//! `POST /collector.py/msg` the way a remailer does and counts what it
//! gets. It is not the thing under test (the node posting to it is): it
//! answers 200 to a new packet and 409 to one it already has, or, as told,
//! 503, or nothing at all (a tarpit that accepts and never answers).
//! Every POST is recorded with its start and end time, and the most
//! requests in progress at once is tracked. A GET (the node's directory
//! fetching the next hop's remailer-conf) gets 404 and is not counted.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the stand-in answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 200 for a new packet, 409 for one it has (a real node's answers).
    Accept = 0,
    /// 503 with `Retry-After: 1`.
    Unavailable = 1,
    /// Reads the request and never answers (until the client hangs up).
    Tarpit = 2,
}

/// One request as the stand-in saw it.
#[derive(Debug, Clone)]
pub struct Request {
    /// When its head had arrived.
    pub start: Instant,
    /// When it was answered (`None` for a tarpit).
    pub end: Option<Instant>,
    /// The status sent.
    pub status: Option<u16>,
}

#[derive(Default)]
struct State {
    packets: HashSet<String>,
    requests: Vec<Request>,
}

struct Shared {
    mode: AtomicU8,
    delay_ms: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    stop: AtomicBool,
    state: Mutex<State>,
}

/// A running stand-in next hop; stops when dropped.
pub struct StandIn {
    /// Its port on 127.0.0.1.
    pub port: u16,
    shared: Arc<Shared>,
}

impl StandIn {
    /// Starts a stand-in in `mode`, answering after `delay`.
    pub fn start(mode: Mode, delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            mode: AtomicU8::new(mode as u8),
            delay_ms: AtomicUsize::new(delay.as_millis() as usize),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            state: Mutex::new(State::default()),
        });
        let s = shared.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let s = s.clone();
                std::thread::spawn(move || serve(conn, &s));
            }
        });
        Self { port, shared }
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Changes how it answers from now on.
    pub fn set_mode(&self, mode: Mode) {
        self.shared.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Distinct packets received.
    pub fn packets(&self) -> usize {
        self.shared.state.lock().unwrap().packets.len()
    }

    /// The distinct packets received (their armoured text).
    pub fn packet_set(&self) -> HashSet<String> {
        self.shared.state.lock().unwrap().packets.clone()
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.state.lock().unwrap().requests.clone()
    }

    /// The most requests that were in progress at once.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// Requests in progress now (open tarpit connections included).
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.mode.store(Mode::Accept as u8, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Serves requests on one connection until it closes.
fn serve(conn: TcpStream, s: &Shared) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
    let mut writer = match conn.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(conn);
    while let Some((post, body)) = read_request(&mut reader) {
        if !post {
            let response = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
            if writer.write_all(response.as_bytes()).is_err() {
                return;
            }
            continue;
        }
        let start = Instant::now();
        let now = s.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        s.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let index = {
            let mut st = s.state.lock().unwrap();
            st.requests.push(Request {
                start,
                end: None,
                status: None,
            });
            st.requests.len() - 1
        };
        let mode = s.mode.load(Ordering::SeqCst);
        if mode == Mode::Tarpit as u8 {
            // Hold the connection until the client gives up.
            let mut sink = [0u8; 1024];
            while !s.stop.load(Ordering::SeqCst) {
                match reader.get_mut().read(&mut sink) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            s.in_flight.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        std::thread::sleep(Duration::from_millis(
            s.delay_ms.load(Ordering::SeqCst) as u64
        ));
        let status = if mode == Mode::Unavailable as u8 {
            503
        } else {
            let armour = packet_of(&body);
            let new = s.state.lock().unwrap().packets.insert(armour);
            if new { 200 } else { 409 }
        };
        {
            let mut st = s.state.lock().unwrap();
            st.requests[index].end = Some(Instant::now());
            st.requests[index].status = Some(status);
        }
        s.in_flight.fetch_sub(1, Ordering::SeqCst);
        let text = match status {
            200 => "Mimix message submitted",
            409 => "Packet already received\n",
            _ => "Overloaded, retry later\n",
        };
        let reason = match status {
            200 => "OK",
            409 => "Conflict",
            _ => "Service Unavailable",
        };
        let response = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
             Retry-After: 1\r\n\r\n{text}",
            text.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// Reads one request; returns whether it is a POST and its body, or
/// `None` when the connection ends.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<(bool, Vec<u8>)> {
    let mut length = 0usize;
    let mut first = true;
    let mut post = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if first {
            first = false;
            if !line.starts_with("POST ") && !line.starts_with("GET ") {
                return None;
            }
            post = line.starts_with("POST ");
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).ok()?;
    Some((post, body))
}

/// The armoured packet in a form body (`base64=...`), decoded.
fn packet_of(body: &[u8]) -> String {
    form_urlencoded::parse(body)
        .find(|(k, _)| k == "base64")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}
