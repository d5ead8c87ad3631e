//! totem-pps: packets per second a path sustains (see `totem_tools::pps`).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use totem_tools::cli::EndpointArgs;
use totem_tools::link;
use totem_tools::{hosts, pps, server};

/// Default UDP port of totem-pps.
const DEFAULT_PORT: u16 = 4322;
/// Exit status for usage and runtime errors.
const EXIT_ERROR: u8 = 1;

#[derive(Debug, Parser)]
#[command(
    mut_arg("server", |a| a.help("Serve on ADDR[:PORT] (default port 4322) until interrupted")),
    name = "totem-pps",
    version,
    about = "Packet rate a path sustains: run --server on one end, --client on the other."
)]
struct Args {
    #[command(flatten)]
    end: EndpointArgs,
    /// Datagram size on the wire, bytes.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Seconds per run.
    #[arg(long, default_value_t = 5.0, allow_negative_numbers = true)]
    duration: f64,
    /// Target packets per second (default: as fast as the link takes them).
    #[arg(long)]
    rate: Option<u64>,
    /// Datagrams per send/receive batch (1..=1024).
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Search the highest rate with loss under --max-loss.
    #[arg(long)]
    find_max: bool,
    /// Loss limit for --find-max, percent.
    #[arg(long, default_value_t = 1.0)]
    max_loss: f64,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("totem-pps: {msg}");
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
    if !(1..=1024).contains(&args.batch) {
        return fail(format!("--batch {} must be 1..=1024", args.batch));
    }
    let config = match args.end.link_config(args.batch) {
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
            "totem-pps server: listening on {addr}, io {} batch {}, {}",
            link.backend(),
            link.batch(),
            if link.encrypted() {
                "AES-256-GCM"
            } else {
                "clear"
            }
        );
        let mut out = std::io::stdout();
        return match server::serve(&mut link, &stop, &mut out, "totem-pps") {
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
    let opts = match pps::validate(args.size, args.duration, args.rate, args.end.encrypt) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    let mut link = match pps::open(server_addr, &config) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    if args.find_max {
        let json = args.json;
        let result = pps::find_max(&mut link, server_addr, &opts, args.max_loss, |trial| {
            if !json {
                println!("{}\n", pps::render(trial));
            }
        });
        return match result {
            Ok((trials, best)) => {
                if json {
                    let obj = serde_json::json!({ "max_loss_pct": args.max_loss, "best": best, "trials": trials });
                    println!("{obj}");
                } else {
                    match &best {
                        Some(b) => println!(
                            "max rate with loss < {} %: {:.0} pps ({:.1} Mbit/s)",
                            args.max_loss, b.recv_pps, b.recv_mbit_s
                        ),
                        None => println!("no rate tried had loss < {} %", args.max_loss),
                    }
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        };
    }
    match pps::run_once(&mut link, server_addr, &opts) {
        Ok(r) => {
            if args.json {
                match serde_json::to_string(&r) {
                    Ok(s) => println!("{s}"),
                    Err(e) => return fail(e),
                }
            } else {
                println!("totem-pps: to {server_addr}\n{}", pps::render(&r));
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}
