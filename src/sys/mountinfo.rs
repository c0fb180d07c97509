//! Reader of `/proc/self/mountinfo`: the only source of truth about what is mounted.
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub id: u32,
    pub parent: u32,
    pub root: PathBuf,
    pub mount_point: PathBuf,
    pub fstype: String,
    pub source: String,
    pub options: String,
}

/// Reads the current process's mount table.
pub fn read() -> Result<Vec<MountEntry>> {
    let p = "/proc/self/mountinfo";
    let text = std::fs::read_to_string(p).at(p)?;
    Ok(parse(&text))
}

/// Parses mountinfo text; malformed lines are skipped.
pub fn parse(text: &str) -> Vec<MountEntry> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<MountEntry> {
    let (left, right) = line.split_once(" - ")?;
    let l: Vec<&str> = left.split(' ').collect();
    let r: Vec<&str> = right.split(' ').collect();
    if l.len() < 6 || r.len() < 2 {
        return None;
    }
    Some(MountEntry {
        id: l[0].parse().ok()?,
        parent: l[1].parse().ok()?,
        root: PathBuf::from(unescape(l[3])),
        mount_point: PathBuf::from(unescape(l[4])),
        options: l[5].to_string(),
        fstype: r[0].to_string(),
        source: unescape(r[1]),
    })
}

/// Decodes the kernel's octal escapes (`\040` for a space, `\012`, `\134`).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let oct = &s[i + 1..(i + 4).min(s.len())];
            if oct.len() == 3 && oct.bytes().all(|c| (b'0'..=b'7').contains(&c)) {
                if let Ok(v) = u8::from_str_radix(oct, 8) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mounts at or below `path` (component-wise), deepest first, then most recent first.
pub fn below<'a>(entries: &'a [MountEntry], path: &Path) -> Vec<&'a MountEntry> {
    let mut v: Vec<(usize, &MountEntry)> = entries
        .iter()
        .enumerate()
        .filter(|(_, m)| m.mount_point.starts_with(path))
        .collect();
    v.sort_by(|(ia, a), (ib, b)| {
        let da = a.mount_point.components().count();
        let db = b.mount_point.components().count();
        db.cmp(&da).then(ib.cmp(ia))
    });
    v.into_iter().map(|(_, m)| m).collect()
}

/// Is anything mounted at or below `path` right now?
pub fn anything_below(path: &Path) -> Result<Option<PathBuf>> {
    let all = read()?;
    Ok(below(&all, path).first().map(|m| m.mount_point.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda rw
36 22 0:32 / /var/tmp/work\\040dir/img/mnt rw - overlay overlay rw,lowerdir=/a
37 36 0:5 / /var/tmp/work\\040dir/img/mnt/proc rw - proc proc rw
38 36 0:6 / /var/tmp/work\\040dir/img/mnt/dev rw - devtmpfs udev rw
39 38 0:7 / /var/tmp/work\\040dir/img/mnt/dev/pts rw - devpts devpts rw
40 22 0:8 / /var/tmp/work\\040dir/img2 rw - tmpfs tmpfs rw
garbage line
";

    #[test]
    fn parses_and_unescapes() {
        let m = parse(SAMPLE);
        assert_eq!(m.len(), 6);
        assert_eq!(m[1].mount_point, Path::new("/var/tmp/work dir/img/mnt"));
        assert_eq!(m[1].fstype, "overlay");
        assert_eq!(m[2].source, "proc");
    }

    #[test]
    fn below_is_deepest_first_and_component_wise() {
        let m = parse(SAMPLE);
        let b = below(&m, Path::new("/var/tmp/work dir/img"));
        let pts: Vec<_> = b
            .iter()
            .map(|e| e.mount_point.display().to_string())
            .collect();
        assert_eq!(pts[0], "/var/tmp/work dir/img/mnt/dev/pts");
        assert_eq!(pts.last().unwrap(), "/var/tmp/work dir/img/mnt");
        assert_eq!(pts.len(), 4, "img2 is not below img");
    }

    #[test]
    fn reads_real_table() {
        let all = read().unwrap();
        assert!(all.iter().any(|m| m.mount_point == Path::new("/")));
    }
}
