//! db_migrate vs refinery's plain runner: apply N small migrations on the same server, each
//! runner on a fresh database, alternating, REPEATS times. Prints medians and the ratio.
//!
//! `DATABASE_URL` (admin), `DB_MIGRATE` (our binary, default target/release/db_migrate),
//! `N` (default 500), `REPEATS` (default 3).

use std::process::Command;
use std::time::{Duration, Instant};

fn env_or(k: &str, d: &str) -> String {
    std::env::var(k).unwrap_or_else(|_| d.to_string())
}

fn psql(url: &str, sql: &str) {
    let ok = Command::new("psql")
        .args([url, "-qAtc", sql])
        .status()
        .expect("psql")
        .success();
    assert!(ok, "{sql}");
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let admin = env_or(
        "DATABASE_URL",
        "postgres://postgres@127.0.0.1:5432/postgres",
    );
    let ours = env_or("DB_MIGRATE", "target/release/db_migrate");
    let n: usize = env_or("N", "500").parse().unwrap();
    let repeats: usize = env_or("REPEATS", "3").parse().unwrap();
    let base = admin.rsplit_once('/').unwrap().0.to_string();
    let sql = |i: usize| format!("CREATE TABLE bench_t{i} (id int PRIMARY KEY, v text);");

    let dir = tempfile::tempdir().unwrap();
    for i in 1..=n {
        std::fs::write(dir.path().join(format!("V{i}__t{i}.sql")), sql(i)).unwrap();
    }
    let cfg = dir.path().join("deploy.toml");
    std::fs::write(
        &cfg,
        "[environments.local]\ndatabase = { url_env = \"DATABASE_URL\" }\n",
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    let (mut t_ours, mut t_ref) = (vec![], vec![]);
    for r in 0..repeats {
        // Which runner goes first alternates: neither always meets the colder server.
        let order = if r % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for refinery_now in order {
            if refinery_now {
                // refinery
                let db = format!("bench_refinery_{}_{r}", std::process::id());
                psql(&admin, &format!("CREATE DATABASE {db}"));
                let url = format!("{base}/{db}");
                let migrations: Vec<refinery::Migration> = (1..=n)
                    .map(|i| {
                        refinery::Migration::unapplied(&format!("V{i}__t{i}"), &sql(i)).unwrap()
                    })
                    .collect();
                let took = rt.block_on(async {
                    let (mut client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                        .await
                        .unwrap();
                    tokio::spawn(conn);
                    let t = Instant::now();
                    refinery::Runner::new(&migrations)
                        .run_async(&mut client)
                        .await
                        .unwrap();
                    t.elapsed()
                });
                t_ref.push(took);
                psql(&admin, &format!("DROP DATABASE {db} WITH (FORCE)"));
            } else {
                // ours (the real binary: lock, timeouts, history, sampler)
                let db = format!("bench_ours_{}_{r}", std::process::id());
                psql(&admin, &format!("CREATE DATABASE {db}"));
                let url = format!("{base}/{db}");
                let t = Instant::now();
                let out = Command::new(&ours)
                    .args([
                        "--config",
                        cfg.to_str().unwrap(),
                        "--migrations",
                        dir.path().to_str().unwrap(),
                        "-q",
                        "migrate",
                    ])
                    .env("DATABASE_URL", &url)
                    .output()
                    .expect("run db_migrate");
                let took = t.elapsed();
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                t_ours.push(took);
                psql(&admin, &format!("DROP DATABASE {db} WITH (FORCE)"));
            }
        }
        println!(
            "run {}: db_migrate {:?}, refinery {:?}",
            r + 1,
            t_ours[r],
            t_ref[r]
        );
    }
    let (o, f) = (median(t_ours.clone()), median(t_ref.clone()));
    println!(
        "{n} migrations, median of {repeats}: db_migrate {:.0} ms, refinery {:.0} ms, ratio {:.2}x (spread ours {:.0}–{:.0} ms, refinery {:.0}–{:.0} ms)",
        o.as_secs_f64() * 1e3,
        f.as_secs_f64() * 1e3,
        o.as_secs_f64() / f.as_secs_f64(),
        t_ours.iter().min().unwrap().as_secs_f64() * 1e3,
        t_ours.iter().max().unwrap().as_secs_f64() * 1e3,
        t_ref.iter().min().unwrap().as_secs_f64() * 1e3,
        t_ref.iter().max().unwrap().as_secs_f64() * 1e3,
    );
}
