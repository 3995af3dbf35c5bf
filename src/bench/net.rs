//! The net suite (being written).

use super::peers::{Peer, Peers};
use super::report::SuiteReport;
use super::{fail, Bench, Result};

pub fn run(_bench: &mut Bench, _peers: &mut Peers, _against: &[Peer]) -> Result<SuiteReport> {
    Err(fail("the net suite is not written yet"))
}
