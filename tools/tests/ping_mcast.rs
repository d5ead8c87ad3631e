//! totem-ping `-m` across network namespaces (tests/netns/netns.sh: one bridge, one veth per
//! node): every host reports per peer a unicast and a multicast line in omping's formats, on
//! both I/O backends and both IP versions; an nftables rule that drops multicast (not unicast)
//! shows as multicast loss and a NOT READY verdict; a peer without `-m`, a join that fails and
//! bad groups are named. Needs root, `ip` and `nft`; skipped with a printed reason otherwise.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::netns::Netns;
use common::*;

const LIMIT: Duration = Duration::from_secs(30);
/// Queries per peer: enough for a few lines per peer, short enough for a ~2 s run.
const COUNT: &str = "20";

/// Creates the topology or prints why the test is skipped.
fn topology(tag: &str, nodes: usize) -> Option<Netns> {
    match Netns::create(tag, nodes) {
        Ok(n) => Some(n),
        Err(why) => {
            eprintln!("skipping multicast namespace test: {why}");
            None
        }
    }
}

/// Runs totem-ping in every node at once, node k with `args[k-1]` plus the host list.
fn run_all(net: &Netns, args: &[Vec<&str>], hosts: &[String]) -> Vec<std::process::Output> {
    let running: Vec<Running> = args
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let mut all = a.clone();
            all.extend(hosts.iter().map(String::as_str));
            net.spawn(i + 1, PING, &all)
        })
        .collect();
    running
        .into_iter()
        .map(|r| {
            let (out, exited) = r.finish(LIMIT);
            assert!(exited, "an instance hung");
            out
        })
        .collect()
}

/// Summary lines by (host, cast).
fn summaries(stdout: &str) -> BTreeMap<(String, String), Summary> {
    stdout
        .lines()
        .filter_map(parse_summary)
        .map(|s| ((s.host.clone(), s.cast.clone()), s))
        .collect()
}

/// Checks a clean path from one host's output: for each peer one unicast and one multicast
/// summary line with no loss, and reply lines of both casts covering every sequence number once.
fn assert_clean(stdout: &str, peers: &[String], group: &str) {
    let sums = summaries(stdout);
    for peer in peers {
        assert!(
            stdout.contains(&format!("{peer} : joined (S,G) = (*, {group}), pinging")),
            "{stdout}"
        );
        for cast in ["uni", "multi"] {
            let s = sums
                .get(&(peer.clone(), cast.to_string()))
                .unwrap_or_else(|| panic!("no {cast}cast summary for {peer}:\n{stdout}"));
            assert!(s.xmt > 0, "{stdout}");
            assert_eq!((s.rcv, s.loss), (s.xmt, 0), "{cast}cast loss: {stdout}");
            assert!(s.min <= s.avg && s.avg <= s.max, "{stdout}");
            let mut seqs: Vec<u32> = stdout
                .lines()
                .filter_map(parse_any_reply)
                .filter(|r| &r.host == peer && r.cast == cast)
                .inspect(|r| assert_eq!(r.size, 69, "{stdout}"))
                .map(|r| r.seq)
                .collect();
            seqs.sort_unstable();
            let expected: Vec<u32> = (1..=s.xmt as u32).collect();
            assert_eq!(seqs, expected, "{cast}cast reply lines of {peer}: {stdout}");
        }
        // omping's order: the unicast line, then the multicast line of the same host.
        let uni = stdout
            .find(&format!("{peer} :   unicast, xmt/rcv/%loss"))
            .expect("unicast summary");
        let multi = stdout
            .find(&format!("{peer} : multicast, xmt/rcv/%loss"))
            .expect("multicast summary");
        assert!(uni < multi, "{stdout}");
    }
}

#[test]
fn ipv4_three_hosts_and_a_multicast_drop() {
    let Some(net) = topology("a", 3) else { return };
    // Node 1 drops all multicast it receives: its multicast answers still go out.
    net.nft_rule(1, "in", "ip daddr 224.0.0.0/4 drop");
    let hosts: Vec<String> = (1..=3).map(Netns::v4).collect();
    let common = ["-c", COUNT, "-i", "0.05", "-F"];
    let mut args: Vec<Vec<&str>> = Vec::new();
    // Node 3 takes omping's default group with -M asm; 1 and 2 name it. Node 1 runs mmsg.
    for extra in [
        &["-m", "232.43.211.234", "--io", "mmsg"][..],
        &["-m", "232.43.211.234", "--io", "auto"][..],
        &["-M", "asm"][..],
    ] {
        let mut a = common.to_vec();
        a.extend_from_slice(extra);
        args.push(a);
    }
    let outs = run_all(&net, &args, &hosts);
    let group = "232.43.211.234";
    for k in [2, 3] {
        let stdout = text(&outs[k - 1].stdout);
        assert!(
            matches!(outs[k - 1].status.code(), Some(0) | Some(2)),
            "node {k}: {stdout}{}",
            text(&outs[k - 1].stderr)
        );
        let peers: Vec<String> = hosts
            .iter()
            .filter(|h| **h != Netns::v4(k))
            .cloned()
            .collect();
        assert_clean(&stdout, &peers, group);
        assert!(
            stdout.contains(" : multicast, p50/p99/p99.9/max = "),
            "{stdout}"
        );
    }
    let out = &outs[0];
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}{}", text(&out.stderr));
    let sums = summaries(&stdout);
    for peer in [Netns::v4(2), Netns::v4(3)] {
        let uni = &sums[&(peer.clone(), "uni".to_string())];
        assert_eq!((uni.rcv, uni.loss), (uni.xmt, 0), "{stdout}");
        let multi = &sums[&(peer.clone(), "multi".to_string())];
        assert_eq!((multi.rcv, multi.loss), (0, 100), "{stdout}");
        assert!(
            stdout.contains(&format!("{peer}: no multicast reply received")),
            "{stdout}"
        );
    }
    assert!(stdout.contains("verdict: NOT READY: "), "{stdout}");
    assert!(
        !stdout
            .lines()
            .any(|l| l.starts_with("10.250.0.2 : multicast, seq=")),
        "{stdout}"
    );
}

#[test]
fn ipv6_pair_with_json() {
    let Some(net) = topology("b", 2) else { return };
    net.add_v6();
    let hosts: Vec<String> = (1..=2).map(Netns::v6).collect();
    let base = ["-c", COUNT, "-i", "0.05", "-F", "-m", "ff3e::4321:1234"];
    let mut a1 = base.to_vec();
    a1.extend(["--io", "mmsg"]);
    let mut a2 = base.to_vec();
    a2.extend(["--io", "auto", "--json"]);
    let outs = run_all(&net, &[a1, a2], &hosts);
    let stdout = text(&outs[0].stdout);
    assert!(
        matches!(outs[0].status.code(), Some(0) | Some(2)),
        "{stdout}{}",
        text(&outs[0].stderr)
    );
    assert_clean(&stdout, &[Netns::v6(2)], "ff3e::4321:1234");

    let v: serde_json::Value = serde_json::from_slice(&outs[1].stdout).unwrap_or_else(|e| {
        panic!(
            "JSON ({e}): {}{}",
            text(&outs[1].stdout),
            text(&outs[1].stderr)
        )
    });
    assert_eq!(v["multicast_group"], "ff3e::4321:1234");
    let host = &v["hosts"][0];
    assert_eq!(host["host"], Netns::v6(1));
    assert_eq!(host["rcv"], host["xmt"]);
    let m = &host["multicast"];
    assert_eq!(m["rcv"], host["xmt"], "{v}");
    assert_eq!(m["first_seq"], 1);
    assert_eq!(m["loss_pct"], 0.0);
    assert!(m["rtt"]["p99_ms"].as_f64().is_some());
}

#[test]
fn missing_group_and_failed_join_are_named() {
    let Some(net) = topology("c", 2) else { return };
    let hosts: Vec<String> = (1..=2).map(Netns::v4).collect();
    let outs = run_all(
        &net,
        &[
            vec!["-c", "5", "-i", "0.05", "-F", "-q", "-m", "239.1.2.3"],
            vec!["-c", "5", "-i", "0.05", "-F", "-q"],
        ],
        &hosts,
    );
    let (stdout, stderr) = (text(&outs[0].stdout), text(&outs[0].stderr));
    assert_eq!(outs[0].status.code(), Some(2), "{stdout}{stderr}");
    assert!(
        stderr.contains("10.250.0.2: it runs without -m"),
        "{stderr}"
    );
    assert!(
        stdout.contains("10.250.0.2: multicast: it runs without -m"),
        "{stdout}"
    );
    // The host without -m prints unicast lines only.
    let other = text(&outs[1].stdout);
    assert!(!other.contains("multicast"), "{other}");
    assert!(
        other.contains("10.250.0.1 :   unicast, xmt/rcv/%loss = 5/5/0%"),
        "{other}"
    );

    // A join the kernel refuses (no group memberships allowed in this namespace).
    net.exec(
        1,
        &["sysctl", "-q", "-w", "net.ipv4.igmp_max_memberships=0"],
    );
    let ns = net.ns(1);
    let out = run(
        "ip",
        &[
            "netns",
            "exec",
            &ns,
            PING,
            "-c",
            "1",
            "-m",
            "239.1.2.3",
            &hosts[0],
            &hosts[1],
        ],
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("totem-ping: cannot join multicast group 239.1.2.3 on l0 (10.250.0.1): "),
        "{err}"
    );
    // -m of the other IP version than the hosts.
    let out = run(
        "ip",
        &[
            "netns", "exec", &ns, PING, "-m", "ff3e::1", &hosts[0], &hosts[1],
        ],
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(
            "multicast address ff3e::1 is IPv6 but host \"10.250.0.1\" has no IPv6 address"
        ),
        "{}",
        text(&out.stderr)
    );
}
