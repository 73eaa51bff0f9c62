//! Reading a JSON Lines file from its end: the lines newest first, read in
//! blocks backwards (`pread(2)`), so the newest events of a big log cost
//! what they hold, not what the log holds.
//!
//! The lines are exactly those a forward reader splitting on `\n` sees,
//! each without its newline, in reverse order: a last line without a
//! newline is a line; a `\r` before a newline stays part of its line (as it
//! does forward: JSON takes it as white space); a file ending in `\n` has no
//! empty line after it; an empty file has no line. A line longer than the
//! block is read whole (the block grows to hold it).
//!
//! Not guaranteed: a file that grows while it is read is read as it was at
//! the first read (its size then); a file truncated meanwhile ends the
//! reading with the error `pread` gives, or short.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Bytes read per step back: a few events' worth and more (an event is a
/// few hundred bytes), small enough that `recent -n 3` reads one block.
pub const BLOCK: usize = 64 * 1024;

/// The lines of a file, newest first.
pub struct RevLines<'f> {
    file: &'f File,
    /// File offset of `buf[0]`.
    pos: u64,
    /// Bytes `[pos, pos + end)` of the file not yet handed out.
    buf: Vec<u8>,
    end: usize,
    /// Bytes read so far.
    read: u64,
    /// The first line of the file has been handed out.
    done: bool,
    block: usize,
}

impl<'f> RevLines<'f> {
    /// Lines of `file` (of its current size), newest first.
    pub fn new(file: &'f File) -> io::Result<RevLines<'f>> {
        let size = file.metadata()?.len();
        Ok(RevLines::with_block(file, size, BLOCK))
    }

    /// As [`RevLines::new`], of the first `size` bytes, `block` bytes at a time.
    pub fn with_block(file: &'f File, size: u64, block: usize) -> RevLines<'f> {
        RevLines {
            file,
            pos: size,
            buf: Vec::new(),
            end: 0,
            read: 0,
            done: size == 0,
            block: block.max(1),
        }
    }

    /// Bytes read from the file so far.
    pub fn bytes_read(&self) -> u64 {
        self.read
    }

    /// The next line back, without its newline; `None` once the first line
    /// of the file has been handed out.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> io::Result<Option<&[u8]>> {
        if self.done {
            return Ok(None);
        }
        let mut first_read = self.read == 0;
        loop {
            if first_read && self.end == 0 && self.pos > 0 {
                // Nothing read yet: read the last block.
            } else if let Some(i) = self.buf[..self.end].iter().rposition(|&b| b == b'\n') {
                let line_end = self.end;
                self.end = i;
                return Ok(Some(&self.buf[i + 1..line_end]));
            } else if self.pos == 0 {
                self.done = true;
                return Ok(Some(&self.buf[..self.end]));
            }
            self.fill()?;
            if first_read {
                first_read = false;
                // The newline that ends the file ends its last line; no empty line follows it.
                if self.end > 0 && self.buf[self.end - 1] == b'\n' {
                    self.end -= 1;
                }
            }
        }
    }

    /// Reads the block before `pos` in front of what is left: at least
    /// `block` bytes, and as much as is left when that is more, so a long
    /// line is read in steps that double.
    fn fill(&mut self) -> io::Result<()> {
        let want = self.block.max(self.end) as u64;
        let n = want.min(self.pos) as usize;
        let from = self.pos - n as u64;
        let mut fresh = vec![0u8; n + self.end];
        self.file.read_exact_at(&mut fresh[..n], from)?;
        fresh[n..].copy_from_slice(&self.buf[..self.end]);
        self.buf = fresh;
        self.end += n;
        self.pos = from;
        self.read += n as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};

    /// The lines a forward reader sees, newline stripped.
    fn forward(bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut r = BufReader::new(bytes);
        let mut out = Vec::new();
        loop {
            let mut buf = Vec::new();
            if r.read_until(b'\n', &mut buf).unwrap() == 0 {
                break;
            }
            if buf.last() == Some(&b'\n') {
                buf.pop();
            }
            out.push(buf);
        }
        out
    }

    fn backward(bytes: &[u8], block: usize) -> Vec<Vec<u8>> {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        let mut lines = RevLines::with_block(&f, bytes.len() as u64, block);
        let mut out = Vec::new();
        while let Some(l) = lines.next().unwrap() {
            out.push(l.to_vec());
        }
        assert_eq!(
            lines.bytes_read(),
            bytes.len() as u64,
            "read each byte once"
        );
        out.reverse();
        out
    }

    fn same_both_ways(bytes: &[u8]) {
        let want = forward(bytes);
        for block in [1, 2, 3, 5, 7, 16, 64, BLOCK] {
            assert_eq!(
                backward(bytes, block),
                want,
                "block {block}: {:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn an_empty_file_has_no_line() {
        assert_eq!(backward(b"", 4), Vec::<Vec<u8>>::new());
        same_both_ways(b"");
    }

    #[test]
    fn a_last_line_without_newline_is_a_line() {
        assert_eq!(backward(b"a\nbc", 2), vec![b"a".to_vec(), b"bc".to_vec()]);
        same_both_ways(b"a\nbc");
        same_both_ways(b"only");
    }

    #[test]
    fn a_final_newline_makes_no_empty_line_but_blank_lines_stay() {
        assert_eq!(backward(b"a\n", 1), vec![b"a".to_vec()]);
        assert_eq!(backward(b"\n", 1), vec![b"".to_vec()]);
        same_both_ways(b"a\n\n\nb\n");
        same_both_ways(b"\n\n");
        same_both_ways(b"\na\n");
    }

    #[test]
    fn crlf_keeps_its_carriage_return_as_forward_does() {
        assert_eq!(
            backward(b"a\r\nb\r\n", 3),
            vec![b"a\r".to_vec(), b"b\r".to_vec()]
        );
        same_both_ways(b"a\r\nb\r\nc");
        same_both_ways(b"\r\n\r\n");
    }

    #[test]
    fn lines_across_block_boundaries_and_longer_than_a_block() {
        let long = "x".repeat(10_000);
        let text = format!("a\n{long}\nbb\n{long}{long}\nccc");
        same_both_ways(text.as_bytes());
        let lines = backward(text.as_bytes(), 64);
        assert_eq!(lines[1].len(), 10_000);
        assert_eq!(lines[3].len(), 20_000);
        // Every split point of a small file, for every block size up to its length.
        let small = b"{\"a\":1}\n\n{\"b\":22}\r\nlast";
        for block in 1..=small.len() {
            assert_eq!(backward(small, block), forward(small), "block {block}");
        }
    }

    #[test]
    fn only_the_blocks_needed_are_read() {
        let line = format!("{}\n", "y".repeat(99));
        let text = line.repeat(10_000);
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        let mut lines = RevLines::new(&f).unwrap();
        for _ in 0..3 {
            assert_eq!(lines.next().unwrap().unwrap().len(), 99);
        }
        assert_eq!(lines.bytes_read(), BLOCK as u64);
    }
}
