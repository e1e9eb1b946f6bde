//! measure_latency's engine: open-loop constant-rate load timed from each request's *intended*
//! send time (wrk2's coordinated-omission correction), or closed-loop `--max`, recorded into
//! HdrHistograms (1 µs – 60 s, 3 significant digits). A naive histogram (actual send →
//! response) is kept beside the corrected one so the difference is visible.

use crate::error::{Error, Result};
use crate::telemetry::Every;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

pub const LOWEST_US: u64 = 1;
pub const HIGHEST_US: u64 = 60_000_000;
pub const SIGFIG: u8 = 3;

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, SIGFIG).expect("static bounds")
}

/// What one request of a metric looks like.
#[derive(Clone)]
pub struct Probe {
    pub name: String,
    pub base: String,
    pub method: hyper::Method,
    /// Path for request `i` (query strings included).
    pub path: std::sync::Arc<dyn Fn(u64) -> String + Send + Sync>,
    /// JSON body for request `i`.
    pub body: Option<std::sync::Arc<dyn Fn(u64) -> String + Send + Sync>>,
    /// Parse `published_unix_ns` of the last tick from the answer (market data tick age).
    pub tick_age: bool,
}

#[derive(Clone, Debug)]
pub struct Load {
    /// Requests per second over all connections; `None` = closed loop as fast as possible.
    pub rate: Option<f64>,
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Option<Duration>,
    pub requests: Option<u64>,
    /// Stop early once this share of requests failed (production safety).
    pub max_error_ratio: Option<f64>,
    pub timeout: Duration,
}

#[derive(Clone)]
pub struct Measured {
    pub corrected: Histogram<u64>,
    pub naive: Histogram<u64>,
    /// How late each request left against its intended time (µs), open loop only.
    pub pacing: Histogram<u64>,
    pub tick_age: Histogram<u64>,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    pub stopped_early: Option<String>,
}

impl Measured {
    pub fn achieved_rate(&self) -> f64 {
        (self.corrected.len() + self.errors) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

fn host_port(base: &str) -> Result<(String, String)> {
    let u = url::Url::parse(base).map_err(|e| Error::config(base.to_string(), e.to_string()))?;
    let host = u
        .host_str()
        .ok_or_else(|| Error::config(base.to_string(), "URL has no host"))?
        .to_string();
    let port = u.port_or_known_default().unwrap_or(80);
    Ok((format!("{host}:{port}"), host))
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: &str, timeout: Duration) -> Result<Sender> {
    let stream = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| {
            Error::unreachable(
                addr.to_string(),
                format!("no connection within {timeout:?}"),
            )
        })?
        .map_err(|e| Error::unreachable(addr.to_string(), e))?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| Error::unreachable(addr.to_string(), e))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Block the current (dedicated) thread until `t`: nanosleep to ~150 µs before, then poll the
/// clock with `sched_yield`, so a client pinned to one core still lets the connection tasks run.
fn wait_precisely(t: Instant) {
    let now = Instant::now();
    if t > now + Duration::from_micros(200) {
        std::thread::sleep(t - now - Duration::from_micros(150));
    }
    while Instant::now() < t {
        std::thread::yield_now();
    }
}

fn now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

struct ConnResult {
    corrected: Histogram<u64>,
    naive: Histogram<u64>,
    pacing: Histogram<u64>,
    tick_age: Histogram<u64>,
    errors: u64,
    ok: u64,
    first_error: Option<String>,
}

/// What one connection does: its share of the requests, its timing, its stop signals.
struct ConnPlan {
    c: u64,
    conns: u64,
    gap: Option<Duration>,
    start: Instant,
    end: Option<Instant>,
    measure_from: Instant,
    per_conn_requests: Option<u64>,
    /// Open loop: requests over all connections, warm-up included.
    total: Option<u64>,
    timeout: Duration,
    max_err: Option<f64>,
    probe: Probe,
    host: String,
    addr: String,
    stop: CancellationToken,
}

impl ConnResult {
    fn new() -> ConnResult {
        ConnResult {
            corrected: histogram(),
            naive: histogram(),
            pacing: histogram(),
            tick_age: histogram(),
            errors: 0,
            ok: 0,
            first_error: None,
        }
    }
}

/// One connection's requests, closed loop or self-paced open loop.
async fn conn_loop(mut sender: Sender, plan: ConnPlan) -> ConnResult {
    let ConnPlan {
        c,
        conns,
        gap,
        start,
        end,
        measure_from,
        per_conn_requests,
        total,
        timeout,
        max_err,
        probe,
        host,
        addr,
        stop,
    } = plan;
    let mut r = ConnResult::new();
    let mut i: u64 = 0;
    let mut measured: u64 = 0;
    loop {
        if stop.is_cancelled() {
            break;
        }
        let (n, intended) = if let Some(g) = gap {
            let k = c + i * conns;
            let t = start + g.mul_f64(k as f64);
            if end.is_some_and(|e| t >= e) || total.is_some_and(|n| k >= n) {
                break;
            }
            // Long waits on the runtime (cancellable); the last stretch precisely, on this
            // connection's own thread.
            if let Some(early) = t.checked_sub(Duration::from_millis(2))
                && early > Instant::now()
            {
                tokio::select! {
                    _ = tokio::time::sleep_until(early.into()) => {}
                    _ = stop.cancelled() => break,
                }
            }
            wait_precisely(t);
            (k, t)
        } else {
            let now = Instant::now();
            if end.is_some_and(|e| now >= e) || per_conn_requests.is_some_and(|n| measured >= n) {
                break;
            }
            if now < start {
                tokio::time::sleep_until(start.into()).await;
            }
            (i * conns + c, Instant::now())
        };
        let sent = Instant::now();
        let mut req = hyper::Request::builder()
            .method(probe.method.clone())
            .uri((probe.path)(n))
            .header(hyper::header::HOST, host.as_str());
        let body = match &probe.body {
            Some(b) => {
                req = req.header(hyper::header::CONTENT_TYPE, "application/json");
                Full::new(Bytes::from((b)(n)))
            }
            None => Full::new(Bytes::new()),
        };
        let req = req.body(body).expect("valid request");
        let result = tokio::time::timeout(timeout, async {
            sender.ready().await?;
            let resp = sender.send_request(req).await?;
            let status = resp.status();
            let bytes = resp.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, bytes))
        })
        .await;
        let done = Instant::now();
        let recording = intended >= measure_from;
        match result {
            Ok(Ok((status, bytes))) if status.is_success() => {
                if recording {
                    let _ = r
                        .corrected
                        .record((done - intended).as_micros().max(1) as u64);
                    let _ = r.naive.record((done - sent).as_micros().max(1) as u64);
                    if gap.is_some() {
                        let _ = r.pacing.record(
                            sent.saturating_duration_since(intended).as_micros().max(1) as u64,
                        );
                    }
                    if probe.tick_age
                        && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes)
                        && let Some(p) = v
                            .as_array()
                            .and_then(|a| a.last())
                            .and_then(|t| t["published_unix_ns"].as_u64())
                    {
                        let age = now_ns().saturating_sub(p as u128) / 1000;
                        let _ = r.tick_age.record((age as u64).max(1));
                    }
                    r.ok += 1;
                }
            }
            other => {
                let msg = match other {
                    Ok(Ok((status, bytes))) => format!(
                        "HTTP {status}: {}",
                        String::from_utf8_lossy(&bytes)
                            .chars()
                            .take(200)
                            .collect::<String>()
                    ),
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => format!("no answer within {timeout:?}"),
                };
                if recording {
                    r.errors += 1;
                }
                r.first_error.get_or_insert(msg);
                // A broken connection is replaced, not retried on.
                if sender.is_closed() {
                    match connect(&addr, timeout).await {
                        Ok(s) => sender = s,
                        Err(_) => break,
                    }
                }
            }
        }
        if recording {
            measured += 1;
        }
        if let Some(m) = max_err
            && measured >= 20
            && r.errors as f64 / measured as f64 > m
        {
            stop.cancel();
            break;
        }
        i += 1;
    }
    r
}

/// Run `probe` under `load`. A progress line every 5 s on stderr.
pub async fn measure(probe: &Probe, load: &Load, cancel: &CancellationToken) -> Result<Measured> {
    let (addr, host) = host_port(&probe.base)?;
    let conns = load.connections.max(1);
    let start = Instant::now() + Duration::from_millis(20);
    let measure_from = start + load.warmup;
    let end = load.duration.map(|d| measure_from + d);
    let per_conn_requests = load.requests.map(|n| n.div_ceil(conns as u64));
    // Time between two requests over all connections (open loop).
    let gap = load
        .rate
        .map(|r| Duration::from_secs_f64(1.0 / r.max(0.001)));
    let stop = cancel.child_token();
    let mut set = tokio::task::JoinSet::new();
    let warm = gap.map_or(0, |g| (load.warmup.as_secs_f64() / g.as_secs_f64()) as u64);
    // One connection here first, so an unreachable target fails the run before any load.
    drop(connect(&addr, load.timeout).await?);
    for c in 0..conns {
        let plan = ConnPlan {
            c: c as u64,
            conns: conns as u64,
            gap,
            start,
            end,
            measure_from,
            per_conn_requests,
            total: load.requests.map(|n| n + warm),
            timeout: load.timeout,
            max_err: load.max_error_ratio,
            probe: probe.clone(),
            host: host.clone(),
            addr: addr.clone(),
            stop: stop.clone(),
        };
        // Each connection runs on a thread of its own: a current-thread runtime that drives
        // both its requests and its socket, so nothing has to wake another thread between "due"
        // and "sent" (open loop: it paces itself; request k = c + j·conns is due at
        // start + k·gap, a connection still busy sends late and the latency still counts from
        // the due time — coordinated-omission correction) or between "answered" and "next"
        // (closed loop).
        set.spawn_blocking(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a current-thread runtime");
            rt.block_on(async move {
                match connect(&plan.addr, plan.timeout).await {
                    Ok(s) => conn_loop(s, plan).await,
                    Err(e) => {
                        let mut r = ConnResult::new();
                        r.first_error = Some(e.to_string());
                        r
                    }
                }
            })
        });
    }
    let mut out = empty();
    let mut note = Every::new(Duration::from_secs(5));
    loop {
        tokio::select! {
            joined = set.join_next() => match joined {
                Some(Ok(r)) => {
                    out.corrected.add(&r.corrected).ok();
                    out.naive.add(&r.naive).ok();
                    out.pacing.add(&r.pacing).ok();
                    out.tick_age.add(&r.tick_age).ok();
                    out.errors += r.errors;
                    if out.first_error.is_none() { out.first_error = r.first_error; }
                }
                Some(Err(e)) => return Err(Error::Conflict(format!("load task failed: {e}"))),
                None => break,
            },
            _ = tokio::time::sleep(Duration::from_secs(5)) => {
                if note.due() {
                    tracing::info!("measuring {}: {}s elapsed", probe.name, start.elapsed().as_secs());
                }
            }
        }
    }
    out.elapsed = Instant::now().saturating_duration_since(measure_from);
    if stop.is_cancelled() && !cancel.is_cancelled() {
        out.stopped_early = Some(format!(
            "stopped early: error share above {:.1} %",
            load.max_error_ratio.unwrap_or(0.0) * 100.0
        ));
    }
    Ok(out)
}

// ---------------------------------------------------------------- A/B: candidate vs live

/// Both colours measured in alternating slices of the same window (candidate, reference,
/// reference, candidate, …), so whatever the machine does to one side it does to the other.
#[derive(Clone)]
pub struct Interleaved {
    pub candidate: Measured,
    pub reference: Measured,
    /// Per slice pair: (candidate, reference) histograms, in time order.
    pub pairs: Vec<(Histogram<u64>, Histogram<u64>)>,
    /// Share of CPU time stolen by the hypervisor during the run (Linux /proc/stat), if known.
    pub steal: Option<f64>,
}

impl Interleaved {
    /// Adds another server's run measured over the same slices: the fleet's verdict is judged on
    /// every server's samples together, with the power (and the false-alarm rate) of one run.
    pub fn absorb(&mut self, other: &Interleaved) {
        // One set of bounds for every histogram here, so adding cannot go out of range.
        let add = |a: &mut Histogram<u64>, b: &Histogram<u64>| a.add(b).expect("shared bounds");
        add(&mut self.candidate.corrected, &other.candidate.corrected);
        add(&mut self.reference.corrected, &other.reference.corrected);
        for (i, (c, r)) in other.pairs.iter().enumerate() {
            match self.pairs.get_mut(i) {
                Some((sc, sr)) => {
                    add(sc, c);
                    add(sr, r);
                }
                None => self.pairs.push((c.clone(), r.clone())),
            }
        }
    }
}

/// CPU time counters of /proc/stat's `cpu` line: (steal, total), in ticks.
fn cpu_ticks() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    Some((*v.get(7)?, v.iter().take(8).sum()))
}

fn merge(into: &mut Measured, m: &Measured) {
    into.corrected.add(&m.corrected).ok();
    into.naive.add(&m.naive).ok();
    into.pacing.add(&m.pacing).ok();
    into.tick_age.add(&m.tick_age).ok();
    into.errors += m.errors;
    into.elapsed += m.elapsed;
    if into.first_error.is_none() {
        into.first_error.clone_from(&m.first_error);
    }
    if into.stopped_early.is_none() {
        into.stopped_early.clone_from(&m.stopped_early);
    }
}

fn empty() -> Measured {
    Measured {
        corrected: histogram(),
        naive: histogram(),
        pacing: histogram(),
        tick_age: histogram(),
        errors: 0,
        first_error: None,
        elapsed: Duration::ZERO,
        stopped_early: None,
    }
}

/// `load.duration` per side, in `slice`-long turns after one warm-up of each side.
pub async fn interleaved(
    candidate: &Probe,
    reference: &Probe,
    load: &Load,
    slice: Duration,
    cancel: &CancellationToken,
) -> Result<Interleaved> {
    let total = load.duration.unwrap_or(Duration::from_secs(30));
    let n = (total.as_secs_f64() / slice.as_secs_f64()).ceil().max(1.0) as usize;
    let one = |warmup: Duration, duration: Duration| Load {
        warmup,
        duration: Some(duration),
        requests: None,
        ..*load
    };
    // Warm both (connections, caches) before the first counted slice; discarded.
    for p in [candidate, reference] {
        measure(p, &one(Duration::ZERO, load.warmup.max(slice)), cancel).await?;
    }
    let before = cpu_ticks();
    let (mut c_all, mut r_all, mut pairs) = (empty(), empty(), vec![]);
    let mut note = Every::new(Duration::from_secs(5));
    for i in 0..n {
        if cancel.is_cancelled() {
            break;
        }
        // ABBA order: neither side always goes first after the other.
        let (c, r) = if i % 2 == 0 {
            let c = measure(candidate, &one(Duration::ZERO, slice), cancel).await?;
            let r = measure(reference, &one(Duration::ZERO, slice), cancel).await?;
            (c, r)
        } else {
            let r = measure(reference, &one(Duration::ZERO, slice), cancel).await?;
            let c = measure(candidate, &one(Duration::ZERO, slice), cancel).await?;
            (c, r)
        };
        merge(&mut c_all, &c);
        merge(&mut r_all, &r);
        pairs.push((c.corrected, r.corrected));
        if note.due() {
            tracing::info!(
                "measuring {} against {}: slice pair {}/{n}",
                candidate.name,
                reference.base,
                i + 1
            );
        }
        if c_all.stopped_early.is_some() || r_all.stopped_early.is_some() {
            break;
        }
    }
    let steal = match (before, cpu_ticks()) {
        (Some((s0, t0)), Some((s1, t1))) if t1 > t0 => {
            Some(s1.saturating_sub(s0) as f64 / (t1 - t0) as f64)
        }
        _ => None,
    };
    Ok(Interleaved {
        candidate: c_all,
        reference: r_all,
        pairs,
        steal,
    })
}

/// Samples a side needs before percentile `p` is gated: at least 10 above it (p50 ≥ 20,
/// p99 ≥ 1 000, p99.9 ≥ 10 000); fewer is one or two outliers, not a distribution (0008).
pub fn samples_to_gate(p: f64) -> u64 {
    (10.0 / (1.0 - p / 100.0) - 1e-6).ceil() as u64
}

/// How one percentile of the candidate compares with the live colour's in the same window.
#[derive(Debug, Clone, PartialEq)]
pub enum AbOutcome {
    Pass,
    Fail,
    /// Too few samples above this percentile to call it a distribution: reported, not gated.
    NotGated,
    /// The machine stalled (hypervisor steal) while the candidate looked slower: a human decides.
    Inconclusive,
}

#[derive(Debug, Clone)]
pub struct AbVerdict {
    pub outcome: AbOutcome,
    pub why: String,
    pub reference_us: u64,
    pub candidate_us: u64,
    pub delta_pct: f64,
    /// Slice pairs in which the candidate was slower, of those that differed.
    pub slower_pairs: (usize, usize),
    pub p_value: f64,
}

/// Sign test over paired slices: the candidate fails a percentile only when it is worse by
/// more than `threshold_pct` overall, by more than `floor_us` in absolute time (a
/// sub-millisecond change on loopback is noise), and slower in significantly many slice pairs
/// (one-sided p < 0.02) — a pause that hits one slice cannot make it fail. A stalled machine
/// (`steal` above 10 %) turns a would-be failure into inconclusive, with the reason.
pub fn ab_verdict(run: &Interleaved, p: f64, threshold_pct: f64, floor_us: u64) -> AbVerdict {
    let (c, r) = (&run.candidate.corrected, &run.reference.corrected);
    let (cv, rv) = (c.value_at_percentile(p), r.value_at_percentile(p));
    let delta_pct = (cv as f64 - rv as f64) / (rv.max(1) as f64) * 100.0;
    // Per pair, each side's percentile; only pairs with samples on both sides count.
    let (mut slower, mut differ) = (0, 0);
    for (pc, pr) in &run.pairs {
        if pc.is_empty() || pr.is_empty() {
            continue;
        }
        let (a, b) = (pc.value_at_percentile(p), pr.value_at_percentile(p));
        if a != b {
            differ += 1;
            slower += (a > b) as usize;
        }
    }
    let p_value = crate::metrics::binomial_sf(slower as f64, differ as f64, 0.5);
    let need = samples_to_gate(p);
    let mut v = AbVerdict {
        outcome: AbOutcome::Pass,
        why: String::new(),
        reference_us: rv,
        candidate_us: cv,
        delta_pct,
        slower_pairs: (slower, differ),
        p_value,
    };
    let ms = |us: u64| format!("{:.3} ms", us as f64 / 1000.0);
    let head = format!(
        "live {} → candidate {} ({delta_pct:+.1}%), slower in {slower} of {differ} slice pairs (sign test p={p_value:.3})",
        ms(rv),
        ms(cv)
    );
    if c.len().min(r.len()) < need {
        v.outcome = AbOutcome::NotGated;
        v.why = format!(
            "{head}; p{p} needs ≥ {need} samples per side, have {} and {}: measure longer or at a higher rate",
            c.len(),
            r.len()
        );
        return v;
    }
    let worse = delta_pct > threshold_pct;
    let big = cv.saturating_sub(rv) > floor_us;
    let consistent = p_value < 0.02;
    (v.outcome, v.why) = match (worse, big, consistent) {
        (true, true, true) => match run.steal.filter(|s| *s > 0.10) {
            Some(s) => (
                AbOutcome::Inconclusive,
                format!(
                    "{head}; but {:.0} % of CPU time was stolen by the hypervisor during the run: not judged",
                    s * 100.0
                ),
            ),
            None => (
                AbOutcome::Fail,
                format!(
                    "{head}: above +{threshold_pct}% and the {} ms noise floor",
                    floor_us as f64 / 1000.0
                ),
            ),
        },
        (true, false, _) => (
            AbOutcome::Pass,
            format!(
                "{head}; within the {} ms noise floor",
                floor_us as f64 / 1000.0
            ),
        ),
        (true, true, false) => (
            AbOutcome::Pass,
            format!("{head}; not consistently slower: noise, not a regression"),
        ),
        (false, _, _) => (AbOutcome::Pass, format!("{head}; within +{threshold_pct}%")),
    };
    v
}

// ---------------------------------------------------------------- baselines and files

#[derive(serde::Serialize, serde::Deserialize)]
pub struct BaselineFile {
    pub format: u32,
    pub recorded: String,
    /// metric → base64 of the HdrHistogram V2+DEFLATE serialisation of the corrected histogram.
    pub metrics: std::collections::BTreeMap<String, String>,
}

pub fn encode(h: &Histogram<u64>) -> String {
    use base64::Engine;
    use hdrhistogram::serialization::Serializer;
    let mut buf = vec![];
    hdrhistogram::serialization::V2DeflateSerializer::new()
        .serialize(h, &mut buf)
        .expect("serialise to memory");
    base64::engine::general_purpose::STANDARD.encode(buf)
}

crate::failure!(
    /// A saved histogram that does not decode.
    CorruptHistogram
);

pub fn decode(s: &str) -> std::result::Result<Histogram<u64>, CorruptHistogram> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| CorruptHistogram(e.to_string()))?;
    hdrhistogram::serialization::Deserializer::new()
        .deserialize(&mut std::io::Cursor::new(bytes))
        .map_err(|e| CorruptHistogram(format!("{e:?}")))
}

/// The classic `.hgrm` percentile distribution (values in milliseconds).
pub fn hgrm(h: &Histogram<u64>) -> String {
    let mut out = String::from("       Value     Percentile TotalCount 1/(1-Percentile)\n\n");
    for v in h.iter_quantiles(5) {
        let q = v.quantile_iterated_to();
        let inv = if q < 1.0 {
            format!("{:.2}", 1.0 / (1.0 - q))
        } else {
            "inf".into()
        };
        out.push_str(&format!(
            "{:12.3} {:14.12} {:10} {:>14}\n",
            v.value_iterated_to() as f64 / 1000.0,
            q,
            v.count_since_last_iteration(),
            inv
        ));
    }
    out.push_str(&format!(
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]\n#[Max     = {:12.3}, Total count    = {:12}]\n",
        h.mean() / 1000.0,
        h.stdev() / 1000.0,
        h.max() as f64 / 1000.0,
        h.len()
    ));
    out
}

/// Latency by percentile on a log-scaled 1/(1-p) axis, one line per (label, histogram).
/// Latency by percentile (x: 0 % … 99.999 % on a log-of-tail scale), one curve per histogram,
/// with y-axis ticks and gridlines in ms. A curve stops where its samples stop: beyond the
/// percentile its sample count can resolve (1 − q < 1/n) it would only repeat the maximum.
pub fn svg(title: &str, series: &[(String, &Histogram<u64>)]) -> String {
    use crate::html::{nice_ticks, short};
    use maud::html;
    let (w, h, left, right, top, bottom) = (640.0, 360.0, 64.0, 20.0, 40.0, 44.0);
    let xmax: f64 = 5.0; // up to 99.999 %
    let reach = |n: u64| (n.max(1) as f64).log10().min(xmax);
    let ymax = series
        .iter()
        .map(|(_, s)| s.value_at_quantile(1.0 - 10f64.powf(-reach(s.len()))) as f64 / 1000.0)
        .fold(0.001, f64::max);
    let ticks = nice_ticks(0.0, ymax, 5);
    let ytop = *ticks.last().unwrap_or(&ymax);
    let x = |v: f64| left + v / xmax * (w - left - right);
    let y = |ms: f64| h - bottom - ms / ytop * (h - top - bottom);
    let colors = ["#6e7781", "#0969da", "#cf222e", "#1a7f37"];
    let curve = |hist: &Histogram<u64>| -> String {
        let end = reach(hist.len());
        let steps = (end / xmax * 100.0).ceil().max(1.0) as usize;
        (0..=steps)
            .map(|i| {
                let xv = end * i as f64 / steps as f64;
                let q = 1.0 - 10f64.powf(-xv);
                format!(
                    "{:.1},{:.1}",
                    x(xv),
                    y(hist.value_at_quantile(q) as f64 / 1000.0)
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let markup = html! {
        svg xmlns="http://www.w3.org/2000/svg" width=(w) height=(h) font-family="sans-serif" font-size="11" {
            rect width="100%" height="100%" fill="white" {}
            text x=(left) y="20" font-size="14" { (title) }
            @for t in &ticks {
                line x1=(left) x2=(w - right) y1=(y(*t)) y2=(y(*t)) stroke="#e5e5e5" {}
                text x=(left - 6.0) y=(y(*t) + 4.0) text-anchor="end" { (short(*t)) " ms" }
            }
            line x1=(left) x2=(left) y1=(top) y2=(h - bottom) stroke="#555" {}
            line x1=(left) x2=(w - right) y1=(h - bottom) y2=(h - bottom) stroke="#555" {}
            @for (i, lbl) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"].iter().enumerate() {
                line x1=(x(i as f64)) x2=(x(i as f64)) y1=(top) y2=(h - bottom) stroke="#f0f0f0" {}
                text x=(x(i as f64)) y=(h - bottom + 15.0) text-anchor="middle" { (lbl) }
            }
            text x=((left + w - right) / 2.0) y=(h - 8.0) text-anchor="middle" { "percentile" }
            @for (k, (label, hist)) in series.iter().enumerate() {
                polyline fill="none" stroke=(colors[k % 4]) stroke-width="2" points=(curve(hist)) {}
                text x=(left + 10.0) y=(top + 14.0 * (k as f64 + 1.0)) fill=(colors[k % 4]) font-size="12" {
                    (label) " (n=" (hist.len()) ")"
                }
            }
        }
    };
    crate::redact::redact(&markup.into_string()) + "\n"
}
