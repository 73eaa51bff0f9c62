//! Scratch space for what a review finds while the log streams past
//! (`races` findings, `history` steps): records appended as bytes, read
//! back later by offset (`races`, which sorts them) or in order
//! (`history`), so what is held in memory does not grow with the log. Up to [`MEM_LIMIT`] bytes stay in memory; beyond, the records go to
//! an unnamed temporary file (`O_TMPFILE` in `TMPDIR`, else `/tmp`), which
//! no other process can open and which vanishes with the process.
//!
//! Scratch only: never fsynced, never renamed into place, gone at exit. A
//! record is whole in memory or whole in the file.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use crate::error::{Error, Result};

/// Bytes held in memory before the records move to the file.
pub const MEM_LIMIT: usize = 4 << 20;

/// Records appended, read back by the offset [`Spill::push`] returned.
pub struct Spill {
    file: Option<File>,
    /// Bytes in the file; `mem` holds the bytes after them.
    in_file: u64,
    mem: Vec<u8>,
    limit: usize,
}

impl Default for Spill {
    fn default() -> Spill {
        Spill::with_limit(MEM_LIMIT)
    }
}

impl Spill {
    /// A spill that moves to its file past `limit` bytes in memory.
    pub fn with_limit(limit: usize) -> Spill {
        Spill {
            file: None,
            in_file: 0,
            mem: Vec::new(),
            limit,
        }
    }

    /// The bytes appended so far.
    pub fn len(&self) -> u64 {
        self.in_file + self.mem.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the records went to the file.
    pub fn on_disk(&self) -> bool {
        self.file.is_some()
    }

    /// Appends one record, written by `write`; returns its offset.
    pub fn push(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> Result<u64> {
        let at = self.len();
        write(&mut self.mem);
        if self.mem.len() > self.limit {
            self.flush()?;
        }
        Ok(at)
    }

    fn flush(&mut self) -> Result<()> {
        let file = match &mut self.file {
            Some(f) => f,
            None => self.file.insert(scratch_file()?),
        };
        file.write_all(&self.mem)
            .map_err(|e| Error::io(e, "cannot write scratch space for the review", temp_dir()))?;
        self.in_file += self.mem.len() as u64;
        self.mem.clear();
        Ok(())
    }

    /// Appends one record written by `write`, to be handed back whole, in
    /// order, by [`Spill::each_record`] (its length goes before it). A
    /// spill read by records is not read by offset.
    pub fn push_record(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> Result<()> {
        let at = self.mem.len();
        self.mem.extend_from_slice(&[0; 4]);
        write(&mut self.mem);
        let len = u32::try_from(self.mem.len() - at - 4).expect("a record under 4 GiB");
        self.mem[at..at + 4].copy_from_slice(&len.to_le_bytes());
        if self.mem.len() > self.limit {
            self.flush()?;
        }
        Ok(())
    }

    /// Hands each record of [`Spill::push_record`] to `each`, in order.
    pub fn each_record(&self, mut each: impl FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
        let mut buf = Vec::new();
        if let Some(file) = &self.file {
            let mut r = io::BufReader::with_capacity(
                WINDOW,
                At {
                    file,
                    pos: 0,
                    end: self.in_file,
                },
            );
            let mut len = [0u8; 4];
            loop {
                match r.read_exact(&mut len) {
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                    other => other?,
                }
                buf.resize(u32::from_le_bytes(len) as usize, 0);
                r.read_exact(&mut buf)?;
                each(&buf)?;
            }
        }
        let mut rest = &self.mem[..];
        while rest.len() >= 4 {
            let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
            each(&rest[4..4 + len])?;
            rest = &rest[4 + len..];
        }
        Ok(())
    }

    /// A reader of records by offset that reads the file a window of
    /// [`WINDOW`] bytes at a time, not one record at a time.
    pub fn window(&self) -> Window<'_> {
        Window {
            spill: self,
            start: 0,
            buf: Vec::new(),
        }
    }

    /// Bytes `[from, to)`: one whole record, as pushed.
    pub fn read(&self, from: u64, to: u64, buf: &mut Vec<u8>) -> io::Result<()> {
        buf.clear();
        if from >= self.in_file {
            let (a, b) = ((from - self.in_file) as usize, (to - self.in_file) as usize);
            buf.extend_from_slice(&self.mem[a..b]);
            return Ok(());
        }
        buf.resize((to - from) as usize, 0);
        let file = self
            .file
            .as_ref()
            .expect("bytes before in_file are in the file");
        file.read_exact_at(buf, from)
    }
}

/// Bytes read from the spill's file at a time by a [`Window`] (and by
/// [`Spill::each_record`]).
pub const WINDOW: usize = 1 << 20;

/// Records read by offset ([`Spill::window`]) through a window of the file:
/// records read in about the order they were pushed cost one `pread` per
/// [`WINDOW`] bytes.
pub struct Window<'s> {
    spill: &'s Spill,
    /// The offset of `buf`'s first byte.
    start: u64,
    buf: Vec<u8>,
}

impl Window<'_> {
    /// Bytes `[from, to)`: one whole record, as pushed.
    pub fn get(&mut self, from: u64, to: u64) -> io::Result<&[u8]> {
        let s = self.spill;
        if from >= s.in_file {
            let (a, b) = ((from - s.in_file) as usize, (to - s.in_file) as usize);
            return Ok(&s.mem[a..b]);
        }
        let end = self.start + self.buf.len() as u64;
        if from < self.start || to > end {
            // Records come back nearly in order: keep a little of what
            // lies before this one in the window too.
            let start = from.saturating_sub(WINDOW as u64 / 8);
            let len = ((to - start) as usize)
                .max(WINDOW)
                .min((s.in_file - start) as usize);
            self.buf.resize(len, 0);
            let file = s
                .file
                .as_ref()
                .expect("bytes before in_file are in the file");
            file.read_exact_at(&mut self.buf, start)?;
            self.start = start;
        }
        let a = (from - self.start) as usize;
        Ok(&self.buf[a..a + (to - from) as usize])
    }
}

/// The file's first `end` bytes, read from `pos` on (`pread`: the file's
/// own position, where the next records are written, is left alone).
struct At<'f> {
    file: &'f File,
    pos: u64,
    end: u64,
}

impl Read for At<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min((self.end - self.pos) as usize);
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

fn temp_dir() -> PathBuf {
    std::env::temp_dir()
}

/// An unnamed file in the temporary folder: `O_TMPFILE` where the file
/// system has it, else a fresh name (`O_EXCL`) removed at once.
fn scratch_file() -> Result<File> {
    use rustix::fs::{Mode, OFlags};
    let dir = temp_dir();
    let cannot = |e: io::Error| {
        Error::io(e, "cannot make scratch space for the review", &dir)
            .hint("set TMPDIR to a writable folder with free space")
    };
    match rustix::fs::open(
        &dir,
        OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    ) {
        Ok(fd) => return Ok(File::from(fd)),
        Err(e) if e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::ISDIR => {}
        Err(e) => return Err(cannot(e.into())),
    }
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(format!(
        ".wfstate-review-{}-{}",
        std::process::id(),
        crate::audit::scan::now_micros()
    ));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(cannot)?;
    let _ = std::fs::remove_file(&path);
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_back_from_memory_and_from_the_file() {
        for limit in [0, 10, 1 << 20] {
            let mut s = Spill::with_limit(limit);
            let mut at = Vec::new();
            for i in 0..100u32 {
                let rec = format!("record {i}\n").repeat(i as usize % 7 + 1);
                let off = s.push(|b| b.extend_from_slice(rec.as_bytes())).unwrap();
                at.push((off, rec));
            }
            assert_eq!(s.on_disk(), limit < 1 << 20, "limit {limit}");
            let mut r = Spill::with_limit(limit);
            for (_, rec) in &at {
                r.push_record(|b| b.extend_from_slice(rec.as_bytes()))
                    .unwrap();
            }
            let mut back = Vec::new();
            r.each_record(|b| {
                back.push(String::from_utf8(b.to_vec()).unwrap());
                Ok(())
            })
            .unwrap();
            let want: Vec<String> = at.iter().map(|(_, r)| r.clone()).collect();
            assert_eq!(back, want, "records, limit {limit}");
            let mut buf = Vec::new();
            let mut w = s.window();
            for (i, (off, rec)) in at.iter().enumerate() {
                let end = at.get(i + 1).map_or(s.len(), |n| n.0);
                s.read(*off, end, &mut buf).unwrap();
                assert_eq!(buf, rec.as_bytes(), "limit {limit}, record {i}");
                assert_eq!(w.get(*off, end).unwrap(), rec.as_bytes());
            }
            // Out of order, through the window.
            for (i, (off, rec)) in at.iter().enumerate().rev() {
                let end = at.get(i + 1).map_or(s.len(), |n| n.0);
                assert_eq!(w.get(*off, end).unwrap(), rec.as_bytes());
            }
        }
    }
}
