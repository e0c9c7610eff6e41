//! Sharding: N replicas split the targets among them with no coordinator.
//!
//! A target belongs to shard `I` of `N` when the FNV-1a 64-bit hash of its name is `I` modulo
//! `N`. The hash is spelt out here rather than taken from the standard library, whose hasher
//! may change between Rust releases: a target must stay on the same shard across upgrades, or
//! a rollout would move it and throw its measurement away.

use std::fmt;

/// The largest N accepted: far more replicas than any fleet needs, small enough for a label.
pub const MAX_SHARDS: u32 = 1024;

/// This replica's share of the targets (`--shard=I/N`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// Parses `I/N`, with `0 <= I < N <= MAX_SHARDS`.
    pub fn parse(text: &str) -> Result<Shard, String> {
        let refused = |why: &str| format!("`{text}` is not a shard like 0/3: {why}");
        let (index, count) = text
            .trim()
            .split_once('/')
            .ok_or_else(|| refused("expected I/N"))?;
        // A number too large for u32 is a number: say so, not "not a whole number".
        let number = |text: &str, name: &str| {
            text.parse::<u32>().map_err(|e| match e.kind() {
                std::num::IntErrorKind::PosOverflow => {
                    refused(&format!("{name} is too large (N is at most {MAX_SHARDS})"))
                }
                _ => refused(&format!("{name} is not a whole number")),
            })
        };
        let index = number(index, "I")?;
        let count = number(count, "N")?;
        if count == 0 || count > MAX_SHARDS {
            return Err(refused(&format!("N must be 1 to {MAX_SHARDS}")));
        }
        if index >= count {
            return Err(refused("I counts from 0 and must be below N"));
        }
        Ok(Shard { index, count })
    }

    /// Whether the target named `name` is this replica's.
    pub fn owns(&self, name: &str) -> bool {
        fnv1a(name.as_bytes()) % u64::from(self.count) == u64::from(self.index)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// FNV-1a, 64 bits (http://www.isthe.com/chongo/tech/comp/fnv/).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_past_u32_is_too_large_not_not_a_number() {
        for (text, why) in [
            ("1/99999999999", "N is too large (N is at most 1024)"),
            ("99999999999/3", "I is too large (N is at most 1024)"),
            ("1/5000", "N must be 1 to 1024"),
            ("1/x", "N is not a whole number"),
        ] {
            let e = Shard::parse(text).unwrap_err();
            assert!(e.ends_with(why), "{text}: {e}");
        }
    }

    #[test]
    fn parses_i_of_n_and_refuses_the_rest() {
        assert_eq!(Shard::parse("2/5"), Ok(Shard { index: 2, count: 5 }));
        assert_eq!(Shard::parse("0/1").unwrap().to_string(), "0/1");
        for bad in [
            "", "3", "3/3", "-1/3", "1/0", "a/3", "1/b", "0/1025", "1/2/3",
        ] {
            let e = Shard::parse(bad).unwrap_err();
            assert!(e.contains("is not a shard like 0/3"), "{bad}: {e}");
        }
    }

    /// The published FNV-1a test vectors, and the shards some names fall in: if either
    /// changes, targets would move between replicas on upgrade.
    #[test]
    fn the_hash_is_stable() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
        let three: Vec<u32> = ["orders-db", "billing", "users", "search", "audit"]
            .iter()
            .map(|name| {
                (0..3)
                    .find(|i| {
                        Shard {
                            index: *i,
                            count: 3,
                        }
                        .owns(name)
                    })
                    .unwrap()
            })
            .collect();
        // Computed once, independently (Python), and pinned.
        assert_eq!(three, [0, 1, 1, 0, 0]);
    }

    #[test]
    fn every_target_is_in_exactly_one_shard_and_the_shards_are_even() {
        let names: Vec<String> = (0..10_000).map(|i| format!("db-{i}.prod")).collect();
        for count in 1..=8 {
            let mut sizes = vec![0usize; count as usize];
            for name in &names {
                let owners: Vec<u32> = (0..count)
                    .filter(|index| {
                        Shard {
                            index: *index,
                            count,
                        }
                        .owns(name)
                    })
                    .collect();
                assert_eq!(owners.len(), 1, "{name} with N = {count}: {owners:?}");
                sizes[owners[0] as usize] += 1;
            }
            let even = names.len() / count as usize;
            for size in &sizes {
                assert!(
                    size.abs_diff(even) < even / 10 + 50,
                    "N = {count}: {sizes:?}"
                );
            }
        }
    }
}
