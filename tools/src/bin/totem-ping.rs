//! totem-ping: omping-compatible network readiness test (see `totem_tools::ping`).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use totem_tools::ping::{self, options::PingArgs};

/// Exit status for usage and runtime errors (omping exits 1 on them).
const EXIT_ERROR: u8 = 1;
/// Exit status when the network does not meet the requirements.
const EXIT_NOT_READY: u8 = 2;

fn main() -> ExitCode {
    let args = match PingArgs::try_parse() {
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
    if args.version {
        println!(
            "totem-ping {} (totemd; omping 0.0.5 compatible output)",
            totem_tools::VERSION
        );
        return ExitCode::SUCCESS;
    }
    let opts = match args.validate() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("totem-ping: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let stop = totem_tools::signals::stop_flag();
    let mut stdout = std::io::stdout().lock();
    match ping::run(&opts, &mut stdout, &stop) {
        Ok(verdict) if verdict.ready => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(EXIT_NOT_READY),
        Err(e) => {
            eprintln!("totem-ping: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}
