//! The generic corosync.conf tree: ordered sections and `key: value` items, exactly as written.
//!
//! The tree keeps everything the file says, in file order, including keys and sections this
//! project does not understand, so the writer can round-trip them. Source positions are kept as
//! metadata for messages and do not take part in equality: two trees are equal when they say the
//! same thing.

use std::fmt;

/// A position in the source text, both 1-based; `column` counts characters, not bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

impl Pos {
    pub const fn new(line: u32, column: u32) -> Self {
        Self { line, column }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One `key: value` line.
#[derive(Clone, Debug)]
pub struct Item {
    pub key: String,
    pub value: String,
    /// Where the key starts.
    pub key_pos: Pos,
    /// Where the value starts (just after the colon and blanks when the value is empty).
    pub value_pos: Pos,
}

impl Item {
    /// An item built in code (no source position).
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
            key_pos: Pos::default(),
            value_pos: Pos::default(),
        }
    }
}

impl PartialEq for Item {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key && self.value == other.value
    }
}
impl Eq for Item {}

/// A `name { ... }` block.
#[derive(Clone, Debug)]
pub struct Section {
    pub name: String,
    pub body: Body,
    /// Where the name starts.
    pub pos: Pos,
}

impl Section {
    /// A section built in code (no source position).
    pub fn new(name: impl Into<String>, body: Body) -> Self {
        Self {
            name: name.into(),
            body,
            pos: Pos::default(),
        }
    }
}

impl PartialEq for Section {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.body == other.body
    }
}
impl Eq for Section {}

/// One entry of a body: an item or a nested section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    Item(Item),
    Section(Section),
}

impl Entry {
    /// The key or section name; what the writer sorts by.
    pub fn name(&self) -> &str {
        match self {
            Entry::Item(item) => &item.key,
            Entry::Section(section) => &section.name,
        }
    }
}

/// The contents of a section (or of the whole file), in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Body {
    pub entries: Vec<Entry>,
}

impl Body {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `key: value`.
    pub fn push_item(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.entries.push(Entry::Item(Item::new(key, value)));
    }

    /// Appends a section and returns its body for filling.
    pub fn push_section(&mut self, name: impl Into<String>) -> &mut Body {
        self.entries
            .push(Entry::Section(Section::new(name, Body::new())));
        match self.entries.last_mut() {
            Some(Entry::Section(section)) => &mut section.body,
            _ => unreachable!("a section was pushed just above"),
        }
    }

    /// All items, in order.
    pub fn items(&self) -> impl Iterator<Item = &Item> {
        self.entries.iter().filter_map(|entry| match entry {
            Entry::Item(item) => Some(item),
            Entry::Section(_) => None,
        })
    }

    /// All sections, in order.
    pub fn sections(&self) -> impl Iterator<Item = &Section> {
        self.entries.iter().filter_map(|entry| match entry {
            Entry::Section(section) => Some(section),
            Entry::Item(_) => None,
        })
    }

    /// The sections called `name`, in order (several `node {}` blocks, for example).
    pub fn sections_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Section> + 'a {
        self.sections().filter(move |section| section.name == name)
    }

    /// All sections, in order, for editing.
    pub fn sections_mut(&mut self) -> impl Iterator<Item = &mut Section> {
        self.entries.iter_mut().filter_map(|entry| match entry {
            Entry::Section(section) => Some(section),
            Entry::Item(_) => None,
        })
    }

    /// Removes every item called `key`; returns how many there were.
    pub fn remove_items(&mut self, key: &str) -> usize {
        let before = self.entries.len();
        self.entries
            .retain(|entry| !matches!(entry, Entry::Item(item) if item.key == key));
        before - self.entries.len()
    }

    /// The last item called `key` (corosync keeps the last of repeated keys).
    pub fn item(&self, key: &str) -> Option<&Item> {
        self.items().filter(|item| item.key == key).last()
    }

    /// Sets `key` to `value`: changes the last item of that name, or appends one.
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        let existing = self.entries.iter_mut().rev().find_map(|entry| match entry {
            Entry::Item(item) if item.key == key => Some(item),
            _ => None,
        });
        match existing {
            Some(item) => item.value = value.into(),
            None => self.push_item(key, value),
        }
    }

    /// The first section called `name`, for editing.
    pub fn section_mut(&mut self, name: &str) -> Option<&mut Body> {
        self.entries.iter_mut().find_map(|entry| match entry {
            Entry::Section(section) if section.name == name => Some(&mut section.body),
            _ => None,
        })
    }
}

/// A whole corosync.conf.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tree {
    pub root: Body,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn editing_helpers() {
        let mut tree = Tree::default();
        let totem = tree.root.push_section("totem");
        totem.push_item("token", "1000");
        totem.push_item("token", "2000");
        totem.set("token", "3000");
        assert_eq!(
            totem.items().map(|i| i.value.as_str()).collect::<Vec<_>>(),
            ["1000", "3000"]
        );
        totem.set("version", "2");
        assert_eq!(totem.item("version").map(|i| i.value.as_str()), Some("2"));
        assert_eq!(totem.remove_items("token"), 2);
        assert!(totem.item("token").is_none());
        for section in tree.root.sections_mut() {
            section.body.push_item("cluster_name", "c");
        }
        let totem = tree.root.section_mut("totem").expect("totem");
        assert_eq!(
            totem.item("cluster_name").map(|i| i.value.as_str()),
            Some("c")
        );
        assert!(tree.root.section_mut("quorum").is_none());
    }

    #[test]
    fn positions_do_not_take_part_in_equality() {
        let mut placed = Item::new("k", "v");
        placed.key_pos = Pos::new(3, 1);
        assert_eq!(placed, Item::new("k", "v"));
        assert_ne!(Item::new("k", "v"), Item::new("k", "w"));
    }
}
