//! Container ids: the 64 hex digits poc generates (or the name an OCI caller gives) and their short
//! form. Below every other module: it knows nothing of state, paths or the CLI.

use std::fmt;

/// How many characters of an id `ps`, `stats` and the default hostname show, as Docker's.
pub const SHORT_LEN: usize = 12;

/// A container's id: 64 hex digits from the kernel's random pool for `poc run`'s containers, the
/// caller's own for OCI ones (`poc create ID`). Either way one safe path component of the state
/// root. Stored in JSON as a plain string, checked again when read.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct ContainerId(String);

/// An id a caller gave that poc cannot take (runc's wording of the rule).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid container id {0:?}: use letters, digits, _ + - .")]
pub struct InvalidId(pub String);

impl ContainerId {
    /// A fresh id: 64 hex digits.
    pub fn generate() -> Self {
        ContainerId(new_hex_id())
    }

    /// An id as runc accepts it (letters, digits, `_ + - .`, at most 1024 characters, not `.` or
    /// `..`): every generated id is one, and it keeps an id one path component of the state root.
    pub fn parse(id: &str) -> Result<Self, InvalidId> {
        let valid = !id.is_empty()
            && id.len() <= 1024
            && id != "."
            && id != ".."
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_+-.".contains(c));
        if valid {
            Ok(ContainerId(id.to_string()))
        } else {
            Err(InvalidId(id.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 characters (all of a shorter OCI id).
    pub fn short(&self) -> &str {
        short(&self.0)
    }
}

/// The first 12 characters of any long hex id (a container's, a network's, an image digest), or
/// all of a shorter one.
pub fn short(id: &str) -> &str {
    id.get(..SHORT_LEN).unwrap_or(id)
}

/// 64 hex digits from the kernel's random pool: container and network ids.
pub fn new_hex_id() -> String {
    let mut bytes = [0u8; 32];
    let mut filled = 0;
    while filled < bytes.len() {
        // SAFETY: getrandom writes at most the remaining length into our buffer.
        let n = unsafe {
            libc::getrandom(bytes[filled..].as_mut_ptr().cast(), bytes.len() - filled, 0)
        };
        if n > 0 {
            filled += n as usize;
        }
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl std::ops::Deref for ContainerId {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ContainerId {
    type Error = InvalidId;

    fn try_from(id: String) -> Result<Self, InvalidId> {
        ContainerId::parse(&id)
    }
}

impl From<ContainerId> for String {
    fn from(id: ContainerId) -> String {
        id.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_64_hex_digits_and_show_12() {
        let id = ContainerId::generate();
        assert_eq!(id.len(), 64);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(id.short(), &id.as_str()[..12]);
        assert_ne!(id, ContainerId::generate());
    }

    #[test]
    fn ids_are_one_safe_path_component() {
        for good in ["abc", "a.b-c_d+e", "0123456789abcdef"] {
            assert!(ContainerId::parse(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "../x", "a b", "a\u{e9}"] {
            assert_eq!(ContainerId::parse(bad), Err(InvalidId(bad.into())), "{bad}");
        }
    }

    #[test]
    fn a_short_oci_id_is_shown_whole() {
        assert_eq!(ContainerId::parse("c1").unwrap().short(), "c1");
        assert_eq!(short("sha256"), "sha256");
    }

    #[test]
    fn ids_are_json_strings_checked_when_read() {
        let id = ContainerId::parse("c1").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), r#""c1""#);
        assert_eq!(serde_json::from_str::<ContainerId>(r#""c1""#).unwrap(), id);
        assert!(serde_json::from_str::<ContainerId>(r#""../x""#).is_err());
    }
}
