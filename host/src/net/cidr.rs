//! Address ranges as operators write them (`10.0.0.0/8`, `fd00::/8`, or
//! one address): what `connect=` and `proxy-from=` rules match against.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An address range: an address is a range of its full length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    base: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The range of the one address `addr`.
    pub fn single(addr: IpAddr) -> Self {
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        Self { base: addr, prefix }
    }

    /// The range of the first `prefix` bits of this one's base.
    pub fn widened(self, prefix: u8) -> Self {
        Self {
            prefix: prefix.min(self.prefix),
            ..self
        }
    }

    /// Whether `addr` is in the range; an IPv4-mapped IPv6 address counts
    /// as its IPv4 address.
    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self.base, addr.to_canonical()) {
            (IpAddr::V4(base), IpAddr::V4(addr)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(base) & mask == u32::from(addr) & mask
            }
            (IpAddr::V6(base), IpAddr::V6(addr)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(base) & mask == u128::from(addr) & mask
            }
            _ => false,
        }
    }

    /// Whether it is one address, not a wider range.
    pub fn is_single(&self) -> bool {
        self.prefix == if self.base.is_ipv4() { 32 } else { 128 }
    }

    pub fn is_ipv6(&self) -> bool {
        self.base.is_ipv6()
    }
}

impl FromStr for Cidr {
    type Err = String;

    /// `ADDRESS` or `ADDRESS/PREFIX`, IPv6 without brackets.
    fn from_str(text: &str) -> Result<Self, String> {
        let Some((base, prefix)) = text.split_once('/') else {
            let addr = text
                .parse()
                .map_err(|_| format!("`{text}` is not an IP address or range"))?;
            return Ok(Self::single(addr));
        };
        let base: IpAddr = base
            .parse()
            .map_err(|_| "a range needs a numeric address".to_owned())?;
        let bits = if base.is_ipv4() { 32 } else { 128 };
        let prefix = prefix
            .parse()
            .ok()
            .filter(|p| *p <= bits)
            .ok_or_else(|| format!("the prefix length is not 0 to {bits}"))?;
        Ok(Self { base, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_single() {
            write!(f, "{}", self.base)
        } else {
            write!(f, "{}/{}", self.base, self.prefix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_hold_their_addresses_only() {
        let range: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(range.contains("10.200.1.2".parse().unwrap()));
        assert!(range.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(!range.contains("11.0.0.1".parse().unwrap()));
        let one: Cidr = "::1".parse().unwrap();
        assert!(one.contains("::1".parse().unwrap()));
        assert!(!one.contains("127.0.0.1".parse().unwrap()));
        assert!(
            "0.0.0.0/0"
                .parse::<Cidr>()
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert_eq!("fd00::/8".parse::<Cidr>().unwrap().to_string(), "fd00::/8");
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("localhost".parse::<Cidr>().is_err());
    }
}
