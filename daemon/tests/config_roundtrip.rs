//! Property tests: the writer and the parser agree on every writable tree, the parser accepts
//! every layout variation corosync accepts, and no input makes it panic.

use proptest::prelude::*;
use totemd::config::tree::{Body, Entry, Item, Section, Tree};
use totemd::config::write::WriteError;
use totemd::config::{canonicalize, parse, parse_bytes, write, write_canonical};

/// Blanks as corosync sees them.
fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t' || c == '\u{a0}'
}

fn key() -> impl Strategy<Value = String> {
    "[a-z_][a-z0-9_.}# \u{e9}-]{0,8}".prop_map(|s| s.trim_end_matches(is_blank).to_owned())
}

fn value() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9:}#/._ \t\u{a0}\u{e9}\r-]{0,16}".prop_map(|s| s.trim_matches(is_blank).to_owned())
}

fn section_name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_:} ]{0,8}"
        .prop_map(|s| s.trim_end_matches(|c| is_blank(c) || c == ':').to_owned())
}

fn body() -> impl Strategy<Value = Body> {
    let item = (key(), value()).prop_map(|(k, v)| Entry::Item(Item::new(k, v)));
    let leaf = prop::collection::vec(item, 0..5).prop_map(|entries| Body { entries });
    leaf.prop_recursive(4, 40, 6, |inner| {
        let item = (key(), value()).prop_map(|(k, v)| Entry::Item(Item::new(k, v)));
        let section = (section_name(), inner).prop_map(|(n, b)| Entry::Section(Section::new(n, b)));
        prop::collection::vec(prop_oneof![2 => item, 1 => section], 0..6)
            .prop_map(|entries| Body { entries })
    })
}

fn tree() -> impl Strategy<Value = Tree> {
    body().prop_map(|root| Tree { root })
}

/// How one line may be laid out differently while meaning the same to corosync.
#[derive(Clone, Debug)]
struct Layout {
    indent: &'static str,
    colon_space: &'static str,
    brace_space: &'static str,
    trailing: &'static str,
    crlf: bool,
    comment_before: bool,
}

fn layout() -> impl Strategy<Value = Layout> {
    (
        prop::sample::select(vec!["", " ", "\t", "    ", "\u{a0}"]),
        prop::sample::select(vec!["", " ", "\t  "]),
        prop::sample::select(vec!["", " ", ":", ": "]),
        prop::sample::select(vec!["", " ", "\t"]),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(indent, colon_space, brace_space, trailing, crlf, comment_before)| Layout {
                indent,
                colon_space,
                brace_space,
                trailing,
                crlf,
                comment_before,
            },
        )
}

/// Writes `body` the way a person might: odd indentation, `key:value`, `name{`, `name: {`,
/// trailing blanks, CRLF, comment lines and blank lines.
fn write_messy(body: &Body, layouts: &[Layout], next: &mut usize, out: &mut String) {
    for entry in &body.entries {
        let layout = &layouts[*next % layouts.len()];
        *next += 1;
        let eol = if layout.crlf { "\r\n" } else { "\n" };
        if layout.comment_before {
            out.push_str(&format!("{}# a comment: {{ }}{eol}\n", layout.indent));
        }
        match entry {
            Entry::Item(item) => {
                // A value ending in CR needs a blank after it, or the CR is eaten.
                let guard = if item.value.ends_with('\r') && layout.trailing.is_empty() {
                    " "
                } else {
                    layout.trailing
                };
                let sep = if item.value.is_empty() {
                    ""
                } else {
                    layout.colon_space
                };
                out.push_str(&format!(
                    "{}{}:{sep}{}{guard}{eol}",
                    layout.indent, item.key, item.value
                ));
            }
            Entry::Section(section) => {
                let brace_space = if section.name.ends_with('}') && layout.brace_space.is_empty() {
                    " "
                } else {
                    layout.brace_space
                };
                out.push_str(&format!(
                    "{}{}{brace_space}{{{}{eol}",
                    layout.indent, section.name, layout.trailing
                ));
                write_messy(&section.body, layouts, next, out);
                out.push_str(&format!("{}}}{}{eol}", layout.indent, layout.trailing));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parse_of_write_is_identity(tree in tree()) {
        let text = write(&tree).expect("generated trees are writable");
        prop_assert_eq!(parse(&text).expect("written text parses"), tree);
    }

    #[test]
    fn write_of_parse_is_stable(tree in tree()) {
        let text = write(&tree).expect("writable");
        let again = write(&parse(&text).expect("parses")).expect("writable again");
        prop_assert_eq!(&again, &text);
        let canonical = write_canonical(&tree).expect("canonical");
        let canonical_again = write_canonical(&parse(&canonical).expect("parses")).expect("w");
        prop_assert_eq!(canonical_again, canonical);
    }

    #[test]
    fn canonical_order_is_sorted_and_keeps_everything(tree in tree()) {
        let mut sorted = tree.clone();
        canonicalize(&mut sorted);
        fn count(body: &Body) -> usize {
            body.entries.iter().map(|e| match e {
                Entry::Item(_) => 1,
                Entry::Section(s) => 1 + count(&s.body),
            }).sum()
        }
        prop_assert_eq!(count(&sorted.root), count(&tree.root));
        let names: Vec<&str> = sorted.root.entries.iter().map(Entry::name).collect();
        prop_assert!(names.windows(2).all(|pair| pair[0] <= pair[1]));
    }

    #[test]
    fn every_layout_corosync_accepts_parses_the_same(
        tree in tree(),
        layouts in prop::collection::vec(layout(), 1..8),
    ) {
        let mut text = String::new();
        write_messy(&tree.root, &layouts, &mut 0, &mut text);
        let parsed = parse(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(parsed, tree);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(tree) = parse_bytes(&bytes) {
            match write(&tree) {
                Ok(text) => prop_assert_eq!(parse(&text).expect("reparse"), tree),
                Err(error) => {
                    let line_too_long = matches!(error, WriteError::LineTooLong { .. });
                    prop_assert!(line_too_long, "unexpected write error {}", error);
                }
            }
        }
    }

    #[test]
    fn arbitrary_config_like_text_never_panics(
        lines in prop::collection::vec("[a-z {}:#\t\r]{0,12}", 0..20),
    ) {
        let text = lines.join("\n");
        if let Ok(tree) = parse(&text) {
            let written = write(&tree).expect("parsed short lines are writable");
            prop_assert_eq!(parse(&written).expect("reparse"), tree);
        }
    }
}
