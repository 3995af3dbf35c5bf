//! Placeholder until the seccomp branch lands.

pub struct Filter;

impl Filter {
    pub fn install(&self) -> Result<(), nix::Error> {
        Ok(())
    }
}
