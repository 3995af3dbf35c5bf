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

/// Reads complete records from `offset`; returns them and the offset after the last complete one.
pub fn read_from(path: &Path, offset: u64) -> std::io::Result<(Vec<Record>, u64)> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), offset)),
        Err(e) => return Err(e),
    };
    file.seek(SeekFrom::Start(offset))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let (records, used) = parse(&bytes);
    Ok((records, offset + used as u64))
}

fn parse(bytes: &[u8]) -> (Vec<Record>, usize) {
    let mut records = Vec::new();
    let mut pos = 0;
    while let Some(newline) = bytes[pos..].iter().position(|&b| b == b'\n') {
        let header = String::from_utf8_lossy(&bytes[pos..pos + newline]);
        let mut fields = header.split(' ');
        let (Some(time), Some(tag), Some(len)) = (fields.next(), fields.next(), fields.next())
        else {
            break;
        };
        let (Ok(time_ns), Ok(len)) = (time.parse::<u64>(), len.parse::<usize>()) else {
            break;
        };
        let stream = if tag == "e" {
            Stream::Stderr
        } else {
            Stream::Stdout
        };
        let start = pos + newline + 1;
        if bytes.len() < start + len {
            break;
        }
        records.push(Record {
            time_ns,
            stream,
            data: bytes[start..start + len].to_vec(),
        });
        pos = start + len;
    }
    (records, pos)
}

/// A line of output with the time of the record it started in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub time_ns: u64,
    pub stream: Stream,
    pub text: Vec<u8>,
}

/// Splits records into lines per stream (a line may span records); the last line of each stream
/// may lack its newline.
pub fn lines(records: &[Record]) -> Vec<Line> {
    let mut done = Vec::new();
    let mut open: [Option<Line>; 2] = [None, None];
    for record in records {
        let slot = &mut open[record.stream as usize];
        for piece in record.data.split_inclusive(|&b| b == b'\n') {
            let line = slot.get_or_insert_with(|| Line {
                time_ns: record.time_ns,
                stream: record.stream,
                text: Vec::new(),
            });
            line.text.extend_from_slice(piece);
            if piece.ends_with(b"\n") {
                done.push(slot.take().expect("just filled"));
            }
        }
    }
    done.extend(open.into_iter().flatten());
    done.sort_by_key(|l| l.time_ns);
    done
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
        let (records, end) = read_from(&path, 0).unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(records[1].stream, Stream::Stderr);
        assert_eq!(end, std::fs::metadata(&path).unwrap().len());
        let mut texts: Vec<Vec<u8>> = lines(&records).into_iter().map(|l| l.text).collect();
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
        let (more, end2) = read_from(&path, end).unwrap();
        assert!(more.is_empty(), "an incomplete record is not returned");
        assert_eq!(end2, end);
    }
}
