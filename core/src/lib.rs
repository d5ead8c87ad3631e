//! Sans-IO protocol cores: Totem single-ring ordering and membership, votequorum, qdevice algorithms.
#![forbid(unsafe_code)]
