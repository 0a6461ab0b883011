//! A minimal, deterministic ustar writer: directories, regular files and symlinks with
//! fixed owner (0:0) and modification time, enough for image layers and OCI layouts.

/// Modification time of every entry: fixed, so equal inputs give equal digests.
const MTIME: u64 = 0;
const BLOCK: usize = 512;

/// A tar archive being built in memory.
#[derive(Default)]
pub struct TarWriter {
    buf: Vec<u8>,
}

impl TarWriter {
    pub fn new() -> TarWriter {
        TarWriter::default()
    }

    /// A directory entry (`path` without a trailing slash).
    pub fn dir(&mut self, path: &str, mode: u32) {
        self.header(&format!("{path}/"), mode, 0, b'5', "");
    }

    /// A regular file with `data`.
    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) {
        self.header(path, mode, data.len() as u64, b'0', "");
        self.buf.extend_from_slice(data);
        self.pad();
    }

    /// A symbolic link to `target`.
    pub fn symlink(&mut self, path: &str, target: &str) {
        self.header(path, 0o777, 0, b'2', target);
    }

    /// Ends the archive (two zero blocks) and returns its bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&[0; 2 * BLOCK]);
        self.buf
    }

    fn header(&mut self, path: &str, mode: u32, size: u64, kind: u8, link: &str) {
        let mut h = [0u8; BLOCK];
        let (prefix, name) = split_name(path);
        put(&mut h[0..100], name.as_bytes());
        put_octal(&mut h[100..108], u64::from(mode));
        put_octal(&mut h[108..116], 0);
        put_octal(&mut h[116..124], 0);
        put_octal(&mut h[124..136], size);
        put_octal(&mut h[136..148], MTIME);
        h[148..156].fill(b' ');
        h[156] = kind;
        put(&mut h[157..257], link.as_bytes());
        put(&mut h[257..263], b"ustar\0");
        put(&mut h[263..265], b"00");
        put(&mut h[265..297], b"root");
        put(&mut h[297..329], b"root");
        put_octal(&mut h[329..337], 0);
        put_octal(&mut h[337..345], 0);
        put(&mut h[345..500], prefix.as_bytes());
        let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
        // The checksum field: six octal digits, NUL, space.
        let digits = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(digits.as_bytes());
        self.buf.extend_from_slice(&h);
    }

    fn pad(&mut self) {
        let rem = self.buf.len() % BLOCK;
        if rem != 0 {
            self.buf.resize(self.buf.len() + BLOCK - rem, 0);
        }
    }
}

/// Splits a path into ustar's prefix (155 bytes) and name (100 bytes) at a slash.
fn split_name(path: &str) -> (&str, &str) {
    if path.len() <= 100 {
        return ("", path);
    }
    let cut = path[..path.len().min(156)].rfind('/').unwrap_or(0);
    assert!(
        cut > 0 && path.len() - cut - 1 <= 100,
        "tar path too long for ustar: {path}"
    );
    (&path[..cut], &path[cut + 1..])
}

fn put(field: &mut [u8], value: &[u8]) {
    assert!(value.len() <= field.len(), "tar header field overflow");
    field[..value.len()].copy_from_slice(value);
}

/// Octal, zero padded, NUL terminated, filling the field.
fn put_octal(field: &mut [u8], value: u64) {
    let text = format!("{value:0width$o}\0", width = field.len() - 1);
    put(field, text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_block_aligned_and_checksummed() {
        let mut t = TarWriter::new();
        t.dir("bin", 0o755);
        t.file("bin/hello", 0o644, b"hi\n");
        t.symlink("bin/sh", "/bin/busybox");
        let bytes = t.finish();
        assert_eq!(bytes.len() % BLOCK, 0);
        // dir header + file header + one data block + symlink header + 2 end blocks
        assert_eq!(bytes.len(), 6 * BLOCK);
        let header = &bytes[BLOCK..2 * BLOCK];
        assert_eq!(&header[0..9], b"bin/hello");
        assert_eq!(&header[124..135], b"00000000003");
        let mut copy = header.to_vec();
        copy[148..156].fill(b' ');
        let sum: u64 = copy.iter().map(|&b| u64::from(b)).sum();
        let stored = std::str::from_utf8(&header[148..154]).unwrap();
        assert_eq!(u64::from_str_radix(stored, 8).unwrap(), sum);
    }

    #[test]
    fn long_paths_use_the_prefix() {
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(50));
        assert_eq!(split_name(&long), (&long[..120], &long[121..]));
    }
}
