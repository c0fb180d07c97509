//! A small writer for "newc" cpio archives (the format the Linux kernel unpacks
//! as an initramfs, magic `070701`).
//!
//! Only what an initramfs needs: directories, regular files, symbolic links and
//! character device nodes. Every entry gets a fresh inode number, uid/gid 0 and
//! mtime 0, so the same inputs always give byte-identical output. Missing parent
//! directories are emitted automatically (mode 0755) because the kernel's
//! unpacker does not create them. Paths are stored without a leading `/`.
//!
//! ```
//! # use std::io::Write;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use disklessset::kernel::cpio::CpioWriter;
//! let mut w = CpioWriter::new(Vec::new());
//! w.char_device("dev/console", 0o600, 5, 1)?;
//! w.file("init", 0o755, b"#!/bin/sh\n")?;
//! w.symlink("bin/sh", "busybox")?;
//! let bytes: Vec<u8> = w.finish()?;
//! assert!(bytes.starts_with(b"070701"));
//! # Ok(()) }
//! ```

use std::collections::HashSet;
use std::io::{self, Write};

/// `S_IFMT` file type bits.
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

const MAGIC: &[u8; 6] = b"070701";
const TRAILER: &str = "TRAILER!!!";
/// Size of a newc header (magic + 13 fields of 8 hex digits).
const HEADER_LEN: u64 = 110;

/// Errors from [`CpioWriter`].
#[derive(Debug, thiserror::Error)]
pub enum CpioError {
    /// Writing to the underlying sink failed.
    #[error("writing cpio entry {path:?} failed: {source}")]
    Io {
        /// Entry being written (or `TRAILER!!!`).
        path: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The path is empty, contains `.`/`..` components or NUL bytes.
    #[error("invalid cpio entry path {path:?}: {reason}")]
    InvalidPath {
        /// The rejected path.
        path: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// The same path was added twice.
    #[error("cpio entry {path:?} added twice")]
    Duplicate {
        /// The duplicated path.
        path: String,
    },
    /// newc stores sizes in 32 bits.
    #[error("cpio entry {path:?} is {size} bytes: newc archives hold at most 4 GiB - 1 per file")]
    TooLarge {
        /// The entry.
        path: String,
        /// Its size.
        size: u64,
    },
    /// Permission bits outside 0o7777.
    #[error("cpio entry {path:?}: mode {mode:#o} has bits outside 0o7777")]
    InvalidMode {
        /// The entry.
        path: String,
        /// The rejected mode.
        mode: u32,
    },
}

/// One header's variable fields.
struct Header<'a> {
    path: &'a str,
    mode: u32,
    nlink: u32,
    size: u64,
    rdev: (u32, u32),
}

/// Streaming newc cpio writer. Call [`CpioWriter::finish`] to append the
/// `TRAILER!!!` record and get the sink back; dropping the writer without
/// finishing leaves a truncated archive.
pub struct CpioWriter<W: Write> {
    out: W,
    next_ino: u32,
    offset: u64,
    seen: HashSet<String>,
    dirs: HashSet<String>,
}

impl<W: Write> CpioWriter<W> {
    /// A writer appending to `out`.
    pub fn new(out: W) -> Self {
        Self {
            out,
            next_ino: 1,
            offset: 0,
            seen: HashSet::new(),
            dirs: HashSet::new(),
        }
    }

    /// Bytes written so far (uncompressed archive size).
    pub fn bytes_written(&self) -> u64 {
        self.offset
    }

    /// Number of entries written so far (without the trailer).
    pub fn entries(&self) -> usize {
        self.seen.len()
    }

    /// Add a directory.
    pub fn dir(&mut self, path: &str, mode: u32) -> Result<(), CpioError> {
        let path = self.prepare(path, mode)?;
        self.dirs.insert(path.clone());
        self.entry(
            Header {
                path: &path,
                mode: S_IFDIR | mode,
                nlink: 2,
                size: 0,
                rdev: (0, 0),
            },
            &[],
        )
    }

    /// Add a regular file with the given contents.
    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> Result<(), CpioError> {
        let path = self.prepare(path, mode)?;
        self.entry(
            Header {
                path: &path,
                mode: S_IFREG | mode,
                nlink: 1,
                size: data.len() as u64,
                rdev: (0, 0),
            },
            data,
        )
    }

    /// Add a symbolic link `path` -> `target` (target stored verbatim).
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<(), CpioError> {
        if target.is_empty() || target.contains('\0') {
            return Err(CpioError::InvalidPath {
                path: path.to_string(),
                reason: "symlink target is empty or contains a NUL byte",
            });
        }
        let path = self.prepare(path, 0o777)?;
        self.entry(
            Header {
                path: &path,
                mode: S_IFLNK | 0o777,
                nlink: 1,
                size: target.len() as u64,
                rdev: (0, 0),
            },
            target.as_bytes(),
        )
    }

    /// Add a character device node, e.g. `dev/console` 5,1.
    pub fn char_device(
        &mut self,
        path: &str,
        mode: u32,
        major: u32,
        minor: u32,
    ) -> Result<(), CpioError> {
        let path = self.prepare(path, mode)?;
        self.entry(
            Header {
                path: &path,
                mode: S_IFCHR | mode,
                nlink: 1,
                size: 0,
                rdev: (major, minor),
            },
            &[],
        )
    }

    /// Write the `TRAILER!!!` record, flush, and return the sink.
    pub fn finish(mut self) -> Result<W, CpioError> {
        self.header(
            0,
            &Header {
                path: TRAILER,
                mode: 0,
                nlink: 1,
                size: 0,
                rdev: (0, 0),
            },
        )
        .and_then(|()| self.out.flush())
        .map_err(|source| CpioError::Io {
            path: TRAILER.to_string(),
            source,
        })?;
        Ok(self.out)
    }

    /// Validate and normalise `path`, check `mode`, reject duplicates and
    /// emit missing parent directories.
    fn prepare(&mut self, path: &str, mode: u32) -> Result<String, CpioError> {
        let norm = normalise(path)?;
        if mode & !0o7777 != 0 {
            return Err(CpioError::InvalidMode { path: norm, mode });
        }
        if self.seen.contains(&norm) {
            return Err(CpioError::Duplicate { path: norm });
        }
        let mut parent = String::new();
        let comps: Vec<&str> = norm.split('/').collect();
        for comp in &comps[..comps.len() - 1] {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(comp);
            if !self.dirs.contains(&parent) {
                if self.seen.contains(&parent) {
                    return Err(CpioError::InvalidPath {
                        path: norm,
                        reason: "a parent component was added as a non-directory",
                    });
                }
                self.dir(&parent.clone(), 0o755)?;
            }
        }
        Ok(norm)
    }

    fn entry(&mut self, h: Header<'_>, data: &[u8]) -> Result<(), CpioError> {
        if h.size > u64::from(u32::MAX) {
            return Err(CpioError::TooLarge {
                path: h.path.to_string(),
                size: h.size,
            });
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.seen.insert(h.path.to_string());
        let io = |source| CpioError::Io {
            path: h.path.to_string(),
            source,
        };
        self.header(ino, &h).map_err(io)?;
        self.out.write_all(data).map_err(io)?;
        self.offset += data.len() as u64;
        self.pad().map_err(io)
    }

    fn header(&mut self, ino: u32, h: &Header<'_>) -> io::Result<()> {
        let namesize = h.path.len() as u64 + 1;
        let fields: [u64; 13] = [
            u64::from(ino),
            u64::from(h.mode),
            0, // uid
            0, // gid
            u64::from(h.nlink),
            0, // mtime: reproducible output
            h.size,
            0, // devmajor
            0, // devminor
            u64::from(h.rdev.0),
            u64::from(h.rdev.1),
            namesize,
            0, // check (only used by the "crc" format)
        ];
        let mut buf = Vec::with_capacity(HEADER_LEN as usize + h.path.len() + 4);
        buf.extend_from_slice(MAGIC);
        for f in fields {
            // `{:08X}` of a value that fits in 32 bits is exactly 8 digits.
            buf.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        buf.extend_from_slice(h.path.as_bytes());
        buf.push(0);
        self.out.write_all(&buf)?;
        self.offset += buf.len() as u64;
        self.pad()
    }

    /// Pad to a 4-byte boundary.
    fn pad(&mut self) -> io::Result<()> {
        let rem = (4 - (self.offset % 4)) % 4;
        if rem != 0 {
            self.out.write_all(&[0u8; 3][..rem as usize])?;
            self.offset += rem;
        }
        Ok(())
    }
}

/// Strip leading `/` and `./`, collapse repeated slashes, reject `.`/`..`
/// components and NULs.
fn normalise(path: &str) -> Result<String, CpioError> {
    let bad = |reason| CpioError::InvalidPath {
        path: path.to_string(),
        reason,
    };
    if path.contains('\0') {
        return Err(bad("contains a NUL byte"));
    }
    let mut comps = Vec::new();
    for (i, c) in path.split('/').enumerate() {
        match c {
            "" => {}
            "." if i == 0 => {}
            "." | ".." => return Err(bad("contains a '.' or '..' component")),
            c => comps.push(c),
        }
    }
    if comps.is_empty() {
        return Err(bad("is empty or the archive root"));
    }
    if comps.join("/") == TRAILER {
        return Err(bad("is the reserved trailer name"));
    }
    Ok(comps.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    use std::process::{Command, Stdio};

    fn sample() -> Vec<u8> {
        let mut w = CpioWriter::new(Vec::new());
        w.dir("/bin", 0o755).unwrap();
        w.file("bin/busybox", 0o755, b"\x7fELF fake").unwrap();
        w.symlink("bin/sh", "busybox").unwrap();
        w.char_device("dev/console", 0o600, 5, 1).unwrap();
        w.file("etc/modules.order", 0o644, b"a.ko\nb.ko\n").unwrap();
        w.file("empty", 0o644, b"").unwrap();
        w.file("init", 0o755, b"#!/bin/sh\necho hi\n").unwrap();
        w.dir("tmp", 0o1777).unwrap();
        w.finish().unwrap()
    }

    fn run_cpio(args: &[&str], dir: &std::path::Path, input: &[u8]) -> (String, String) {
        let mut child = Command::new("cpio")
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cpio (GNU cpio) must be installed for these tests");
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "cpio {args:?} failed: {stderr}");
        (stdout, stderr)
    }

    #[test]
    fn header_layout_and_padding() {
        let bytes = sample();
        assert_eq!(bytes.len() % 4, 0);
        assert_eq!(&bytes[..6], b"070701");
        // First entry: the explicit dir "bin", inode 1, mode 040755, nlink 2.
        let h = std::str::from_utf8(&bytes[..110]).unwrap();
        assert_eq!(&h[6..14], "00000001");
        assert_eq!(&h[14..22], "000041ED");
        assert_eq!(&h[38..46], "00000002");
        assert_eq!(&h[46..54], "00000000", "mtime must be 0");
        assert_eq!(&bytes[110..114], b"bin\0");
        // Ends with the trailer name, NUL, padding.
        let tail = &bytes[bytes.len() - 16..];
        assert!(tail.windows(10).any(|w| w == b"TRAILER!!!"));
        // Reproducible.
        assert_eq!(bytes, sample());
    }

    #[test]
    fn listing_with_gnu_cpio() {
        let tmp = tempfile::tempdir().unwrap();
        let (list, stderr) = run_cpio(&["-t", "--quiet"], tmp.path(), &sample());
        let names: Vec<&str> = list.lines().collect();
        assert_eq!(
            names,
            [
                "bin",
                "bin/busybox",
                "bin/sh",
                "dev",
                "dev/console",
                "etc",
                "etc/modules.order",
                "empty",
                "init",
                "tmp"
            ],
            "{stderr}"
        );
        let (verbose, _) = run_cpio(&["-t", "-v", "--quiet"], tmp.path(), &sample());
        assert!(verbose.contains("5,   1"), "{verbose}");
        assert!(verbose.contains("bin/sh -> busybox"), "{verbose}");
    }

    #[test]
    fn extracts_with_gnu_cpio() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        // Running as root, cpio creates the device node; otherwise it warns.
        run_cpio(
            &["-i", "-d", "-m", "--no-absolute-filenames", "--quiet"],
            root,
            &sample(),
        );
        let meta = |p: &str| std::fs::symlink_metadata(root.join(p)).unwrap();
        assert!(meta("bin").is_dir());
        assert_eq!(meta("bin").permissions().mode() & 0o7777, 0o755);
        assert_eq!(meta("tmp").permissions().mode() & 0o7777, 0o1777);
        assert_eq!(
            std::fs::read(root.join("bin/busybox")).unwrap(),
            b"\x7fELF fake"
        );
        assert_eq!(meta("bin/busybox").permissions().mode() & 0o777, 0o755);
        assert_eq!(meta("bin/busybox").mtime(), 0);
        assert_eq!(
            std::fs::read_link(root.join("bin/sh")).unwrap(),
            std::path::Path::new("busybox")
        );
        assert_eq!(std::fs::read(root.join("empty")).unwrap(), b"");
        assert_eq!(
            std::fs::read_to_string(root.join("init")).unwrap(),
            "#!/bin/sh\necho hi\n"
        );
        assert!(meta("etc").is_dir(), "auto-created parent");
        if meta("dev/console").file_type().is_char_device() {
            let rdev = meta("dev/console").rdev();
            assert_eq!((rdev >> 8) & 0xfff, 5);
            assert_eq!(rdev & 0xff, 1);
        } else {
            // Not root: GNU cpio could not mknod; at least the entry exists.
            eprintln!("not root: device node not created");
        }
    }

    #[test]
    fn odd_sizes_pad_correctly() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = CpioWriter::new(Vec::new());
        for n in 0..9usize {
            let data = vec![b'a' + n as u8; n * 7 + 1];
            w.file(&format!("d{n}/f{}", "x".repeat(n)), 0o644, &data)
                .unwrap();
        }
        let bytes = w.finish().unwrap();
        run_cpio(&["-i", "-d", "--quiet"], tmp.path(), &bytes);
        for n in 0..9usize {
            let got = std::fs::read(tmp.path().join(format!("d{n}/f{}", "x".repeat(n)))).unwrap();
            assert_eq!(got, vec![b'a' + n as u8; n * 7 + 1]);
        }
    }

    #[test]
    fn unique_inodes() {
        let bytes = sample();
        let mut inos = Vec::new();
        let mut off = 0usize;
        loop {
            let h = std::str::from_utf8(&bytes[off..off + 110]).unwrap();
            let field = |i: usize| u64::from_str_radix(&h[6 + 8 * i..14 + 8 * i], 16).unwrap();
            let (ino, size, namesize) = (field(0), field(6), field(11) as usize);
            let name = &bytes[off + 110..off + 110 + namesize - 1];
            off += (110 + namesize).div_ceil(4) * 4;
            off += (size as usize).div_ceil(4) * 4;
            if name == b"TRAILER!!!" {
                assert_eq!(ino, 0);
                break;
            }
            inos.push(ino);
        }
        assert_eq!(off, bytes.len());
        let mut sorted = inos.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), inos.len());
        assert!(!inos.contains(&0));
    }

    #[test]
    fn rejects_bad_input() {
        let mut w = CpioWriter::new(Vec::new());
        assert!(matches!(
            w.file("a/../b", 0o644, b""),
            Err(CpioError::InvalidPath { .. })
        ));
        assert!(matches!(
            w.file("/", 0o644, b""),
            Err(CpioError::InvalidPath { .. })
        ));
        assert!(matches!(
            w.file("x", 0o100644, b""),
            Err(CpioError::InvalidMode { .. })
        ));
        w.file("f", 0o644, b"").unwrap();
        assert!(matches!(
            w.file("/f", 0o644, b""),
            Err(CpioError::Duplicate { .. })
        ));
        assert!(matches!(
            w.file("f/g", 0o644, b""),
            Err(CpioError::InvalidPath { .. })
        ));
        assert!(matches!(
            w.symlink("l", ""),
            Err(CpioError::InvalidPath { .. })
        ));
    }

    #[test]
    fn io_errors_name_the_entry() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut w = CpioWriter::new(Full);
        let err = w.file("init", 0o755, b"x").unwrap_err().to_string();
        assert!(
            err.contains("\"init\"") && err.contains("disk full"),
            "{err}"
        );
    }
}
