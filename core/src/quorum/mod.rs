//! votequorum: who may act. Pure arithmetic ([`calc`]), corosync's configuration rules
//! ([`config`]), the node-state messages nodes exchange through Totem ([`wire`]), the per-node
//! state machine ([`state`]) and the snapshot `corosync-quorumtool -s` prints ([`status`]).
//! Facts and their sources: REFERENCE.md §3.

pub mod calc;
pub mod config;
pub mod flags;
pub mod state;
pub mod status;
pub mod wire;

pub use calc::{quorum_formula, ChangeError};
pub use config::{AutoTieBreaker, ConfigError, NodeConfig, QdeviceConfig, QuorumConfig};
pub use flags::Flags;
pub use state::{Action, InputError, Votequorum, QDEVICE_NODE_ID};
pub use status::{NodeStatus, QdeviceStatus, QuorumStatus, RingId};
pub use wire::{NodeFlags, QuorumMsg, ReconfigureParam, WireError};
