//! `link-pps`: packets per second over one loopback link, for 64 and 1200-byte payloads, through
//! the raw sendmmsg/recvmmsg baseline, the transport's socket layer on each backend, and the whole
//! transport with and without AES-256-GCM; prints the median of `--runs` and the ratio to the
//! baseline measured in the same run.

use std::time::Duration;

use clap::Parser;
use totem_benches::{link_io, link_set, measure, median, raw};
use totem_transport::io::Backend;

#[derive(Parser, Debug)]
#[command(about = "Packets per second over one loopback link (issue 2 §8)")]
struct Args {
    /// Measurement window of each run, seconds.
    #[arg(long, default_value_t = 3.0)]
    duration: f64,
    /// Runs per row; the table shows the median.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Payload sizes in bytes.
    #[arg(long, value_delimiter = ',', default_values_t = [64usize, 1200])]
    payloads: Vec<usize>,
}

#[derive(Clone, Copy, Debug)]
enum Path {
    Raw,
    Io(Backend),
    Set(Backend, bool),
}

impl Path {
    fn label(self) -> (&'static str, &'static str, &'static str) {
        let backend = |b: Backend| {
            if b == Backend::Uring {
                "io_uring"
            } else {
                "mmsg"
            }
        };
        match self {
            Path::Raw => ("raw sendmmsg/recvmmsg", "-", "off"),
            Path::Io(b) => ("transport io (LinkIo)", backend(b), "off"),
            Path::Set(b, false) => ("transport LinkSet", backend(b), "off"),
            Path::Set(b, true) => ("transport LinkSet", backend(b), "aes-256-gcm"),
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let window = Duration::from_secs_f64(args.duration.max(0.1));
    let paths = [
        Path::Raw,
        Path::Io(Backend::Uring),
        Path::Io(Backend::Mmsg),
        Path::Set(Backend::Uring, false),
        Path::Set(Backend::Mmsg, false),
        Path::Set(Backend::Uring, true),
        Path::Set(Backend::Mmsg, true),
    ];
    println!(
        "link-pps: duration {:.1} s, runs {}, median shown; nproc {}",
        window.as_secs_f64(),
        args.runs,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!(
        "{:<24} {:<9} {:>7} {:<12} {:>12} {:>9}",
        "path", "backend", "payload", "crypto", "pps", "vs raw"
    );
    for &payload in &args.payloads {
        // Runs are interleaved (every path once per round) so a change in machine load affects
        // all rows alike instead of one path's runs.
        let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(args.runs); paths.len()];
        for _ in 0..args.runs.max(1) {
            for (index, path) in paths.iter().enumerate() {
                let pps = measure(window, |run| match *path {
                    Path::Raw => raw::start(run, payload),
                    Path::Io(backend) => link_io::start(run, backend, payload),
                    Path::Set(backend, encrypted) => {
                        link_set::start(run, backend, payload, encrypted)
                    }
                })?;
                samples[index].push(pps);
            }
        }
        let raw_pps = median(&mut samples[0].clone());
        for (index, path) in paths.iter().enumerate() {
            let pps = median(&mut samples[index]);
            let (name, backend, crypto) = path.label();
            let ratio = if raw_pps > 0.0 { pps / raw_pps } else { 0.0 };
            println!("{name:<24} {backend:<9} {payload:>7} {crypto:<12} {pps:>12.0} {ratio:>8.2}x");
        }
    }
    Ok(())
}
