//! totem-qnetd: the quorum arbiter.
fn main() {
    eprintln!("totem-qnetd: not built yet");
    std::process::exit(1);
}
