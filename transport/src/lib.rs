//! Links: wire format, one io_uring reactor per link, heartbeats, link state and failover.
