//! A process-group chat over totemd: joins GROUP, multicasts every line read from standard input
//! with agreed ordering, prints every delivery and membership change. Run it on several nodes:
//! every node prints the same lines in the same order.
//!
//! `cargo run -p totem-client --example group_chat -- [GROUP]` (socket from `TOTEMD_SOCKET` or
//! /run/totemd/totemd.sock).

use std::io::BufRead;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use totem_client::proto::{Event, GroupName, Ordering};
use totem_client::Client;

/// How long to wait for an event before looking at standard input again.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let group = GroupName::new(std::env::args().nth(1).unwrap_or_else(|| "chat".to_owned()))?;
    let mut client = Client::connect_default()?;
    client.join(&group)?;

    let (lines_tx, lines) = mpsc::channel::<String>();
    thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });

    loop {
        while let Some(event) = client.next_event(Some(POLL_INTERVAL))? {
            print_event(&event);
        }
        match lines.try_recv() {
            // Waits while the daemon's queue is full (back-pressure), then returns.
            Ok(line) => {
                client.multicast(&group, Ordering::Agreed, line.as_bytes())?;
            }
            Err(mpsc::TryRecvError::Empty) => {}
            Err(mpsc::TryRecvError::Disconnected) => {
                client.leave(&group)?;
                return Ok(());
            }
        }
    }
}

fn print_event(event: &Event) {
    match event {
        Event::Delivery(delivery) => println!(
            "[{} node {} pid {}] {}",
            delivery.ring_id,
            delivery.sender.node,
            delivery.sender.pid,
            String::from_utf8_lossy(&delivery.payload)
        ),
        Event::GroupMembership(change) => println!(
            "-- {}: {} members, {} joined, {} left",
            change.group,
            change.members.len(),
            change.joined.len(),
            change.left.len()
        ),
        Event::Quorum(change) => println!(
            "-- ring {}: {} nodes, {}",
            change.ring_id,
            change.members.len(),
            if change.quorate {
                "quorate"
            } else {
                "NOT quorate"
            }
        ),
        Event::MulticastRefused(refused) => println!(
            "-- message {} to {} refused: {}",
            refused.request_id, refused.group, refused.error
        ),
    }
}
