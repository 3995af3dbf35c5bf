//! Names for containers run without `--name`, as Docker gives them: `adjective_surname`, claimed in
//! the name index like a chosen one. Owns only the word lists and the choice; the claim is state's.

use crate::config::Paths;

use super::state::{self, StateError};

const ADJECTIVES: [&str; 40] = [
    "agile", "amazing", "bold", "brave", "bright", "calm", "clever", "cool", "curious", "daring",
    "eager", "elated", "fervent", "focused", "friendly", "gallant", "gentle", "happy", "hopeful",
    "jolly", "keen", "kind", "lucid", "merry", "modest", "nifty", "patient", "quick", "quiet",
    "relaxed", "serene", "sharp", "steady", "sweet", "tender", "trusting", "upbeat", "vibrant",
    "wise", "zealous",
];

/// Scientists and engineers.
const SURNAMES: [&str; 48] = [
    "agnesi",
    "babbage",
    "bardeen",
    "bohr",
    "curie",
    "darwin",
    "dijkstra",
    "einstein",
    "euler",
    "faraday",
    "fermi",
    "feynman",
    "franklin",
    "galileo",
    "gauss",
    "goodall",
    "hamilton",
    "hawking",
    "heisenberg",
    "hopper",
    "hypatia",
    "johnson",
    "kepler",
    "knuth",
    "lamarr",
    "leakey",
    "liskov",
    "lovelace",
    "maxwell",
    "meitner",
    "mendel",
    "newton",
    "noether",
    "pascal",
    "pasteur",
    "planck",
    "ritchie",
    "sammet",
    "shannon",
    "tesla",
    "thompson",
    "torvalds",
    "turing",
    "volta",
    "wilson",
    "wing",
    "wright",
    "yalow",
];

/// Plain names tried before a digit is added to them, as Docker retries.
const PLAIN_TRIES: u64 = 10;
/// All tries, the ones with a digit included: each is a different pair.
const TRIES: u64 = 100;

/// Reserves the state directory of container `id` under a generated name free in the index, and
/// returns the name. The pairs follow from the id (which is random): a pair taken by another
/// container, even one claimed at the same moment, moves on to the next.
pub fn reserve(paths: &Paths, id: &str) -> Result<String, StateError> {
    let seed = u64::from_str_radix(&id[..id.len().min(16)], 16).unwrap_or(0);
    let mut last = None;
    for attempt in 0..TRIES {
        let name = candidate(seed, attempt);
        match state::reserve(paths, id, Some(&name)) {
            Ok(_) => return Ok(name),
            Err(e @ StateError::NameInUse(_)) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| StateError::NameInUse(String::new())))
}

/// The `attempt`th name for `seed`: a pair, then from [`PLAIN_TRIES`] on a pair with a digit.
fn candidate(seed: u64, attempt: u64) -> String {
    let r = mix(seed.wrapping_add(attempt));
    let adjective = ADJECTIVES[(r % ADJECTIVES.len() as u64) as usize];
    let surname = SURNAMES[((r >> 16) % SURNAMES.len() as u64) as usize];
    if attempt < PLAIN_TRIES {
        format!("{adjective}_{surname}")
    } else {
        format!("{adjective}_{surname}{}", (r >> 32) % 10)
    }
}

/// splitmix64's finaliser: neighbouring seeds give unrelated pairs.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_adjective_underscore_surname_and_a_digit_only_after_the_plain_tries() {
        for seed in [0u64, 1, 0xdead_beef, u64::MAX] {
            for attempt in 0..TRIES {
                let name = candidate(seed, attempt);
                let (adjective, rest) = name.split_once('_').unwrap();
                assert!(ADJECTIVES.contains(&adjective), "{name}");
                let surname = rest.trim_end_matches(|c: char| c.is_ascii_digit());
                assert!(SURNAMES.contains(&surname), "{name}");
                assert_eq!(rest.len() > surname.len(), attempt >= PLAIN_TRIES, "{name}");
                assert_ne!(surname, "wozniak");
            }
        }
    }

    #[test]
    fn a_taken_name_moves_on_to_another_one() {
        let names: std::collections::HashSet<String> =
            (0..PLAIN_TRIES).map(|a| candidate(42, a)).collect();
        assert!(names.len() >= 8, "{names:?}");
    }

    #[test]
    fn generated_names_are_valid_container_names() {
        for seed in 0..200u64 {
            let name = candidate(seed, seed % TRIES);
            assert_eq!(crate::names::parse_name(&name), Ok(name.clone()));
        }
    }
}
