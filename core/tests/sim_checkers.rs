//! The simulator's checkers catch violations: each test feeds a fabricated history that breaks one
//! property and expects that property's violation (and a good history passes).

use totem_core::sim::checker::{Checker, ConfPhase, Ring, Violation};
use totem_core::sim::workload::{make_payload, MsgId};

const R1: Ring = Ring { rep: 1, seq: 4 };
const R2: Ring = Ring { rep: 1, seq: 8 };

fn id(sender: u32, counter: u64) -> MsgId {
    MsgId { sender, counter }
}

fn payload(m: MsgId, safe: bool) -> Vec<u8> {
    make_payload(m, safe, 64)
}

/// Three nodes in regular ring R1; node 1 submitted 1#0 and 1#1 (agreed), node 2 submitted 2#0.
fn three_in_r1() -> Checker {
    let mut c = Checker::new(&[1, 2, 3]);
    for n in [1, 2, 3] {
        c.conf(n, ConfPhase::Regular, R1, &[1, 2, 3])
            .expect("first regular");
    }
    c.submitted(1, id(1, 0), false);
    c.submitted(1, id(1, 1), false);
    c.submitted(2, id(2, 0), false);
    c
}

fn deliver(c: &mut Checker, node: u32, m: MsgId, ring: Ring) -> Result<(), Violation> {
    c.delivered(node, m.sender, ring, false, true, &payload(m, false))
}

#[test]
fn a_correct_history_passes() {
    let mut c = three_in_r1();
    for n in [1, 2, 3] {
        deliver(&mut c, n, id(1, 0), R1).expect("deliver");
        deliver(&mut c, n, id(2, 0), R1).expect("deliver");
        deliver(&mut c, n, id(1, 1), R1).expect("deliver");
    }
    for n in [1, 2] {
        c.conf(n, ConfPhase::Transitional, R2, &[1, 2])
            .expect("transitional");
        c.conf(n, ConfPhase::Regular, R2, &[1, 2]).expect("regular");
    }
    c.check_self_delivery()
        .expect("all delivered to their senders");
    c.check_converged(R1, &[1, 2, 3]).expect("same count");
    assert_eq!(c.deliveries(), 9);
}

#[test]
fn catches_two_orders_in_one_ring() {
    let mut c = three_in_r1();
    deliver(&mut c, 1, id(1, 0), R1).expect("deliver");
    deliver(&mut c, 1, id(2, 0), R1).expect("deliver");
    deliver(&mut c, 2, id(2, 0), R1).expect("deliver");
    let v = deliver(&mut c, 2, id(1, 0), R1).expect_err("order differs");
    assert!(
        matches!(
            v,
            Violation::Order {
                ring: R1,
                a: 2,
                b: 1,
                ..
            }
        ),
        "{v}"
    );
}

#[test]
fn catches_order_disagreement_hidden_behind_gaps() {
    // Node 3 skips messages: 1 delivers a,b,c; 3 delivers c then a.
    let mut c = three_in_r1();
    for m in [id(1, 0), id(2, 0), id(1, 1)] {
        deliver(&mut c, 1, m, R1).expect("deliver");
    }
    deliver(&mut c, 3, id(1, 1), R1).expect("a gap is allowed");
    let v = deliver(&mut c, 3, id(1, 0), R1).expect_err("c before a contradicts node 1");
    assert!(matches!(v, Violation::Order { .. }), "{v}");
}

#[test]
fn different_rings_may_order_differently() {
    let mut c = three_in_r1();
    deliver(&mut c, 1, id(1, 0), R1).expect("deliver");
    deliver(&mut c, 1, id(2, 0), R1).expect("deliver");
    deliver(&mut c, 2, id(2, 0), R2).expect("another ring");
    deliver(&mut c, 2, id(1, 0), R2).expect("another ring");
}

#[test]
fn catches_duplicates() {
    let mut c = three_in_r1();
    deliver(&mut c, 1, id(1, 0), R1).expect("deliver");
    let v = deliver(&mut c, 1, id(1, 0), R1).expect_err("twice");
    assert_eq!(
        v,
        Violation::Duplicate {
            node: 1,
            id: id(1, 0)
        }
    );
}

#[test]
fn catches_invented_and_corrupted_messages() {
    let mut c = three_in_r1();
    let v = deliver(&mut c, 1, id(3, 0), R1).expect_err("never submitted");
    assert!(matches!(v, Violation::Invented { .. }), "{v}");
    let v = c
        .delivered(1, 2, R1, false, true, &payload(id(1, 0), false))
        .expect_err("wrong sender");
    assert!(
        matches!(
            v,
            Violation::Invented {
                claimed_sender: 2,
                ..
            }
        ),
        "{v}"
    );
    let v = c
        .delivered(1, 1, R1, true, true, &payload(id(1, 0), true))
        .expect_err("wrong order");
    assert!(matches!(v, Violation::Invented { safe: true, .. }), "{v}");
    let mut bad = payload(id(1, 0), false);
    bad[40] ^= 0xff;
    let v = c
        .delivered(1, 1, R1, false, true, &bad)
        .expect_err("corrupted");
    assert!(matches!(v, Violation::BadPayload { .. }), "{v}");
}

#[test]
fn catches_evs_disagreement() {
    let mut c = three_in_r1();
    deliver(&mut c, 1, id(1, 0), R1).expect("deliver");
    deliver(&mut c, 2, id(1, 0), R1).expect("deliver");
    deliver(&mut c, 1, id(2, 0), R1).expect("only node 1 gets 2#0");
    for n in [1, 2] {
        c.conf(n, ConfPhase::Transitional, R2, &[1, 2])
            .expect("transitional");
    }
    c.conf(1, ConfPhase::Regular, R2, &[1, 2])
        .expect("first mover");
    let v = c
        .conf(2, ConfPhase::Regular, R2, &[1, 2])
        .expect_err("sets differ");
    assert!(
        matches!(
            v,
            Violation::Evs {
                old: R1,
                new: R2,
                count_a: 2,
                count_b: 1,
                ..
            }
        ),
        "{v}"
    );
}

#[test]
fn catches_safe_delivery_a_member_never_had() {
    let mut c = Checker::new(&[1, 2]);
    for n in [1, 2] {
        c.conf(n, ConfPhase::Regular, R1, &[1, 2]).expect("regular");
    }
    c.submitted(1, id(1, 0), true);
    // Node 2 leaves R1 for a singleton ring without the message...
    c.conf(2, ConfPhase::Transitional, Ring { rep: 2, seq: 8 }, &[2])
        .expect("transitional");
    c.conf(2, ConfPhase::Regular, Ring { rep: 2, seq: 8 }, &[2])
        .expect("regular");
    // ... so node 1 may not deliver it as safe in regular R1.
    let v = c
        .delivered(1, 1, R1, true, true, &payload(id(1, 0), true))
        .expect_err("unsafe");
    assert!(
        matches!(
            v,
            Violation::Safe {
                ring: R1,
                node: 1,
                member: 2,
                ..
            }
        ),
        "{v}"
    );
}

#[test]
fn catches_safe_delivery_missed_by_a_member_moving_on() {
    let mut c = Checker::new(&[1, 2]);
    for n in [1, 2] {
        c.conf(n, ConfPhase::Regular, R1, &[1, 2]).expect("regular");
    }
    c.submitted(1, id(1, 0), true);
    c.delivered(1, 1, R1, true, true, &payload(id(1, 0), true))
        .expect("safe in R1");
    c.conf(2, ConfPhase::Transitional, Ring { rep: 2, seq: 8 }, &[2])
        .expect("transitional");
    let v = c
        .conf(2, ConfPhase::Regular, Ring { rep: 2, seq: 8 }, &[2])
        .expect_err("missed");
    assert!(matches!(v, Violation::Safe { member: 2, .. }), "{v}");
}

#[test]
fn crashed_members_are_excused() {
    let mut c = Checker::new(&[1, 2]);
    for n in [1, 2] {
        c.conf(n, ConfPhase::Regular, R1, &[1, 2]).expect("regular");
    }
    c.submitted(2, id(2, 0), false);
    c.stopped(2);
    c.check_self_delivery()
        .expect("a crashed sender owes nothing");
}

#[test]
fn catches_missing_transitional_and_bad_members() {
    let mut c = three_in_r1();
    let v = c
        .conf(1, ConfPhase::Regular, R2, &[1, 2])
        .expect_err("no transitional");
    assert!(
        matches!(
            v,
            Violation::Conf {
                node: 1,
                phase: ConfPhase::Regular,
                ..
            }
        ),
        "{v}"
    );

    let mut c = three_in_r1();
    let v = c
        .conf(1, ConfPhase::Transitional, R2, &[1, 4])
        .expect_err("4 was not in R1");
    assert!(
        matches!(
            v,
            Violation::Conf {
                phase: ConfPhase::Transitional,
                ..
            }
        ),
        "{v}"
    );

    let mut c = Checker::new(&[1, 2]);
    let v = c
        .conf(2, ConfPhase::Regular, Ring { rep: 2, seq: 4 }, &[1, 2])
        .expect_err("rep not lowest");
    assert!(matches!(v, Violation::Conf { .. }), "{v}");
    let v = c
        .conf(1, ConfPhase::Regular, R1, &[2])
        .expect_err("node not in its own ring");
    assert!(matches!(v, Violation::Conf { .. }), "{v}");

    let mut c = Checker::new(&[1, 2, 3]);
    c.conf(1, ConfPhase::Regular, R1, &[1, 2, 3])
        .expect("regular");
    let v = c
        .conf(2, ConfPhase::Regular, R1, &[1, 2])
        .expect_err("same ring id, other members");
    assert!(matches!(v, Violation::Conf { .. }), "{v}");
}

#[test]
fn catches_ring_seq_reuse_after_restart() {
    let mut c = Checker::new(&[1]);
    c.conf(1, ConfPhase::Regular, Ring { rep: 1, seq: 8 }, &[1])
        .expect("regular");
    c.stopped(1);
    c.started(1);
    let v = c
        .conf(1, ConfPhase::Regular, Ring { rep: 1, seq: 8 }, &[1])
        .expect_err("seq reused");
    assert!(matches!(v, Violation::Conf { .. }), "{v}");
}

#[test]
fn catches_missing_self_delivery_and_divergence() {
    let mut c = three_in_r1();
    deliver(&mut c, 1, id(1, 0), R1).expect("deliver");
    let v = c.check_self_delivery().expect_err("1#1 and 2#0 are owed");
    assert_eq!(
        v,
        Violation::SelfDelivery {
            node: 1,
            id: id(1, 1)
        }
    );
    let v = c
        .check_converged(R1, &[1, 2])
        .expect_err("1 delivered one, 2 none");
    assert!(
        matches!(
            v,
            Violation::Diverged {
                count_a: 1,
                count_b: 0,
                ..
            }
        ),
        "{v}"
    );
}
