//! The corosync.conf grammar: text in, [`Tree`] out, or an error with line and column.
//!
//! The rules follow corosync's own reader (`exec/coroparse.c`, `parse_section`), line by line:
//!
//! * A line is at most [`LINE_BYTES_MAX`] bytes without its `\n`; one trailing `\r` is dropped;
//!   trailing blanks are dropped. Blanks are space, tab and U+00A0 (corosync strips the 0xA0 byte).
//! * A line whose first non-blank character is `#` is a comment; blank lines are ignored. There are
//!   no end-of-line comments: in `token: 3000 # x` the value is `3000 # x`.
//! * A line containing `{` opens a section: the name is what comes before the first `{`, trimmed,
//!   with trailing `:` dropped (`totem: {` is `totem`); nothing may follow the `{`.
//! * Otherwise a line containing `:` is an item: the key is what comes before the first `:`, the
//!   value everything after it with leading blanks dropped (it may hold spaces, colons and `}`;
//!   `key:value` needs no space). The value may be empty; the key may not.
//! * Otherwise a line containing `}` closes the current section and must hold nothing else.
//! * Anything else is an error, as is a `}` at top level or a section left open at end of file.
//! * A dotted path (`totem.interface.linknumber`) must stay under corosync's key-name limit.
//!
//! Deliberate departures, each refusing something corosync would accept by accident: a NUL byte
//! is an error (corosync silently cuts the line there); the key or section name `:` produced
//! by corosync's trimming of `: value` and `: {` is reported as a missing name; and text outside
//! comment lines must be UTF-8 (corosync takes any bytes).

use super::tree::{Body, Entry, Item, Pos, Section, Tree};

/// Longest line corosync reads, in bytes, not counting the `\n` (`char line[512]` read with
/// `fgets`, `exec/coroparse.c` `parse_section`: 511 bytes including the newline).
pub const LINE_BYTES_MAX: usize = 510;

/// corosync's key-name limit (`ICMAP_KEYNAME_MAXLEN`, `include/corosync/icmap.h`): the parent's
/// dotted path plus the new name plus one must stay below it (`coroparse.c` `parse_section`).
pub const PATH_BYTES_MAX: usize = 255;

/// Why a line was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    #[error("line too long (more than {LINE_BYTES_MAX} bytes)")]
    LineTooLong,
    #[error("file is not valid UTF-8")]
    InvalidUtf8,
    #[error("NUL byte in line")]
    NulByte,
    #[error("missing section name before opening bracket '{{'")]
    MissingSectionName,
    #[error("extra characters after opening bracket '{{'")]
    ExtraAfterOpenBrace,
    #[error("start of section makes total cmap path too long (limit {PATH_BYTES_MAX} bytes)")]
    SectionPathTooLong,
    #[error("key name can't be empty")]
    EmptyKey,
    #[error("new key makes total cmap path too long (limit {PATH_BYTES_MAX} bytes)")]
    KeyPathTooLong,
    #[error("extra characters before or after closing bracket '}}'")]
    ExtraAroundCloseBrace,
    #[error("unexpected closing brace")]
    UnexpectedCloseBrace,
    #[error("line is not opening or closing section or key value")]
    NotSectionOrItem,
    #[error("missing closing brace for section '{section}' (end of file at line {eof_line})")]
    MissingCloseBrace { section: String, eof_line: u32 },
}

/// A parse error: where, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{pos}: {kind}")]
pub struct ParseError {
    pub pos: Pos,
    pub kind: ParseErrorKind,
}

/// Is `c` a blank to corosync (space, tab, and U+00A0, whose 0xA0 byte corosync strips)?
pub(crate) fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t' || c == '\u{a0}'
}

/// Parses raw file bytes. corosync reads bytes, so a comment in Latin-1 (say) must not make a
/// file unusable: comment lines that are not UTF-8 are skipped like any comment. Anywhere else
/// non-UTF-8 is an error at the first bad byte.
pub fn parse_bytes(bytes: &[u8]) -> Result<Tree, ParseError> {
    if let Ok(text) = std::str::from_utf8(bytes) {
        return parse(text);
    }
    let mut text = String::with_capacity(bytes.len());
    for (index, line) in bytes.split_inclusive(|&byte| byte == b'\n').enumerate() {
        match std::str::from_utf8(line) {
            Ok(valid) => text.push_str(valid),
            Err(utf8_error) => {
                let line_number = to_u32(index + 1);
                let content = line.strip_suffix(b"\n").unwrap_or(line);
                if content.len() > LINE_BYTES_MAX {
                    let column = to_u32(LINE_BYTES_MAX + 1);
                    return Err(error(
                        Pos::new(line_number, column),
                        ParseErrorKind::LineTooLong,
                    ));
                }
                if !is_comment_bytes(content) {
                    let valid = &content[..utf8_error.valid_up_to()];
                    let column = String::from_utf8_lossy(valid).chars().count() + 1;
                    return Err(error(
                        Pos::new(line_number, to_u32(column)),
                        ParseErrorKind::InvalidUtf8,
                    ));
                }
                // Same line count, same meaning: a comment.
                text.push('#');
                if line.ends_with(b"\n") {
                    text.push('\n');
                }
            }
        }
    }
    parse(&text)
}

/// Is this raw line a comment: its first non-blank byte `#` (blank bytes as corosync's: space,
/// tab, 0xA0)?
fn is_comment_bytes(line: &[u8]) -> bool {
    line.iter()
        .find(|&&byte| byte != b' ' && byte != b'\t' && byte != 0xA0)
        .is_some_and(|&byte| byte == b'#')
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A section being filled: its name, where it opened, its body so far.
struct Open {
    name: String,
    pos: Pos,
    body: Body,
}

/// Parses corosync.conf text.
pub fn parse(text: &str) -> Result<Tree, ParseError> {
    // stack[0] is the file itself; each open section pushes one more level.
    let mut stack: Vec<Open> = vec![Open {
        name: String::new(),
        pos: Pos::default(),
        body: Body::new(),
    }];
    // Byte length of the dotted path of the open sections ("totem.interface" = 15).
    let mut path_bytes: Vec<usize> = vec![0];
    let mut line_number = 0u32;

    for raw_line in text.split_terminator('\n') {
        line_number = line_number.saturating_add(1);
        let at = |byte_offset: usize| Pos::new(line_number, column_at(raw_line, byte_offset));
        if raw_line.len() > LINE_BYTES_MAX {
            return Err(error(at(LINE_BYTES_MAX), ParseErrorKind::LineTooLong));
        }
        if let Some(nul) = raw_line.find('\0') {
            return Err(error(at(nul), ParseErrorKind::NulByte));
        }
        let line = raw_line.strip_suffix('\r').unwrap_or(raw_line);
        let line = line.trim_end_matches(is_blank);
        let content = line.trim_start_matches(is_blank);
        if content.is_empty() || content.starts_with('#') {
            continue;
        }

        let parent_path = *path_bytes.last().unwrap_or(&0);
        if let Some(brace) = line.find('{') {
            let name = section_name(&line[..brace]);
            if name.is_empty() {
                return Err(error(at(brace), ParseErrorKind::MissingSectionName));
            }
            let after = &line[brace + 1..];
            let extra = after.len() - after.trim_start_matches(is_blank).len();
            if !after.trim_start_matches(is_blank).is_empty() {
                return Err(error(
                    at(brace + 1 + extra),
                    ParseErrorKind::ExtraAfterOpenBrace,
                ));
            }
            let name_offset = line.len() - content.len();
            if parent_path + name.len() + 1 >= PATH_BYTES_MAX {
                return Err(error(at(name_offset), ParseErrorKind::SectionPathTooLong));
            }
            path_bytes.push(joined_path_bytes(parent_path, name.len()));
            stack.push(Open {
                name: name.to_owned(),
                pos: at(name_offset),
                body: Body::new(),
            });
            continue;
        }

        if let Some(colon) = line.find(':') {
            let key = line[..colon].trim_matches(is_blank);
            if key.is_empty() {
                return Err(error(at(colon), ParseErrorKind::EmptyKey));
            }
            let key_offset = line.len() - content.len();
            if parent_path + key.len() + 1 >= PATH_BYTES_MAX {
                return Err(error(at(key_offset), ParseErrorKind::KeyPathTooLong));
            }
            let after = &line[colon + 1..];
            let value = after.trim_start_matches(is_blank);
            let value_offset = colon + 1 + (after.len() - value.len());
            let item = Item {
                key: key.to_owned(),
                value: value.to_owned(),
                key_pos: at(key_offset),
                value_pos: at(value_offset),
            };
            if let Some(open) = stack.last_mut() {
                open.body.entries.push(Entry::Item(item));
            }
            continue;
        }

        if let Some(close) = line.find('}') {
            if content != "}" {
                let leading = line.len() - content.len();
                let after = &line[close + 1..];
                let offset = if leading < close {
                    leading
                } else {
                    close + 1 + (after.len() - after.trim_start_matches(is_blank).len())
                };
                return Err(error(at(offset), ParseErrorKind::ExtraAroundCloseBrace));
            }
            if stack.len() == 1 {
                return Err(error(at(close), ParseErrorKind::UnexpectedCloseBrace));
            }
            close_section(&mut stack);
            path_bytes.pop();
            continue;
        }

        let offset = line.len() - content.len();
        return Err(error(at(offset), ParseErrorKind::NotSectionOrItem));
    }

    if stack.len() > 1 {
        let open = stack.swap_remove(stack.len() - 1);
        return Err(error(
            open.pos,
            ParseErrorKind::MissingCloseBrace {
                section: open.name,
                eof_line: line_number,
            },
        ));
    }
    let root = stack.pop().map(|open| open.body).unwrap_or_default();
    Ok(Tree { root })
}

fn error(pos: Pos, kind: ParseErrorKind) -> ParseError {
    ParseError { pos, kind }
}

/// 1-based character column of `byte_offset` in `line` (clamped to the line).
fn column_at(line: &str, byte_offset: usize) -> u32 {
    let mut end = byte_offset.min(line.len());
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    to_u32(line[..end].chars().count() + 1)
}

/// Byte length of `parent.name` (or `name` at top level).
fn joined_path_bytes(parent_path_bytes: usize, name_bytes: usize) -> usize {
    if parent_path_bytes == 0 {
        name_bytes
    } else {
        parent_path_bytes + 1 + name_bytes
    }
}

/// The section name in the text before `{`: blanks around it and trailing colons dropped.
fn section_name(before_brace: &str) -> &str {
    before_brace
        .trim_start_matches(is_blank)
        .trim_end_matches(|c| is_blank(c) || c == ':')
}

/// Pops the innermost open section into its parent.
fn close_section(stack: &mut Vec<Open>) {
    if let Some(open) = stack.pop() {
        let section = Section {
            name: open.name,
            body: open.body,
            pos: open.pos,
        };
        if let Some(parent) = stack.last_mut() {
            parent.body.entries.push(Entry::Section(section));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> (u32, u32, ParseErrorKind) {
        let e = parse(text).expect_err("must fail");
        (e.pos.line, e.pos.column, e.kind)
    }

    #[test]
    fn items_sections_and_comments() {
        let tree = parse("# c\n\ntotem {\n  version: 2\n  x:y:z\n}\n").expect("parse");
        let totem = tree.root.sections().next().expect("totem");
        assert_eq!(totem.name, "totem");
        assert_eq!(totem.pos, Pos::new(3, 1));
        let items: Vec<_> = totem.body.items().collect();
        assert_eq!(items[0].key, "version");
        assert_eq!(items[0].value, "2");
        assert_eq!(items[0].value_pos, Pos::new(4, 12));
        assert_eq!(items[1].key, "x");
        assert_eq!(items[1].value, "y:z");
    }

    #[test]
    fn corosync_edge_cases() {
        // No end-of-line comments; trailing blanks, CR and NBSP trimmed; colon before brace.
        let tree = parse("a: 1 # no\r\nb:\t v v \u{a0}\ntotem: {\n}\nc:\n").expect("parse");
        let items: Vec<_> = tree.root.items().collect();
        assert_eq!(items[0].value, "1 # no");
        assert_eq!(items[1].value, "v v");
        assert_eq!(items[2].value, "");
        assert_eq!(
            tree.root.sections().next().map(|s| s.name.as_str()),
            Some("totem")
        );
        // A value may contain '}'; a '{' anywhere makes the line a section opener.
        assert!(parse("a: }\n").is_ok());
        assert_eq!(err("a: b{c\n").2, ParseErrorKind::ExtraAfterOpenBrace);
    }

    #[test]
    fn errors_have_line_and_column() {
        assert_eq!(err("}\n"), (1, 1, ParseErrorKind::UnexpectedCloseBrace));
        assert_eq!(
            err("a {\n  } x\n}\n"),
            (2, 5, ParseErrorKind::ExtraAroundCloseBrace)
        );
        assert_eq!(
            err("a {\n x }\n}\n"),
            (2, 2, ParseErrorKind::ExtraAroundCloseBrace)
        );
        assert_eq!(err("  {\n}\n"), (1, 3, ParseErrorKind::MissingSectionName));
        assert_eq!(
            err("a { b\n}\n"),
            (1, 5, ParseErrorKind::ExtraAfterOpenBrace)
        );
        assert_eq!(err(" : v\n"), (1, 2, ParseErrorKind::EmptyKey));
        assert_eq!(err("x\n  word\n").0, 1);
        assert_eq!(err("\n  word\n"), (2, 3, ParseErrorKind::NotSectionOrItem));
        assert_eq!(
            err("a {\n b {\n}\n"),
            (
                1,
                1,
                ParseErrorKind::MissingCloseBrace {
                    section: "a".into(),
                    eof_line: 3
                }
            )
        );
    }

    #[test]
    fn line_length_limit_matches_corosync() {
        let ok = format!("k: {}\n", "v".repeat(LINE_BYTES_MAX - 3));
        assert!(parse(&ok).is_ok());
        let long = format!("k: {}\n", "v".repeat(LINE_BYTES_MAX - 2));
        assert_eq!(err(&long), (1, 511, ParseErrorKind::LineTooLong));
    }

    #[test]
    fn path_length_limit_matches_corosync() {
        let key_ok = format!("{}: v\n", "k".repeat(PATH_BYTES_MAX - 2));
        assert!(parse(&key_ok).is_ok());
        let key_long = format!("{}: v\n", "k".repeat(PATH_BYTES_MAX - 1));
        assert_eq!(err(&key_long).2, ParseErrorKind::KeyPathTooLong);
        // Inside `totem` (5 bytes): 5 + key + 1 must stay below 255.
        let nested_ok = format!("totem {{\n{}: v\n}}\n", "k".repeat(PATH_BYTES_MAX - 7));
        assert!(parse(&nested_ok).is_ok());
        let nested = format!("totem {{\n{}: v\n}}\n", "k".repeat(PATH_BYTES_MAX - 6));
        assert_eq!(err(&nested).2, ParseErrorKind::KeyPathTooLong);
    }

    #[test]
    fn bad_utf8_and_nul_are_errors() {
        let e = parse_bytes(b"a: 1\nb: \xff\n").expect_err("bad utf8");
        assert_eq!((e.pos.line, e.pos.column), (2, 4));
        let e = parse_bytes(b"# ok\n\xc3\xa9: caf\xe9\n").expect_err("latin-1 value");
        assert_eq!(
            (e.pos.line, e.pos.column, e.kind),
            (2, 7, ParseErrorKind::InvalidUtf8)
        );
        // A Latin-1 comment is still a comment; line numbers after it are unchanged.
        let tree = parse_bytes(b"  # caf\xe9\ntotem {\n}\n}\n");
        assert_eq!(tree.map_err(|e| e.pos), Err(Pos::new(4, 1)));
        let long = [b"#".as_slice(), &[0xe9; LINE_BYTES_MAX]].concat();
        let e = parse_bytes(&long).expect_err("long");
        assert_eq!(e.kind, ParseErrorKind::LineTooLong);
        assert_eq!(err("a: \0\n"), (1, 4, ParseErrorKind::NulByte));
    }
}
