//! Command-line arguments shared by totem-pps and totem-latency (used with
//! `#[command(flatten)]`): which end this is, the I/O path and encryption.

use std::path::PathBuf;

use totem_transport::io::Backend;

use crate::link::{self, LinkConfig, LinkError};

/// `--server`/`--client`, `--io`, `--encrypt`, `--key`.
#[derive(Debug, clap::Args)]
pub struct EndpointArgs {
    /// Serve on ADDR[:PORT] until interrupted.
    #[arg(
        long,
        value_name = "ADDR[:PORT]",
        conflicts_with = "client",
        required_unless_present = "client"
    )]
    pub server: Option<String>,
    /// Measure towards the server at ADDR[:PORT].
    #[arg(long, value_name = "ADDR[:PORT]")]
    pub client: Option<String>,
    /// I/O path: uring, mmsg or auto.
    #[arg(long, default_value = "auto")]
    pub io: Backend,
    /// Seal datagrams with AES-256-GCM (both ends, same --key).
    #[arg(long)]
    pub encrypt: bool,
    /// Authkey file for --encrypt.
    #[arg(long, value_name = "FILE", default_value = totem_crypto::authkey::AUTHKEY_DEFAULT_PATH)]
    pub key: PathBuf,
}

impl EndpointArgs {
    /// The link configuration these arguments ask for (loading the key with `--encrypt`).
    pub fn link_config(&self, batch: usize) -> Result<LinkConfig, LinkError> {
        let key = if self.encrypt {
            Some(link::load_key(&self.key)?)
        } else {
            None
        };
        Ok(LinkConfig {
            backend: self.io,
            batch,
            socket_buffer_bytes: None,
            key,
        })
    }
}
