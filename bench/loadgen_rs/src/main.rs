//! `lc-loadgen --role viewers [--tick-frames]`: the viewers role of `bench/fanout/loadgen.py`,
//! compiled, so that at 15 000 viewers on a 2-core machine the fan-out benchmark measures the
//! server rather than its clients. Same command line, same JSON-lines requests and replies on
//! stdin/stdout, same ledger semantics; the publisher stays in Python (one connection).

mod clock;
mod conn;
mod connect;
mod latency;
mod ledger;
mod msgpack;
mod payload;
mod receive;
mod requests;
mod viewers;
mod ws;

use std::process::ExitCode;

const USAGE: &str = "usage: lc-loadgen --role viewers [--tick-frames]";

fn main() -> ExitCode {
    let mut role = None;
    let mut tick_frames = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--role" => role = args.next(),
            "--tick-frames" => tick_frames = true,
            "-h" | "--help" => {
                println!("{USAGE}\nServes bench.fanout's JSON-lines requests on stdin (see bench/fanout/loadgen.py).");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("lc-loadgen: unknown argument {other:?}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    match role.as_deref() {
        Some("viewers") => {}
        Some("publisher") => {
            eprintln!("lc-loadgen: --role publisher is not implemented; run `python -m bench.fanout.loadgen`");
            return ExitCode::from(2);
        }
        _ => {
            eprintln!("lc-loadgen: --role viewers is required\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    match viewers::Viewers::new(tick_frames).and_then(viewers::Viewers::run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("lc-loadgen: {err}");
            ExitCode::FAILURE
        }
    }
}
