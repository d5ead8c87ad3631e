//! pvecm's `--linkN [address=]<IP>[,priority=<0-255>]` property string (REFERENCE.md §4.1).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// One `--linkN` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkSpec {
    /// The node's address on the link.
    pub address: IpAddr,
    /// `knet_link_priority`; in passive link mode the link with the HIGHER value is preferred
    /// (REFERENCE.md §1.1). `None` leaves corosync's default.
    pub priority: Option<u8>,
}

/// Why a `--linkN` value is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkSpecError {
    /// The address is missing or not an IP address.
    #[error("invalid link address '{0}': expected an IPv4 or IPv6 address")]
    Address(String),
    /// The priority is not an integer 0..=255.
    #[error("invalid link priority '{0}': expected an integer from 0 to 255")]
    Priority(String),
    /// A key other than `address` and `priority`, or one given twice.
    #[error("unexpected link property '{0}'")]
    Property(String),
}

impl FromStr for LinkSpec {
    type Err = LinkSpecError;

    fn from_str(text: &str) -> Result<LinkSpec, LinkSpecError> {
        let mut address = None;
        let mut priority = None;
        for (index, part) in text.split(',').enumerate() {
            let (key, value) = match part.split_once('=') {
                Some((key, value)) => (key.trim(), value.trim()),
                None if index == 0 => ("address", part.trim()),
                None => return Err(LinkSpecError::Property(part.to_owned())),
            };
            match key {
                "address" if address.is_none() => {
                    let parsed = value
                        .parse()
                        .map_err(|_| LinkSpecError::Address(value.to_owned()))?;
                    address = Some(parsed);
                }
                "priority" if priority.is_none() => {
                    let parsed = value
                        .parse()
                        .map_err(|_| LinkSpecError::Priority(value.to_owned()))?;
                    priority = Some(parsed);
                }
                _ => return Err(LinkSpecError::Property(part.to_owned())),
            }
        }
        let address = address.ok_or_else(|| LinkSpecError::Address(String::new()))?;
        Ok(LinkSpec { address, priority })
    }
}

impl fmt::Display for LinkSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "address={}", self.address)?;
        if let Some(priority) = self.priority {
            write!(f, ",priority={priority}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_pvecm_forms() {
        let plain: LinkSpec = "10.0.0.1".parse().expect("plain address");
        assert_eq!(plain.address, IpAddr::from([10, 0, 0, 1]));
        assert_eq!(plain.priority, None);
        let full: LinkSpec = "address=fd00::1,priority=20".parse().expect("keyed");
        assert_eq!(full.address, "fd00::1".parse::<IpAddr>().expect("v6"));
        assert_eq!(full.priority, Some(20));
        let short: LinkSpec = "10.0.0.2,priority=0".parse().expect("priority 0");
        assert_eq!(short.priority, Some(0));
    }

    #[test]
    fn refuses_bad_values_with_the_reason() {
        let cases = [
            ("", LinkSpecError::Address(String::new())),
            ("node1", LinkSpecError::Address("node1".to_owned())),
            (
                "10.0.0.1,priority=256",
                LinkSpecError::Priority("256".to_owned()),
            ),
            (
                "10.0.0.1,priority=-1",
                LinkSpecError::Priority("-1".to_owned()),
            ),
            (
                "10.0.0.1,mtu=1400",
                LinkSpecError::Property("mtu=1400".to_owned()),
            ),
            (
                "10.0.0.1,10.0.0.2",
                LinkSpecError::Property("10.0.0.2".to_owned()),
            ),
            (
                "10.0.0.1,address=10.0.0.2",
                LinkSpecError::Property("address=10.0.0.2".to_owned()),
            ),
            ("priority=3", LinkSpecError::Address(String::new())),
        ];
        for (text, expected) in cases {
            assert_eq!(text.parse::<LinkSpec>(), Err(expected), "{text:?}");
        }
    }

    proptest! {
        #[test]
        fn display_parses_back(address in any::<IpAddr>(), priority in any::<Option<u8>>()) {
            let spec = LinkSpec { address, priority };
            prop_assert_eq!(spec.to_string().parse::<LinkSpec>(), Ok(spec));
        }

        #[test]
        fn arbitrary_text_never_panics(text in ".{0,40}") {
            let _ = text.parse::<LinkSpec>();
        }
    }
}
