//! `poc logs [-f] [--tail N] [-t] CONTAINER`: what the container wrote, stdout and stderr apart.

use std::io::Write;
use std::time::Duration;

use crate::config::Paths;
use crate::container::logs::{self, Line, Record, Stream};
use crate::container::state::{self, Status};

#[derive(clap::Args)]
pub struct Args {
    /// Keep printing new output until the container exits.
    #[arg(short, long)]
    follow: bool,
    /// Only the last N lines.
    #[arg(long, value_name = "N")]
    tail: Option<usize>,
    /// Prefix each line with the time it was written (RFC 3339).
    #[arg(short, long)]
    timestamps: bool,
    container: String,
}

/// How much of the log is read at a time.
const STEP: usize = 4 << 20;

pub fn run(paths: &Paths, args: Args) -> Result<i32, super::Exit> {
    let id = state::resolve(paths, &args.container)?;
    let path = state::load(paths, &id)?.log_path();
    let mut printer = Printer {
        timestamps: args.timestamps,
        at_line_start: [true, true],
    };
    // What the log holds now: a container writing faster than this prints must not keep it going
    // (`-f` follows on from there).
    let end = std::fs::metadata(&path).map_or(0, |m| m.len());
    let mut offset = 0;
    let mut splitter = logs::Lines::default();
    let mut last = args.tail.map(logs::LastLines::new);
    while offset < end {
        let step = STEP.min((end - offset) as usize);
        let (records, next) = logs::read_from(&path, offset, step)?;
        if records.is_empty() {
            break;
        }
        offset = next;
        for record in &records {
            match &mut last {
                Some(last) => splitter.push(record).into_iter().for_each(|l| last.push(l)),
                None => printer.record(record),
            }
        }
    }
    if let Some(mut last) = last {
        splitter.finish().for_each(|l| last.push(l));
        last.into_lines().iter().for_each(|l| printer.line(l));
    }
    if args.follow {
        loop {
            let running = state::load(paths, &id).is_ok_and(|s| {
                s.status != Status::Exited && s.monitor.is_some_and(|m| m.is_alive())
            });
            let (more, next) = logs::read_from(&path, offset, STEP)?;
            offset = next;
            more.iter().for_each(|r| printer.record(r));
            if !running && more.is_empty() {
                break;
            }
            if more.is_empty() {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    Ok(0)
}

struct Printer {
    timestamps: bool,
    at_line_start: [bool; 2],
}

impl Printer {
    fn line(&mut self, line: &Line) {
        self.write(line.stream, line.time_ns, &line.text);
    }

    fn record(&mut self, record: &Record) {
        self.write(record.stream, record.time_ns, &record.data);
    }

    /// Writes `data` to the stream it came from, stamping each line start with `time_ns`.
    fn write(&mut self, stream: Stream, time_ns: u64, data: &[u8]) {
        let stdout = std::io::stdout();
        let stderr = std::io::stderr();
        let mut out: Box<dyn Write> = match stream {
            Stream::Stdout => Box::new(stdout.lock()),
            Stream::Stderr => Box::new(stderr.lock()),
        };
        let start = &mut self.at_line_start[stream as usize];
        if !self.timestamps {
            let _ = out.write_all(data);
        } else {
            for piece in data.split_inclusive(|&b| b == b'\n') {
                if *start {
                    let _ = write!(out, "{} ", crate::units::rfc3339(time_ns));
                }
                let _ = out.write_all(piece);
                *start = piece.ends_with(b"\n");
            }
        }
        if let Some(&last) = data.last() {
            *start = last == b'\n';
        }
        let _ = out.flush();
    }
}
