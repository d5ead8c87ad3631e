//! votequorum's status flags as corosync numbers and prints them (REFERENCE.md §3.5,
//! `include/corosync/votequorum.h:50-62`, `tools/corosync-quorumtool.c` l.590-602, 707-715).

use std::fmt;

/// The `votequorum_info.flags` bit set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Flags(pub u32);

impl Flags {
    /// `two_node` is configured.
    pub const TWO_NODE: Flags = Flags(1);
    /// This partition is quorate.
    pub const QUORATE: Flags = Flags(2);
    /// `wait_for_all` is configured.
    pub const WAIT_FOR_ALL: Flags = Flags(4);
    /// `last_man_standing` is configured.
    pub const LAST_MAN_STANDING: Flags = Flags(8);
    /// `auto_tie_breaker` is active.
    pub const AUTO_TIE_BREAKER: Flags = Flags(16);
    /// `allow_downscale` is configured.
    pub const ALLOW_DOWNSCALE: Flags = Flags(32);
    /// A quorum device registered on this node.
    pub const QDEVICE_REGISTERED: Flags = Flags(64);
    /// The quorum device polled within its timeout.
    pub const QDEVICE_ALIVE: Flags = Flags(128);
    /// The quorum device casts its vote.
    pub const QDEVICE_CAST_VOTE: Flags = Flags(256);
    /// `master_wins` of the quorum device.
    pub const QDEVICE_MASTER_WINS: Flags = Flags(512);
    /// The quorum device set extra information.
    pub const QDEVICE_HAS_EXTRA_INFO: Flags = Flags(1024);

    /// Whether every bit of `other` is set.
    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Set or clear the bits of `other`.
    pub fn set(&mut self, other: Flags, on: bool) {
        if on {
            self.0 |= other.0;
        } else {
            self.0 &= !other.0;
        }
    }

    /// The `Flags:` line body exactly as corosync-quorumtool prints it: each name followed by one
    /// space, in corosync's order (an empty string when none is set).
    pub fn flags_line(self) -> String {
        const NAMES: [(Flags, &str); 7] = [
            (Flags::TWO_NODE, "2Node"),
            (Flags::QUORATE, "Quorate"),
            (Flags::WAIT_FOR_ALL, "WaitForAll"),
            (Flags::LAST_MAN_STANDING, "LastManStanding"),
            (Flags::AUTO_TIE_BREAKER, "AutoTieBreaker"),
            (Flags::ALLOW_DOWNSCALE, "AllowDownscale"),
            (Flags::QDEVICE_REGISTERED, "Qdevice"),
        ];
        let mut line = String::new();
        for (flag, name) in NAMES {
            if self.contains(flag) {
                line.push_str(name);
                line.push(' ');
            }
        }
        line
    }

    /// The per-node `Qdevice` column: `NR` when no device is registered, else `A|NA,V|NV,MW|NMW`.
    pub fn qdevice_column(self) -> String {
        if !self.contains(Flags::QDEVICE_REGISTERED) {
            return "NR".to_string();
        }
        let alive = if self.contains(Flags::QDEVICE_ALIVE) {
            "A"
        } else {
            "NA"
        };
        let vote = if self.contains(Flags::QDEVICE_CAST_VOTE) {
            "V"
        } else {
            "NV"
        };
        let master = if self.contains(Flags::QDEVICE_MASTER_WINS) {
            "MW"
        } else {
            "NMW"
        };
        format!("{alive},{vote},{master}")
    }
}

impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.flags_line())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_in_corosync_order_with_trailing_spaces() {
        assert_eq!(Flags(0).flags_line(), "");
        assert_eq!(Flags::QUORATE.flags_line(), "Quorate ");
        let all = Flags(0x7ff);
        assert_eq!(
            all.flags_line(),
            "2Node Quorate WaitForAll LastManStanding AutoTieBreaker AllowDownscale Qdevice "
        );
    }

    #[test]
    fn qdevice_column() {
        assert_eq!(Flags(0).qdevice_column(), "NR");
        let f = Flags(64 | 128 | 256);
        assert_eq!(f.qdevice_column(), "A,V,NMW");
        assert_eq!(Flags(64).qdevice_column(), "NA,NV,NMW");
    }
}
