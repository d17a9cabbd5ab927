//! Source-address allow-list of the media listener: media platforms send no
//! token, so where they call from is what can be checked.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::domain::field::FieldError;

/// Networks allowed to connect; an IPv4 client reached over an IPv6 socket
/// (`::ffff:a.b.c.d`) is checked as IPv4.
#[derive(Debug, Clone)]
pub struct AllowList {
    nets: Vec<IpNet>,
}

impl AllowList {
    /// Parses CIDRs (`10.0.0.0/8`, `2001:db8::/32`) or single addresses;
    /// `key` names the config key in errors.
    pub fn parse(key: &'static str, entries: &[String]) -> Result<Self, FieldError> {
        let nets = entries
            .iter()
            .map(|e| {
                e.parse::<IpNet>()
                    .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| FieldError::new(key, format!("{e:?} is not a CIDR or an address")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { nets })
    }

    /// Whether `ip` may connect.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.nets.iter().any(|n| n.contains(&ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> AllowList {
        let owned: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
        AllowList::parse("server.media_allow", &owned).unwrap()
    }

    #[test]
    fn cidrs_and_single_addresses_admit_their_members_only() {
        let l = list(&["10.0.0.0/8", "192.168.1.7", "2001:db8::/32"]);
        assert!(l.contains("10.200.3.4".parse().unwrap()));
        assert!(l.contains("192.168.1.7".parse().unwrap()));
        assert!(!l.contains("192.168.1.8".parse().unwrap()));
        assert!(l.contains("2001:db8::1".parse().unwrap()));
        assert!(!l.contains("2001:db9::1".parse().unwrap()));
    }

    #[test]
    fn an_ipv4_client_on_an_ipv6_socket_is_checked_as_ipv4() {
        let l = list(&["127.0.0.0/8"]);
        assert!(l.contains("::ffff:127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn a_bad_entry_names_the_key_and_the_entry() {
        let err = AllowList::parse("server.media_allow", &["10.0.0.0/33".into()]).unwrap_err();
        assert!(err.to_string().contains("server.media_allow"), "{err}");
        assert!(err.to_string().contains("10.0.0.0/33"), "{err}");
    }
}
