//! Broken corosync.conf files are refused with the exact line and column of the problem.

use totemd::config::parse::ParseErrorKind;
use totemd::config::{load_str, parse, LoadError, Pos, SystemResolver};

fn parse_error(text: &str) -> (u32, u32, ParseErrorKind) {
    let error = parse(text).expect_err("must not parse");
    (error.pos.line, error.pos.column, error.kind)
}

/// All problems of a file that parses, as (line, column, message).
fn invalid(text: &str) -> Vec<(u32, u32, String)> {
    match load_str(text, &SystemResolver) {
        Err(LoadError::Invalid(errors)) => errors
            .into_iter()
            .map(|e| (e.pos.line, e.pos.column, e.message))
            .collect(),
        other => panic!("expected invalid config, got {other:?}"),
    }
}

const GOOD_TOTEM: &str = "totem {\n  version: 2\n  cluster_name: c\n}\n";

#[test]
fn grammar_errors() {
    let cases: &[(&str, (u32, u32, ParseErrorKind))] = &[
        (
            "totem {\n  version: 2\n",
            (
                1,
                1,
                ParseErrorKind::MissingCloseBrace {
                    section: "totem".into(),
                    eof_line: 2,
                },
            ),
        ),
        (
            "totem {\n}\n}\n",
            (3, 1, ParseErrorKind::UnexpectedCloseBrace),
        ),
        (
            "totem {\n  version 2\n}\n",
            (2, 3, ParseErrorKind::NotSectionOrItem),
        ),
        ("totem {\n  : 2\n}\n", (2, 3, ParseErrorKind::EmptyKey)),
        (
            "totem { version: 2\n}\n",
            (1, 9, ParseErrorKind::ExtraAfterOpenBrace),
        ),
        (
            "totem {\n  version: 2 }\n",
            (
                1,
                1,
                ParseErrorKind::MissingCloseBrace {
                    section: "totem".into(),
                    eof_line: 2,
                },
            ),
        ),
        (
            "totem {\n}}\n",
            (2, 2, ParseErrorKind::ExtraAroundCloseBrace),
        ),
        ("\t{\n}\n", (1, 2, ParseErrorKind::MissingSectionName)),
    ];
    for (text, expected) in cases {
        assert_eq!(&parse_error(text), expected, "{text:?}");
    }
}

#[test]
fn type_errors_point_at_the_value() {
    let text = "totem {\n  version: 2\n  ip_version: ipv5\n}\n";
    assert_eq!(
        invalid(text),
        vec![(
            3,
            15,
            "invalid value \"ipv5\" for 'ip_version': expected ipv4, ipv6, ipv4-6 or ipv6-4".into()
        )]
    );
    let text = "quorum {\n  two_node: yes\n}\n";
    let problems = invalid(text);
    assert_eq!((problems[0].0, problems[0].1), (2, 13));
    assert!(problems[0].2.contains("expected an integer 0..255"));
}

#[test]
fn validation_errors_in_file_order() {
    let text = format!(
        "{GOOD_TOTEM}nodelist {{\n  node {{\n    name: a\n    nodeid: 1\n    ring0_addr: 127.0.0.1\n    ring1_addr: 127.0.1.1\n  }}\n  node {{\n    name: b\n    nodeid: 1\n    ring0_addr: 127.0.0.1\n  }}\n}}\nquorum {{\n  provider: corosync_votequorum\n}}\n"
    );
    let problems = invalid(&text);
    let lines: Vec<(u32, u32)> = problems.iter().map(|p| (p.0, p.1)).collect();
    assert_eq!(lines, vec![(12, 3), (14, 13), (15, 17)], "{problems:?}");
    assert!(problems[0].2.contains("no ring1_addr"));
    assert!(problems[1].2.contains("Nodeid 1 appears twice"));
    assert!(problems[2].2.contains("already used by node a"));
}

#[test]
fn mixed_families_on_one_link() {
    let text = format!(
        "{GOOD_TOTEM}nodelist {{\n  node {{\n    nodeid: 1\n    ring0_addr: 127.0.0.1\n  }}\n  node {{\n    nodeid: 2\n    ring0_addr: ::1\n  }}\n}}\nquorum {{\n  provider: corosync_votequorum\n}}\n"
    );
    let problems = invalid(&text);
    assert_eq!(problems.len(), 1);
    assert_eq!((problems[0].0, problems[0].1), (12, 17));
    assert!(problems[0].2.contains("different IP families"));
}

#[test]
fn link_numbers_stop_at_seven() {
    let text = format!(
        "{GOOD_TOTEM}totem {{\n  interface {{\n    linknumber: 8\n  }}\n}}\nnodelist {{\n  node {{\n    nodeid: 1\n    ring0_addr: 127.0.0.1\n  }}\n}}\n"
    );
    let problems = invalid(&text);
    assert_eq!((problems[0].0, problems[0].1), (7, 17), "{problems:?}");
    assert_eq!(
        problems[0].2,
        "interface ring number 8 is bigger than allowed maximum 7"
    );
    let text = "nodelist {\n  node {\n    nodeid: 1\n    ring9_addr: 127.0.0.1\n  }\n}\n";
    assert_eq!(
        invalid(text),
        vec![(
            4,
            5,
            "interface ring number 9 is bigger than allowed maximum 7".into()
        )]
    );
}

#[test]
fn position_display_is_line_colon_column() {
    assert_eq!(Pos::new(12, 7).to_string(), "12:7");
}
