//! Source networks: every CIDR that covers an address, via prefix-trie's `cover`.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;

/// Maps networks to the rules that name them.
#[derive(Debug, Clone, Default)]
pub(crate) struct SourceIndex {
    v4: PrefixMap<Ipv4Net, Vec<u32>>,
    v6: PrefixMap<Ipv6Net, Vec<u32>>,
    len: usize,
}

impl SourceIndex {
    pub(crate) fn insert(&mut self, net: IpNet, rule: u32) {
        self.len += 1;
        match net.trunc() {
            IpNet::V4(n) => match self.v4.get_mut(&n) {
                Some(v) => v.push(rule),
                None => {
                    self.v4.insert(n, vec![rule]);
                }
            },
            IpNet::V6(n) => match self.v6.get_mut(&n) {
                Some(v) => v.push(rule),
                None => {
                    self.v6.insert(n, vec![rule]);
                }
            },
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Calls `f(rule, prefix_len)` for every network containing `ip`.
    pub(crate) fn covering(&self, ip: IpAddr, mut f: impl FnMut(u32, u8)) {
        match ip {
            IpAddr::V4(a) => {
                let host = Ipv4Net::from(a);
                for (net, rules) in self.v4.cover(&host) {
                    for &r in rules {
                        f(r, net.prefix_len());
                    }
                }
            }
            IpAddr::V6(a) => {
                let host = Ipv6Net::from(a);
                for (net, rules) in self.v6.cover(&host) {
                    for &r in rules {
                        f(r, net.prefix_len());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_covering_networks() {
        let mut s = SourceIndex::default();
        s.insert("10.0.0.0/8".parse().unwrap(), 1);
        s.insert("10.1.0.0/16".parse().unwrap(), 2);
        s.insert("10.1.2.3/32".parse().unwrap(), 3);
        s.insert("10.2.0.0/16".parse().unwrap(), 4);
        s.insert("2001:db8::/32".parse().unwrap(), 5);
        s.insert("10.1.9.9/16".parse().unwrap(), 6); // host bits are ignored
        let mut hits = vec![];
        s.covering("10.1.2.3".parse().unwrap(), |r, n| hits.push((r, n)));
        hits.sort();
        assert_eq!(hits, vec![(1, 8), (2, 16), (3, 32), (6, 16)]);
        hits.clear();
        s.covering("2001:db8::1".parse().unwrap(), |r, n| hits.push((r, n)));
        assert_eq!(hits, vec![(5, 32)]);
    }
}
