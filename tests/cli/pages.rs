//! The pages people read, opened in a real headless Chromium (Debian's package) once for all:
//! compare_metrics' HTML, the deployment report and a latency chart. Each renders (a screenshot
//! that is not blank), logs no console error, and reads right as text: environment and
//! verdict first, units, why a rollback happened.

use crate::support::{config, run};
use std::path::{Path, PathBuf};
use std::process::Command;

fn chromium() -> PathBuf {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .map(|c| Command::new("which").arg(c).output())
        .filter_map(|o| o.ok())
        .find(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .expect("Chromium is needed for the page checks: apt-get install -y chromium (scripts/test installs it as root)")
}

/// Renders `page` headless: (screenshot PNG, DOM text, console lines).
fn open(page: &Path, out: &Path) -> (PathBuf, String, Vec<String>) {
    let profile = tempfile::tempdir().unwrap();
    let flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--window-size=1000,900",
        "--enable-logging=stderr",
        "--v=0",
    ];
    let png = out.with_extension("png");
    let url = format!("file://{}", page.display());
    let shot = Command::new(chromium())
        .args(flags)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(&url)
        .output()
        .unwrap();
    let dom = Command::new(chromium())
        .args(flags)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .unwrap();
    let console = [&shot.stderr, &dom.stderr]
        .iter()
        .flat_map(|e| {
            String::from_utf8_lossy(e)
                .lines()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught"))
        .collect();
    assert!(
        png.exists(),
        "no screenshot of {url}: {}",
        String::from_utf8_lossy(&shot.stderr)
    );
    (
        png,
        String::from_utf8_lossy(&dom.stdout).into_owned(),
        console,
    )
}

/// Share of pixels that are not the page's background: a blank page scores ~0.
fn ink(png: &Path) -> f64 {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let bpp = info.line_size / info.width as usize;
    let px: Vec<&[u8]> = buf[..info.buffer_size()].chunks(bpp).collect();
    let bg = px[0];
    px.iter().filter(|p| p[..3] != bg[..3]).count() as f64 / px.len() as f64
}

fn figures(dir: &Path, name: &str, p99: &[f64], errors: f64, trials: f64, start: f64) -> PathBuf {
    let doc = serde_json::json!({
        "format": 1,
        "window": {"start": start, "end": start + 15.0 * (p99.len() as f64 - 1.0), "step": 15.0},
        "metrics": {
            "p99_latency": {"kind": "series", "samples": p99},
            "error_rate": {"kind": "proportion", "events": errors, "trials": trials},
        }
    });
    let p = dir.join(name);
    std::fs::write(&p, doc.to_string()).unwrap();
    p
}

#[test]
fn pages_render_in_a_real_browser_and_read_right() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // compare_metrics: a latency regression, judged and charted.
    let (_c, cfg) = config(
        "[environments.staging]\nprometheus = \"http://127.0.0.1:9\"\n\
         [[environments.staging.metrics]]\nname = \"p99_latency\"\nkind = \"series\"\nquery = \"q\"\ndirection = \"lower\"\ntolerance_pct = 10\nmax = 0.02\n\
         [[environments.staging.metrics]]\nname = \"error_rate\"\nkind = \"proportion\"\nevents = \"e\"\ntrials = \"t\"\ndirection = \"lower\"\ntolerance_pct = 100\n",
    );
    let now = chrono::Utc::now().timestamp() as f64;
    let base: Vec<f64> = (0..40).map(|i| 0.010 + (i % 5) as f64 * 0.0002).collect();
    let cur: Vec<f64> = (0..40).map(|i| 0.016 + (i % 5) as f64 * 0.0002).collect();
    let b = figures(d, "b.json", &base, 2.0, 10_000.0, now - 86_400.0 - 600.0);
    let c = figures(d, "c.json", &cur, 3.0, 10_000.0, now - 600.0);
    let cm = d.join("compare.html");
    let r = run(
        "compare_metrics",
        &[
            "--config",
            cfg.to_str().unwrap(),
            "-e",
            "staging",
            "--baseline",
            b.to_str().unwrap(),
            "--current",
            c.to_str().unwrap(),
            "--html",
            cm.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    // The deployment report: a rollback and why it happened.
    let lines: Vec<String> =
        crate::deployment_report::entries(chrono::Utc::now() - chrono::Duration::hours(3))
            .iter()
            .map(|e| serde_json::to_string(e).unwrap())
            .collect();
    std::fs::write(d.join("journal-local.jsonl"), lines.join("\n")).unwrap();
    let (_c2, cfg2) = config("[environments.local]\n");
    let dr = d.join("report.html");
    let r = run(
        "generate_deployment_report",
        &[
            "--config",
            cfg2.to_str().unwrap(),
            "--journal-dir",
            d.to_str().unwrap(),
            "--html",
            dr.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    // A latency chart of 300 samples: the curve must stop near p99.7, not run to p99.999.
    let mut h = deploykit::latency::histogram();
    for i in 0..300u64 {
        h.record(200 + (i * 7919) % 900).unwrap();
    }
    let svg = d.join("latency.svg");
    std::fs::write(
        &svg,
        deploykit::latency::svg(
            "order latency by percentile",
            &[("order current".into(), &h)],
        ),
    )
    .unwrap();

    for (page, must) in [
        (
            &cm,
            vec![
                "compare_metrics — staging",
                "FAIL",
                " ms",
                "limit",
                "baseline",
                "current",
            ],
        ),
        (
            &dr,
            vec!["Deployments — local", "watch failed: error_rate: 30%"],
        ),
        (&svg, vec!["order latency by percentile", " ms", "99.9%"]),
    ] {
        let (png, dom, console) = open(page, &d.join(page.file_name().unwrap()));
        assert!(
            console.is_empty(),
            "{}: console errors {console:?}",
            page.display()
        );
        let share = ink(&png);
        assert!(
            share > 0.01,
            "{}: the screenshot is blank ({share:.4} ink)",
            page.display()
        );
        for m in must {
            assert!(
                dom.contains(m),
                "{} does not read `{m}`:\n{dom}",
                page.display()
            );
        }
    }
    // The verdict comes first on the compare page: before any table or chart.
    let page = std::fs::read_to_string(&cm).unwrap();
    let (verdict, table) = (
        page.find("class=\"verdict fail\"").unwrap(),
        page.find("<table>").unwrap(),
    );
    assert!(verdict < table);
    // Units a person reads: 10 ms, not 0.01 (s); the limit line drawn at 20 ms.
    assert!(page.contains("10.") && page.contains(" ms"), "{page}");
    assert!(page.contains("stroke-dasharray"), "no limit line: {page}");
}
