//! This machine's floor for one-connection HTTP on loopback, without any runtime in the way:
//! what the best possible client could reach, so measure_latency's figures can be read against
//! the machine rather than against a number from other hardware. std sockets only.
//!
//!   cargo bench --bench loopback_floor -- closed ADDR SECS        blocking client, one connection, closed loop
//!   cargo bench --bench loopback_floor -- pace ADDR CONNS RATE SECS
//!       one thread that never sleeps: busy-polls the clock and non-blocking sockets, sends each
//!       request on an idle connection at its due time; prints the pacing error (sent − due)

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

struct Conn {
    s: TcpStream,
    busy: bool,
    got: usize,
    buf: Vec<u8>,
}

impl Conn {
    fn open(addr: &str, nonblocking: bool) -> Conn {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_nodelay(true).unwrap();
        s.set_nonblocking(nonblocking).unwrap();
        Conn {
            s,
            busy: false,
            got: 0,
            buf: vec![0; 65536],
        }
    }

    /// Reads what is there; true once a whole response (headers + Content-Length body) is in.
    fn poll(&mut self) -> bool {
        match self.s.read(&mut self.buf[self.got..]) {
            Ok(0) => panic!("server closed the connection"),
            Ok(n) => self.got += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(e) => panic!("{e}"),
        }
        let Some(h) = self.buf[..self.got]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
        else {
            return false;
        };
        let head = String::from_utf8_lossy(&self.buf[..h]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap_or(0));
        self.got >= h + 4 + len
    }
}

fn main() {
    let a: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let secs = |s: &str| Duration::from_secs(s.parse().expect("seconds"));
    match a.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["closed", addr, d] => {
            let req = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\n\r\n");
            let mut c = Conn::open(addr, false);
            let (start, d) = (Instant::now(), secs(d));
            let mut n = 0u64;
            while start.elapsed() < d {
                c.s.write_all(req.as_bytes()).unwrap();
                c.got = 0;
                while !c.poll() {}
                n += 1;
            }
            println!("{:.0} req/s", n as f64 / start.elapsed().as_secs_f64());
        }
        ["pace", addr, conns, rate, d] => {
            let req = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\n\r\n");
            let rate: f64 = rate.parse().expect("rate");
            let mut cs: Vec<Conn> = (0..conns.parse().expect("conns"))
                .map(|_| Conn::open(addr, true))
                .collect();
            let total = (rate * secs(d).as_secs_f64()) as u64;
            let start = Instant::now() + Duration::from_millis(10);
            let mut errs = Vec::with_capacity(total as usize);
            let mut k = 0u64;
            while k < total {
                let due = start + Duration::from_nanos((k as f64 * 1e9 / rate) as u64);
                if Instant::now() >= due
                    && let Some(c) = cs.iter_mut().find(|c| !c.busy)
                {
                    let sent = Instant::now();
                    c.s.write_all(req.as_bytes()).unwrap();
                    errs.push((sent - due).as_nanos() as u64 / 1000);
                    (c.busy, c.got, k) = (true, 0, k + 1);
                }
                for c in cs.iter_mut().filter(|c| c.busy) {
                    if c.poll() {
                        c.busy = false;
                    }
                }
            }
            errs.sort_unstable();
            let q = |q: f64| errs[((errs.len() as f64 * q) as usize).min(errs.len() - 1)];
            println!(
                "pacing error p50 {} µs, p99 {} µs, p99.9 {} µs, max {} µs",
                q(0.5),
                q(0.99),
                q(0.999),
                q(1.0)
            );
        }
        _ => {
            eprintln!("usage: closed ADDR SECS | pace ADDR CONNS RATE SECS");
            std::process::exit(2);
        }
    }
}
