//! The public addresses a provider reported for a machine, kept typed in state: `reach`
//! chooses among them, and `cairn/network.json` hands them to the host's configuration
//! (Hetzner Cloud's IPv6 is static: no DHCPv6, the gateway is `fe80::1`).
//!
//! Added to schema 2 with `serde(default)`: state written before reads as "nothing known".

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The machine's public addresses, as the provider reported them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicNetwork {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<Ipv4Addr>,
    /// The machine's IPv6 address with its prefix (hcloud: `<network>::1/64`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Interface>,
    /// The IPv6 gateway when the provider gives it statically (hcloud: `fe80::1`); `None`
    /// where router advertisements or DHCPv6 configure it (aws).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<Ipv6Addr>,
}

impl PublicNetwork {
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// An IPv6 address on a network of `prefix` bits: `2001:db8:1:2::1/64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Interface {
    pub address: Ipv6Addr,
    pub prefix: u8,
}

impl Ipv6Interface {
    /// The first host address of a network (`2001:db8::/64` → `2001:db8::1/64`), as Hetzner
    /// assigns it; an address without a prefix stands alone (`/128`).
    pub fn first_of(network: &str) -> Option<Self> {
        let Some((net, prefix)) = network.split_once('/') else {
            return Some(Self { address: network.parse().ok()?, prefix: 128 });
        };
        let net: Ipv6Addr = net.parse().ok()?;
        let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 128)?;
        let address = if prefix == 128 { net } else { Ipv6Addr::from(u128::from(net) | 1) };
        Some(Self { address, prefix })
    }
}

impl fmt::Display for Ipv6Interface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

impl FromStr for Ipv6Interface {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{s}` is not an IPv6 address with a prefix (2001:db8::1/64)");
        let (address, prefix) = s.split_once('/').ok_or_else(bad)?;
        Ok(Self {
            address: address.parse().map_err(|_| bad())?,
            prefix: prefix.parse().ok().filter(|p| *p <= 128).ok_or_else(bad)?,
        })
    }
}

impl Serialize for Ipv6Interface {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ipv6Interface {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_address_of_a_network_keeps_its_prefix() {
        let i = Ipv6Interface::first_of("2a01:4f8:1c1c:1234::/64").unwrap();
        assert_eq!(i.to_string(), "2a01:4f8:1c1c:1234::1/64");
        assert_eq!(Ipv6Interface::first_of("2001:db8::7").unwrap().to_string(), "2001:db8::7/128");
        assert_eq!(Ipv6Interface::first_of("2001:db8::/129"), None);
        assert_eq!(Ipv6Interface::first_of("not-an-address/64"), None);
    }

    #[test]
    fn it_reads_back_what_it_writes_and_old_state_reads_as_nothing_known() {
        let n = PublicNetwork {
            ipv4: Some(Ipv4Addr::new(203, 0, 113, 7)),
            ipv6: Ipv6Interface::first_of("2001:db8:1::/64"),
            gateway6: Some("fe80::1".parse().unwrap()),
        };
        let json = serde_json::to_value(&n).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"ipv4": "203.0.113.7", "ipv6": "2001:db8:1::1/64", "gateway6": "fe80::1"})
        );
        assert_eq!(serde_json::from_value::<PublicNetwork>(json).unwrap(), n);
        let old: super::super::HostState =
            serde_json::from_str(r#"{"addresses": ["[2001:db8::1]:22"]}"#).unwrap();
        assert!(old.network.is_empty());
        let bad = serde_json::from_str::<PublicNetwork>(r#"{"ipv6": "2001:db8::1"}"#);
        assert!(bad.unwrap_err().to_string().contains("with a prefix"));
    }
}
