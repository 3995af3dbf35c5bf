//! The container log: what the container wrote, as records of `<unix nanos> <o|e> <length>\n<bytes>`,
//! appended by the monitor only. Binary-safe, and a reader can tell a record still being written.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

pub use crate::process::Stream;

fn tag(stream: Stream) -> char {
    match stream {
        Stream::Stdout => 'o',
        Stream::Stderr => 'e',
    }
}

/// One chunk the container wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub time_ns: u64,
    pub stream: Stream,
    pub data: Vec<u8>,
}

pub struct Writer {
    file: File,
}

impl Writer {
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let file = crate::private::options()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Writer { file })
    }

    /// Appends one record with a single write, so readers never see a header without its bytes
    /// for long (and skip it until they do).
    pub fn append(&mut self, stream: Stream, data: &[u8]) -> std::io::Result<()> {
        let mut record = format!(
            "{} {} {}\n",
            crate::units::now_ns(),
            tag(stream),
            data.len()
        )
        .into_bytes();
        record.extend_from_slice(data);
        self.file.write_all(&record)
    }
}

/// Reads complete records from `offset`, about `limit` bytes of them (a first record longer than
/// that whole); returns them and the offset after the last complete one. Readers go through a log
/// in such steps: it grows as long as the container writes, and the whole of it in memory (twice,
/// as bytes and as records) took 839 MB to print a 400 MB log.
pub fn read_from(path: &Path, offset: u64, limit: usize) -> std::io::Result<(Vec<Record>, u64)> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), offset)),
        Err(e) => return Err(e),
    };
    file.seek(SeekFrom::Start(offset))?;
    let mut bytes = Vec::new();
    // At least a whole header: "<time> <o|e> <length>\n" is under 64 bytes.
    (&mut file)
        .take(limit.max(64) as u64)
        .read_to_end(&mut bytes)?;
    if let Some((_, _, start, len)) = header(&bytes) {
        if bytes.len() < start + len {
            let missing = (start + len - bytes.len()) as u64;
            file.take(missing).read_to_end(&mut bytes)?;
        }
    }
    let (records, used) = parse(&bytes);
    Ok((records, offset + used as u64))
}

/// The record header at the start of `bytes`: time, stream, where the data starts and its length.
fn header(bytes: &[u8]) -> Option<(u64, Stream, usize, usize)> {
    let newline = bytes.iter().position(|&b| b == b'\n')?;
    let header = std::str::from_utf8(&bytes[..newline]).ok()?;
    let mut fields = header.split(' ');
    let (time, tag, len) = (fields.next()?, fields.next()?, fields.next()?);
    let stream = if tag == "e" {
        Stream::Stderr
    } else {
        Stream::Stdout
    };
    Some((time.parse().ok()?, stream, newline + 1, len.parse().ok()?))
}

fn parse(bytes: &[u8]) -> (Vec<Record>, usize) {
    let mut records = Vec::new();
    let mut pos = 0;
    while let Some((time_ns, stream, start, len)) = header(&bytes[pos..]) {
        let (start, end) = (pos + start, pos + start + len);
        if bytes.len() < end {
            break;
        }
        records.push(Record {
            time_ns,
            stream,
            data: bytes[start..end].to_vec(),
        });
        pos = end;
    }
    (records, pos)
}

/// A line of output with the time of the record it started in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Line {
    pub time_ns: u64,
    pub stream: Stream,
    pub text: Vec<u8>,
}

/// Cuts records into lines per stream as they come (a line may span records). A line longer than
/// [`LONGEST_LINE`] is cut there, as Docker's json-file log cuts at 16 KiB: a container writing
/// without newlines must not make a reader hold all it wrote.
#[derive(Default)]
pub struct Lines {
    open: [Option<Line>; 2],
}

const LONGEST_LINE: usize = 16 << 10;

impl Lines {
    /// The lines `record` completes.
    pub fn push(&mut self, record: &Record) -> Vec<Line> {
        let mut done = Vec::new();
        let slot = &mut self.open[record.stream as usize];
        for mut piece in record.data.split_inclusive(|&b| b == b'\n') {
            while !piece.is_empty() {
                let line = slot.get_or_insert_with(|| Line {
                    time_ns: record.time_ns,
                    stream: record.stream,
                    text: Vec::new(),
                });
                let room = LONGEST_LINE - line.text.len();
                let (now, rest) = piece.split_at(piece.len().min(room));
                line.text.extend_from_slice(now);
                if now.ends_with(b"\n") || line.text.len() == LONGEST_LINE {
                    done.extend(slot.take());
                }
                piece = rest;
            }
        }
        done
    }

    /// The last line of each stream, which may lack its newline.
    pub fn finish(self) -> impl Iterator<Item = Line> {
        self.open.into_iter().flatten()
    }
}

/// The `n` lines that started last (by the time of their first record), of all those given.
pub struct LastLines {
    n: usize,
    /// The earliest kept on top, with a sequence number to keep equal times in order.
    kept: std::collections::BinaryHeap<std::cmp::Reverse<Kept>>,
    seq: u64,
}

/// A kept line, after its time and a sequence number.
type Kept = (u64, u64, Line);

impl LastLines {
    pub fn new(n: usize) -> Self {
        LastLines {
            n,
            kept: Default::default(),
            seq: 0,
        }
    }

    pub fn push(&mut self, line: Line) {
        self.seq += 1;
        self.kept
            .push(std::cmp::Reverse((line.time_ns, self.seq, line)));
        if self.kept.len() > self.n {
            self.kept.pop();
        }
    }

    /// The kept lines, oldest first.
    pub fn into_lines(self) -> Vec<Line> {
        let mut kept: Vec<Kept> = self.kept.into_iter().map(|r| r.0).collect();
        kept.sort();
        kept.into_iter().map(|(_, _, line)| line).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_partial_records_wait() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut w = Writer::create(&path).unwrap();
        w.append(Stream::Stdout, b"one\ntw").unwrap();
        w.append(Stream::Stderr, b"oops\n").unwrap();
        w.append(Stream::Stdout, b"o\n\0bin\n").unwrap();
        let (records, end) = read_from(&path, 0, 1 << 20).unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(records[1].stream, Stream::Stderr);
        assert_eq!(end, std::fs::metadata(&path).unwrap().len());
        // In steps smaller than a record, a record still comes whole.
        let big = dir.path().join("big");
        let mut w2 = Writer::create(&big).unwrap();
        w2.append(Stream::Stdout, &[b'x'; 5000]).unwrap();
        w2.append(Stream::Stdout, b"next").unwrap();
        let (first, after) = read_from(&big, 0, 100).unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].data.len(), 5000);
        let (second, _) = read_from(&big, after, 100).unwrap();
        assert_eq!(second[0].data, b"next");
        let mut splitter = Lines::default();
        let mut last = LastLines::new(10);
        for record in &records {
            splitter.push(record).into_iter().for_each(|l| last.push(l));
        }
        splitter.finish().for_each(|l| last.push(l));
        let all = last.into_lines();
        let mut texts: Vec<Vec<u8>> = all.iter().map(|l| l.text.clone()).collect();
        assert_eq!(texts[0], b"one\n".to_vec());
        texts.sort();
        assert_eq!(
            texts,
            vec![
                b"\0bin\n".to_vec(),
                b"one\n".to_vec(),
                b"oops\n".to_vec(),
                b"two\n".to_vec()
            ]
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"123 o 10\nabc")
            .unwrap();
        let (more, end2) = read_from(&path, end, 1 << 20).unwrap();
        assert!(more.is_empty(), "an incomplete record is not returned");
        assert_eq!(end2, end);
    }

    #[test]
    fn the_last_lines_are_those_that_started_last_whatever_finished_when() {
        let record = |time_ns, stream, data: &[u8]| Record {
            time_ns,
            stream,
            data: data.to_vec(),
        };
        let mut splitter = Lines::default();
        let mut last = LastLines::new(2);
        for r in [
            record(1, Stream::Stdout, b"long "),
            record(2, Stream::Stderr, b"e1\n"),
            record(3, Stream::Stderr, b"e2\n"),
            record(4, Stream::Stdout, b"line\n"),
            record(5, Stream::Stderr, b"e3"),
        ] {
            splitter.push(&r).into_iter().for_each(|l| last.push(l));
        }
        splitter.finish().for_each(|l| last.push(l));
        let texts: Vec<Vec<u8>> = last.into_lines().into_iter().map(|l| l.text).collect();
        assert_eq!(texts, [b"e2\n".to_vec(), b"e3".to_vec()]);
        // A line without end is cut at LONGEST_LINE.
        let mut splitter = Lines::default();
        let long = vec![b'x'; LONGEST_LINE * 2 + 5];
        let done = splitter.push(&record(6, Stream::Stdout, &long));
        assert_eq!(done.len(), 2);
        assert!(done.iter().all(|l| l.text.len() == LONGEST_LINE));
        assert_eq!(splitter.finish().next().unwrap().text.len(), 5);
    }
}
