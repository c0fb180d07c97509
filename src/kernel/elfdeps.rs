//! A host binary with the shared libraries it needs (DT_NEEDED, recursively, plus its
//! ELF interpreter), for copying tools into the own initramfs (the installer's sfdisk,
//! mkfs.ext4, ...). Hand-written (~80 lines, ELF64 little-endian only) rather than a
//! dependency: `check_static_elf` in own.rs already reads the same headers, and only
//! the dynamic section's NEEDED strings are wanted; running `ldd` would execute the
//! binary's loader and need the runner in a pure function.
use std::path::{Path, PathBuf};

/// Where Debian's loader looks for libraries (no ld.so.cache in the initramfs).
pub const LIB_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
];

fn u16_at(d: &[u8], o: usize) -> Option<u64> {
    Some(u16::from_le_bytes(d.get(o..o + 2)?.try_into().ok()?) as u64)
}
fn u32_at(d: &[u8], o: usize) -> Option<u64> {
    Some(u32::from_le_bytes(d.get(o..o + 4)?.try_into().ok()?) as u64)
}
fn u64_at(d: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(d.get(o..o + 8)?.try_into().ok()?))
}

/// The interpreter and the NEEDED names of an ELF64 LE file (`None`: not such a file).
pub fn needed(data: &[u8]) -> Option<(Option<String>, Vec<String>)> {
    if data.get(0..4)? != b"\x7fELF" || *data.get(4)? != 2 || *data.get(5)? != 1 {
        return None;
    }
    let phoff = u64_at(data, 0x20)? as usize;
    let phentsize = u16_at(data, 0x36)? as usize;
    let phnum = u16_at(data, 0x38)? as usize;
    let mut loads = Vec::new();
    let mut dynamic = None;
    let mut interp = None;
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        let (ty, off, vaddr, filesz) = (
            u32_at(data, ph)?,
            u64_at(data, ph + 8)?,
            u64_at(data, ph + 0x10)?,
            u64_at(data, ph + 0x20)?,
        );
        match ty {
            1 => loads.push((vaddr, off, filesz)),
            2 => dynamic = Some((off as usize, filesz as usize)),
            3 => {
                let s = data.get(off as usize..(off + filesz) as usize)?;
                let s = s.split(|b| *b == 0).next()?;
                interp = Some(String::from_utf8_lossy(s).into_owned());
            }
            _ => {}
        }
    }
    let Some((doff, dsize)) = dynamic else {
        return Some((interp, Vec::new()));
    };
    let mut strtab = None;
    let mut names = Vec::new();
    let mut o = doff;
    while o + 16 <= doff + dsize {
        let (tag, val) = (u64_at(data, o)?, u64_at(data, o + 8)?);
        match tag {
            0 => break,
            1 => names.push(val),
            5 => strtab = Some(val),
            _ => {}
        }
        o += 16;
    }
    let strtab = strtab?;
    let base = loads
        .iter()
        .find(|(v, _, sz)| strtab >= *v && strtab < v + sz)
        .map(|(v, off, _)| strtab - v + off)? as usize;
    let mut out = Vec::new();
    for n in names {
        let s = data.get(base + n as usize..)?;
        let s = s.split(|b| *b == 0).next()?;
        out.push(String::from_utf8_lossy(s).into_owned());
    }
    Some((interp, out))
}

/// `binary` and every library it needs, as (path on the host = path in the initramfs,
/// contents); a library that cannot be found is an error naming it.
pub fn with_libs(binary: &Path) -> Result<Vec<(PathBuf, Vec<u8>)>, String> {
    let mut out: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    let mut todo = vec![binary.to_path_buf()];
    while let Some(p) = todo.pop() {
        if out.iter().any(|(q, _)| *q == p) {
            continue;
        }
        let data = std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        let (interp, libs) =
            needed(&data).ok_or_else(|| format!("{}: not an ELF64 file", p.display()))?;
        if let Some(i) = interp {
            todo.push(PathBuf::from(i));
        }
        for l in libs {
            let found = LIB_DIRS
                .iter()
                .map(|d| Path::new(d).join(&l))
                .find(|c| c.exists())
                .ok_or_else(|| format!("{}: library {l} not found", p.display()))?;
            todo.push(found);
        }
        out.push((p, data));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sfdisk_needs_libfdisk_and_the_loader() {
        let p = std::path::Path::new("/usr/sbin/sfdisk");
        if !p.exists() {
            return;
        }
        let all = super::with_libs(p).unwrap();
        let names: Vec<String> = all.iter().map(|(p, _)| p.display().to_string()).collect();
        assert!(names.iter().any(|n| n.contains("libfdisk.so")), "{names:?}");
        assert!(names.iter().any(|n| n.contains("libc.so.6")), "{names:?}");
        assert!(names.iter().any(|n| n.contains("ld-linux")), "{names:?}");
    }
}
