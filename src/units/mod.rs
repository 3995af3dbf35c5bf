//! Units and time: sizes and durations as users write them and as tables show them, the clock, and
//! RFC 3339. The lowest layer: imports nothing from the rest of poc, so every module may use it.

mod size;
mod time;

pub use size::{human_size, parse_size};
pub use time::{ago, duration, now_ns, now_secs, parse_duration, parse_time, rfc3339};
