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
        let mut record = format!("{} {} {}\n", now_ns(), tag(stream), data.len()).into_bytes();
        record.extend_from_slice(data);
        self.file.write_all(&record)
    }
}

pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
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

/// RFC 3339 in UTC with nanoseconds, as Docker prints with --timestamps.
pub fn rfc3339(time_ns: u64) -> String {
    let secs = time_ns / 1_000_000_000;
    let nanos = time_ns % 1_000_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A point in time as users write it, in ns since the epoch: Unix seconds (`1795000000.5`),
/// RFC 3339 (`2026-11-18T11:06:40Z`, `...40.5+01:00`), or a duration ago (`10m`, `1h30m`).
pub fn parse_time(text: &str, now_ns: u64) -> Result<u64, String> {
    let t = text.trim();
    if let Ok(secs) = t.parse::<f64>() {
        if secs >= 0.0 {
            return Ok((secs * 1e9) as u64);
        }
    }
    if let Some(time) = parse_rfc3339(t) {
        return Ok(time);
    }
    match crate::spec::parse_duration(t) {
        Ok(ago) => Ok(now_ns.saturating_sub(ago.as_nanos() as u64)),
        Err(_) => Err(format!(
            "'{text}' is not a time: give Unix seconds, RFC 3339 (2026-11-18T11:06:40Z) or a duration ago (10m)"
        )),
    }
}

fn parse_rfc3339(t: &str) -> Option<u64> {
    let (date, time) = t.split_once(['T', 't', ' '])?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (d.next()??, d.next()??, d.next()??);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let (clock, offset) = if let Some(c) = time.strip_suffix(['Z', 'z']) {
        (c, 0)
    } else {
        let at = time.rfind(['+', '-'])?;
        let (c, off) = time.split_at(at);
        let (h, m) = off[1..].split_once(':')?;
        let secs = h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60;
        (c, if off.starts_with('-') { -secs } else { secs })
    };
    let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut parts = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (h, m, s) = (parts.next()??, parts.next()??, parts.next()??);
    if h > 23 || m > 59 || s > 60 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let nanos: i64 = format!("{fraction:0<9}")[..9].parse().ok()?;
    let secs =
        days_from_civil(year, month as u32, day as u32) * 86_400 + h * 3600 + m * 60 + s - offset;
    u64::try_from(secs * 1_000_000_000 + nanos).ok()
}

/// (year, month, day) to days since 1970-01-01, the inverse of [`civil_from_days`].
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
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

    #[test]
    fn times_are_parsed_from_unix_seconds_rfc3339_and_durations_ago() {
        let now = 1_795_000_000_123_456_789;
        assert_eq!(parse_time("1795000000", now), Ok(1_795_000_000_000_000_000));
        assert_eq!(
            parse_time("2026-11-18T11:06:40.123456789Z", now),
            Ok(1_795_000_000_123_456_789)
        );
        assert_eq!(
            parse_time("2026-11-18T12:06:40+01:00", now),
            Ok(1_795_000_000_000_000_000)
        );
        assert_eq!(parse_time("1970-01-01T00:00:00Z", now), Ok(0));
        assert_eq!(parse_time("10m", now), Ok(now - 600_000_000_000));
        assert!(parse_time("yesterday", now).is_err());
        assert!(parse_time("2026-13-01T00:00:00Z", now).is_err());
        for days in [-1000, 0, 59, 60, 365, 20_000, 60_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339(1_795_000_000_123_456_789),
            "2026-11-18T11:06:40.123456789Z"
        );
        assert_eq!(
            rfc3339(951_782_400_000_000_000),
            "2000-02-29T00:00:00.000000000Z"
        );
    }
}
