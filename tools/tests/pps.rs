//! totem-pps and totem-latency on loopback: JSON fields, zero loss at a modest rate on both I/O
//! paths, encryption, CPU per packet from both ends, and the errors (absent server, wrong key,
//! impossible rates, port in use).

mod common;

use std::time::{Duration, Instant};

use common::*;

const LIMIT: Duration = Duration::from_secs(30);

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&out.stdout), text(&out.stderr)))
}

fn server(bin: &str, addr: &str, extra: &[&str]) -> Running {
    let mut args = vec!["--server", addr];
    args.extend_from_slice(extra);
    let s = Running::spawn(bin, &args);
    std::thread::sleep(Duration::from_millis(300));
    s
}

#[test]
fn pps_clean_path_on_both_io_paths() {
    let srv = server(PPS, "127.0.0.51:46201", &[]);
    for io in ["mmsg", "auto"] {
        let out = run(
            PPS,
            &[
                "--client",
                "127.0.0.51:46201",
                "--size",
                "1200",
                "--duration",
                "1",
                "--rate",
                "2000",
                "--json",
                "--io",
                io,
                "--batch",
                "16",
            ],
            LIMIT,
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let v = json(&out);
        for field in ["sent_pps", "recv_pps", "loss_pct", "size", "io", "encrypt"] {
            assert!(!v[field].is_null(), "missing {field}: {v}");
        }
        assert_eq!(v["size"], 1200);
        assert_eq!(v["encrypt"], false);
        assert_eq!(v["batch"], 16);
        assert_eq!(v["loss_pct"], 0.0, "{v}");
        assert_eq!(v["sent"], v["received"]);
        let sent = v["sent"].as_u64().unwrap_or(0);
        assert!(
            (1500..=2100).contains(&sent),
            "2000 pps for 1 s sent {sent}"
        );
        assert!(
            v["server_cpu_ns_per_pkt"].as_f64().unwrap_or(0.0) > 0.0,
            "{v}"
        );
        if io == "mmsg" {
            assert_eq!(v["io"], "mmsg");
        }
    }
    let (stdout, _) = srv.stop();
    assert!(stdout.contains("received 2"), "{stdout}");
}

#[test]
fn pps_text_report_and_encryption() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = write_key(dir.path(), "key", 3);
    let other = write_key(dir.path(), "other", 4);
    let key = key.to_str().expect("utf8");
    let srv = server(PPS, "127.0.0.52:46202", &["--encrypt", "--key", key]);
    let out = run(
        PPS,
        &[
            "--client",
            "127.0.0.52:46202",
            "--size",
            "64",
            "--duration",
            "0.5",
            "--rate",
            "1000",
            "--encrypt",
            "--key",
            key,
        ],
        LIMIT,
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("AES-256-GCM"), "{stdout}");
    assert!(stdout.contains("loss      0.000 %"), "{stdout}");
    assert!(stdout.contains("server CPU"), "{stdout}");

    let start = Instant::now();
    let out = run(
        PPS,
        &[
            "--client",
            "127.0.0.52:46202",
            "--duration",
            "0.5",
            "--encrypt",
            "--key",
            other.to_str().expect("utf8"),
        ],
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no server answered"),
        "{}",
        text(&out.stderr)
    );
    assert!(start.elapsed() < Duration::from_secs(8));
    let out = run(
        PPS,
        &["--client", "127.0.0.52:46202", "--duration", "0.5"],
        LIMIT,
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "a clear client against an encrypting server must fail"
    );
    let (_, stderr) = srv.stop();
    assert!(
        stderr.contains("does not open") && stderr.contains("different key"),
        "{stderr}"
    );
    assert!(
        stderr.contains("clear frames but encryption is on"),
        "{stderr}"
    );
}

#[test]
fn pps_find_max_reports_a_best_rate() {
    let srv = server(PPS, "127.0.0.53:46203", &[]);
    let out = run(
        PPS,
        &[
            "--client",
            "127.0.0.53:46203",
            "--size",
            "64",
            "--duration",
            "0.3",
            "--find-max",
            "--json",
            "--max-loss",
            "100",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v = json(&out);
    assert!(v["best"]["recv_pps"].as_f64().unwrap_or(0.0) > 0.0, "{v}");
    assert!(v["trials"].as_array().map_or(0, |t| t.len()) >= 1);
    drop(srv);
}

#[test]
fn pps_errors_are_clear() {
    let start = Instant::now();
    let out = run(
        PPS,
        &["--client", "127.0.0.54:46204", "--duration", "1"],
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("nothing listens at 127.0.0.54:46204") || err.contains("no server answered"),
        "{err}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(6),
        "absent server took {:?}",
        start.elapsed()
    );
    for (args, expected) in [
        (
            &["--client", "127.0.0.1", "--rate", "0"][..],
            "impossible rate",
        ),
        (
            &["--client", "127.0.0.1", "--size", "5"][..],
            "--size 5 must be between",
        ),
        (
            &["--client", "127.0.0.1", "--duration", "-2"][..],
            "--duration",
        ),
        (&["--client", "127.0.0.1", "--batch", "0"][..], "--batch 0"),
        (
            &["--client", "no-such-host.invalid"][..],
            "cannot resolve host",
        ),
        (
            &[
                "--client",
                "127.0.0.1",
                "--encrypt",
                "--key",
                "/nonexistent/key",
            ][..],
            "cannot load the key",
        ),
    ] {
        let out = run(PPS, args, LIMIT);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            text(&out.stderr).contains(expected),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let _busy = std::net::UdpSocket::bind("127.0.0.55:46205").expect("bind");
    let out = run(PPS, &["--server", "127.0.0.55:46205"], LIMIT);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("address already in use"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn latency_histogram_exports() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hgrm = dir.path().join("lat.hgrm");
    let svg = dir.path().join("lat.svg");
    let srv = server(LATENCY, "127.0.0.56:46206", &[]);
    let out = run(
        LATENCY,
        &[
            "--client",
            "127.0.0.56:46206",
            "--rate",
            "500",
            "--duration",
            "1",
            "--json",
            "--hgrm",
            hgrm.to_str().expect("utf8"),
            "--plot",
            svg.to_str().expect("utf8"),
        ],
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v = json(&out);
    assert_eq!(v["sent"], 500);
    assert_eq!(v["received"], 500, "{v}");
    assert_eq!(v["percentiles"].as_array().map(|a| a.len()), Some(7));
    let text_hgrm = std::fs::read_to_string(&hgrm).expect("hgrm");
    let rows = totem_tools::hgrm::parse_rows(&text_hgrm);
    assert_eq!(
        rows.last().map(|r| (r.1, r.2)),
        Some((1.0, 500)),
        "{text_hgrm}"
    );
    assert!(text_hgrm.contains("#[Max     = "));
    let plot = std::fs::read_to_string(&svg).expect("svg");
    assert!(plot.starts_with("<svg") && plot.contains("<polyline"));

    let out = run(
        LATENCY,
        &[
            "--client",
            "127.0.0.56:46206",
            "--rate",
            "200",
            "--duration",
            "0.5",
        ],
        LIMIT,
    );
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("percentile    latency_ms") && stdout.contains("    99.900"),
        "{stdout}"
    );
    drop(srv);

    let out = run(
        LATENCY,
        &["--client", "127.0.0.57:46207", "--duration", "1"],
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(1));
    let out = run(LATENCY, &["--client", "127.0.0.1", "--rate", "0"], LIMIT);
    assert!(text(&out.stderr).contains("impossible rate"));
}
