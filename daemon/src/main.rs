//! totemd: the cluster communication daemon.
fn main() {
    eprintln!("totemd: not built yet");
    std::process::exit(1);
}
