//! totem-latency: request/response latency distribution (see `totem_tools::latency`).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use totem_tools::cli::EndpointArgs;
use totem_tools::link;
use totem_tools::{client, hgrm, hosts, latency, server, svg};

/// Default UDP port of totem-latency.
const DEFAULT_PORT: u16 = 4323;
/// Exit status for usage and runtime errors.
const EXIT_ERROR: u8 = 1;

#[derive(Debug, Parser)]
#[command(
    mut_arg("server", |a| a.help("Serve on ADDR[:PORT] (default port 4323) until interrupted")),
    name = "totem-latency",
    version,
    about = "Round-trip latency distribution: run --server on one end, --client on the other."
)]
struct Args {
    #[command(flatten)]
    end: EndpointArgs,
    /// Requests per second.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Seconds to run.
    #[arg(long, default_value_t = 10.0, allow_negative_numbers = true)]
    duration: f64,
    /// Request size on the wire, bytes.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Write HdrHistogram's percentile distribution (.hgrm, milliseconds) to FILE.
    #[arg(long, value_name = "FILE")]
    hgrm: Option<PathBuf>,
    /// Write an SVG plot of the latency distribution to FILE.
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("totem-latency: {msg}");
    ExitCode::from(EXIT_ERROR)
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_ERROR)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let config = match args.end.link_config(totem_transport::io::BATCH_MAX_DEFAULT) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let stop = totem_tools::signals::stop_flag();
    if let Some(addr) = &args.end.server {
        let addr = match hosts::parse_endpoint(addr, DEFAULT_PORT) {
            Ok(a) => a,
            Err(e) => return fail(e),
        };
        let mut link = match link::Link::open(addr, &config) {
            Ok(l) => l,
            Err(e) => return fail(e),
        };
        println!(
            "totem-latency server: listening on {addr}, io {}",
            link.backend()
        );
        let mut out = std::io::stdout();
        return match server::serve(&mut link, &stop, &mut out, "totem-latency") {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(e),
        };
    }
    let Some(target) = &args.end.client else {
        return fail("give --server ADDR or --client ADDR");
    };
    let server_addr = match hosts::parse_endpoint(target, DEFAULT_PORT) {
        Ok(a) => a,
        Err(e) => return fail(e),
    };
    let opts = match latency::validate(args.rate, args.duration, args.size, args.end.encrypt) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    let result = client::open_client(server_addr, &config)
        .and_then(|mut link| latency::run(&mut link, server_addr, &opts));
    let r = match result {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    if let Some(path) = &args.hgrm {
        if let Err(e) = std::fs::write(path, hgrm::render(&r.histogram)) {
            return fail(format!("cannot write {}: {e}", path.display()));
        }
    }
    if let Some(path) = &args.plot {
        let title = format!(
            "totem-latency to {} at {}/s, {} B ({})",
            r.server, r.rate, r.size, r.io
        );
        if let Err(e) = std::fs::write(path, svg::render(&r.histogram, &title)) {
            return fail(format!("cannot write {}: {e}", path.display()));
        }
    }
    if args.json {
        match serde_json::to_string(&r) {
            Ok(s) => println!("{s}"),
            Err(e) => return fail(e),
        }
    } else {
        print!("{}", latency::render(&r));
    }
    ExitCode::SUCCESS
}
