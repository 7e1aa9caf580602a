//! Line ends of a deck: `\n`, `\r\n`, or a lone `\r` (old Mac files, and
//! some exports). The `csv` crate ends a record at any of them but counts
//! lines by `\n` only, so a file whose lines end in `\r` alone was all
//! "line 1". [`LoneCrAsLf`] hands the reader a `\n` for every lone `\r`:
//! the same number of bytes, so offsets are unchanged, and every line is
//! counted.

use std::io::{self, Read};

/// Reads `inner`, giving `\n` in place of every `\r` not followed by `\n`.
pub(crate) struct LoneCrAsLf<R> {
    inner: R,
    /// A byte read but not given yet: a `\r` that ended the previous read
    /// (whether it is lone depends on the next byte), or the second byte
    /// of a read into a one-byte buffer (never a `\r`, so never rewritten).
    ahead: Option<u8>,
}

impl<R: Read> LoneCrAsLf<R> {
    pub(crate) fn new(inner: R) -> Self {
        LoneCrAsLf { inner, ahead: None }
    }
}

impl<R: Read> Read for LoneCrAsLf<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match buf.len() {
            0 => return Ok(0),
            1 => {
                // Too small to look ahead in: read two, keep the second.
                let mut two = [0u8; 2];
                let n = self.read(&mut two)?;
                buf[0] = two[0];
                if n == 2 {
                    self.ahead = Some(two[1]);
                }
                return Ok(n.min(1));
            }
            _ => {}
        }
        let start = usize::from(self.ahead.is_some());
        if let Some(b) = self.ahead.take() {
            buf[0] = b;
        }
        let n = self.inner.read(&mut buf[start..])?;
        let mut len = start + n;
        // A `\r` at the end: its partner comes with the next read, unless
        // the input has ended.
        let held = n > 0 && buf[len - 1] == b'\r';
        if held {
            len -= 1;
        }
        // Most files have no `\r` at all: memchr skips to each one.
        let mut i = 0;
        while let Some(p) = memchr::memchr(b'\r', &buf[i..len]) {
            let at = i + p;
            let next = if at + 1 < len {
                Some(buf[at + 1])
            } else if held {
                Some(b'\r')
            } else {
                None
            };
            if next != Some(b'\n') {
                buf[at] = b'\n';
            }
            i = at + 1;
        }
        if held {
            self.ahead = Some(b'\r');
            if len == 0 {
                // Only that `\r` came: read on to learn what follows it.
                return self.read(buf);
            }
        }
        Ok(len)
    }
}

/// Lines of `text`: one more than its line ends (each `\n`, and each `\r`
/// not followed by `\n`).
pub(crate) fn count_lines(text: &[u8]) -> usize {
    let lf = memchr::memchr_iter(b'\n', text).count();
    let lone_cr = memchr::memchr_iter(b'\r', text)
        .filter(|&i| text.get(i + 1) != Some(&b'\n'))
        .count();
    lf + lone_cr + 1
}

/// The byte offset where each of `lines` (1-based, sorted) starts, line
/// ends counted as [`count_lines`] does.
pub(crate) fn line_offsets(text: &[u8], lines: &[u32]) -> Vec<usize> {
    let mut out = Vec::with_capacity(lines.len());
    let mut line = 1u32;
    let mut pos = 0usize;
    let mut it = memchr::memchr2_iter(b'\n', b'\r', text);
    for &want in lines {
        while line < want {
            match it.next() {
                // The `\r` of a `\r\n`: the `\n` ends the line.
                Some(p) if text[p] == b'\r' && text.get(p + 1) == Some(&b'\n') => {}
                Some(p) => {
                    pos = p + 1;
                    line += 1;
                }
                None => break,
            }
        }
        out.push(pos);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn through(input: &[u8], chunk: usize) -> Vec<u8> {
        /// Gives at most `chunk` bytes a read, to cut `\r\n` in two.
        struct Chunks<'a>(&'a [u8], usize);
        impl Read for Chunks<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(self.1).min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut out = Vec::new();
        LoneCrAsLf::new(Chunks(input, chunk))
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn lone_crs_become_lfs_whatever_the_reads() {
        let input = b"a\rb\r\nc\nd\r\re\r";
        for chunk in 1..=input.len() {
            assert_eq!(
                through(input, chunk),
                b"a\nb\r\nc\nd\n\ne\n",
                "chunk {chunk}"
            );
        }
        assert_eq!(through(b"", 3), b"");
        assert_eq!(count_lines(input), 7);
        assert_eq!(
            line_offsets(input, &[1, 2, 3, 4, 5, 6]),
            [0, 2, 5, 7, 9, 10]
        );
    }
}
