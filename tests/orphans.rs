//! Nothing keeps running after the tool dies (issue 11): `kill -9` of the real binary in
//! the middle of an external command leaves no process of that operation alive 3 s
//! later, and `clear` succeeds at once with nothing of the store mounted.
mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::Store;

/// Processes (other than us) whose command line, cwd or root is under `dir`, or that
/// belong to one of `pgids`, as "pid comm".
fn processes_of(dir: &Path, pgids: &[i32]) -> Vec<String> {
    let me = std::process::id().to_string();
    let dir = dir.display().to_string();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = e.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
            continue;
        }
        let p = e.path();
        let Ok(stat) = std::fs::read_to_string(p.join("stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let comm = stat[stat.find('(').unwrap_or(0) + 1..close].to_string();
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        if fields.first() == Some(&"Z") {
            continue;
        }
        let pgrp: i32 = fields.get(2).and_then(|f| f.parse().ok()).unwrap_or(0);
        let cmdline = std::fs::read(p.join("cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        let under = |link: &str| {
            std::fs::read_link(p.join(link))
                .map(|t| t.display().to_string().starts_with(&dir))
                .unwrap_or(false)
        };
        if pgids.contains(&pgrp) || cmdline.contains(&dir) || under("cwd") || under("root") {
            out.push(format!("{pid} {comm} [{cmdline}]"));
        }
    }
    out
}

/// Process groups of the descendants of `pid` (children found through /proc).
fn descendant_groups(pid: u32) -> Vec<i32> {
    let mut groups = Vec::new();
    let own = nix::unistd::getpgrp().as_raw();
    let mut frontier = vec![pid as i32];
    let mut seen = 0;
    while let Some(p) = frontier.pop() {
        seen += 1;
        if seen > 10_000 {
            break;
        }
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            let Some(close) = stat.rfind(')') else {
                continue;
            };
            let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
            let ppid: i32 = f.get(1).and_then(|x| x.parse().ok()).unwrap_or(0);
            let pgrp: i32 = f.get(2).and_then(|x| x.parse().ok()).unwrap_or(0);
            if ppid == p {
                if let Ok(child) = e.file_name().to_string_lossy().parse::<i32>() {
                    frontier.push(child);
                    if pgrp != own && !groups.contains(&pgrp) {
                        groups.push(pgrp);
                    }
                }
            }
        }
    }
    groups
}

/// Start `args` and wait until a process whose comm is `needle` runs under the store
/// (and, when `settle`, a few seconds more so it forks its own children): the tool and
/// the process groups of its descendants.
fn start_until(
    s: &Store,
    args: &[&str],
    needle: &str,
    settle: Duration,
) -> (std::process::Child, Vec<i32>) {
    let mut child = s
        .cmd(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    loop {
        assert!(
            child.try_wait().unwrap().is_none(),
            "{args:?} ended before {needle} ran"
        );
        assert!(
            t.elapsed() < Duration::from_secs(900),
            "{needle} never ran under {args:?}"
        );
        let procs = processes_of(s.root(), &[]);
        if procs.iter().any(|p| p.split(' ').nth(1) == Some(needle)) {
            std::thread::sleep(settle);
            let groups = descendant_groups(child.id());
            if !groups.is_empty() {
                return (child, groups);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The tool's `__reaper` watchdog (a child of the tool).
fn reaper_of(pid: u32) -> Option<i32> {
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let ppid: i32 = f.get(1).and_then(|x| x.parse().ok()).unwrap_or(0);
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if ppid == pid as i32 && String::from_utf8_lossy(&cmd).contains("__reaper") {
            return e.file_name().to_string_lossy().parse().ok();
        }
    }
    None
}

/// `kill -9` of the tool; 3 s later nothing of the operation is alive.
fn kill_and_check(s: &Store, args: &[&str], mut child: std::process::Child, groups: &[i32]) {
    let before = processes_of(s.root(), groups);
    assert!(before.len() >= 2, "a process tree to kill: {before:?}");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let left = processes_of(s.root(), groups);
    assert!(
        left.is_empty(),
        "still alive 3 s after kill -9 of {args:?} (had {before:?}): {left:?}"
    );
}

/// `args` succeeds within a minute (no waiting for busy mounts).
fn ok_at_once(s: &Store, args: &[&str]) {
    let t = Instant::now();
    s.ok(args);
    assert!(
        t.elapsed() < Duration::from_secs(60),
        "{args:?} took {:?}",
        t.elapsed()
    );
}

/// Start `args`, wait until a process whose comm is `needle` runs under the store, kill
/// the tool with SIGKILL, then check the tree is gone within 3 s and `clear` works.
fn kill_during(s: &Store, args: &[&str], needle: &str, image: &str) {
    let (child, groups) = start_until(s, args, needle, Duration::from_secs(3));
    kill_and_check(s, args, child, &groups);
    ok_at_once(s, &["clear", image, "--yes"]);
    assert!(s.mounts().is_empty(), "{:?}", s.mounts());
}

#[test]
fn kill_9_during_mmdebstrap_leaves_no_orphan() {
    let s = Store::new();
    kill_during(
        &s,
        &["livenet", "create", "orph1", "--type", "core"],
        "dpkg",
        "orph1",
    );
}

#[test]
fn kill_9_during_an_ansible_playbook_leaves_no_orphan() {
    let s = Store::new();
    s.ok(&["livenet", "create", "orph2", "--type", "core"]);
    let play = s.root().join("long.yml");
    std::fs::write(
        &play,
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - name: a long task\n      raw: sleep 60\n",
    )
    .unwrap();
    let play = play.display().to_string();
    kill_during(&s, &["ansible", "orph2", &play], "sleep", "orph2");
}

#[test]
fn kill_9_during_nfs_staging_create_leaves_no_orphan() {
    let s = Store::new();
    kill_during(
        &s,
        &["nfs", "staging", "create", "orph3", "--type", "core"],
        "dpkg",
        "orph3",
    );
    assert!(
        !s.root().join("nfsimages/staging/orph3").exists(),
        "clear left the staging tree"
    );
}

/// The watchdog killed with the tool (a `kill -9` of both, an OOM kill): nothing kills
/// apt/dpkg then but `clear`, from the groups the tool recorded next to its lock. It
/// succeeds at once, and nothing of the operation is left alive or mounted.
#[test]
fn clear_kills_what_a_dead_build_and_its_watchdog_left() {
    let s = Store::new();
    let args = ["livenet", "create", "orph4", "--type", "core"];
    let (mut child, groups) = start_until(&s, &args, "dpkg", Duration::from_secs(3));
    let reaper = reaper_of(child.id()).expect("the tool's __reaper watchdog");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(reaper),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let before = processes_of(s.root(), &groups);
    assert!(
        !before.is_empty(),
        "with tool and watchdog dead, the build's children still run (else this test proves nothing)"
    );
    ok_at_once(&s, &["clear", "orph4", "--yes"]);
    let left = processes_of(s.root(), &groups);
    assert!(left.is_empty(), "clear left {left:?} (had {before:?})");
    assert!(s.mounts().is_empty(), "{:?}", s.mounts());
}

/// `kill -9` of `livenet unmount` while mksquashfs packs (xz over a big incompressible
/// file, so it runs for a while): nothing of it alive 3 s later, the served generation
/// intact, and a re-run of the unmount succeeds at once.
#[test]
fn kill_9_during_mksquashfs_keeps_the_served_generation() {
    let s = Store::new();
    s.ok(&["livenet", "create", "orph5", "--type", "core"]);
    let served = s.images().join("orph5/squashfs.img");
    let sha = |p: &Path| {
        let o = std::process::Command::new("sha256sum")
            .arg(p)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout)
            .split(' ')
            .next()
            .unwrap_or_default()
            .to_string()
    };
    let before = sha(&served);
    s.ok(&["livenet", "mount", "orph5"]);
    let mnt = s.root().join("workdir/orph5/mnt");
    assert!(
        mnt.join("etc").is_dir(),
        "mounted tree at {}",
        mnt.display()
    );
    let big = mnt.join("var/tmp/incompressible");
    let st = std::process::Command::new("dd")
        .args(["if=/dev/urandom", "bs=1M", "count=256", "status=none"])
        .arg(format!("of={}", big.display()))
        .status()
        .unwrap();
    assert!(st.success());
    let cfg = s.root().join("xz.yaml");
    std::fs::write(&cfg, "compression: xz\ncompression_level: 9\n").unwrap();
    let c = cfg.display().to_string();
    let args = ["--config", &c, "livenet", "unmount", "orph5"];
    let (child, groups) = start_until(&s, &args, "mksquashfs", Duration::from_secs(2));
    kill_and_check(&s, &args, child, &groups);
    assert_eq!(sha(&served), before, "the served squashfs changed");
    let gens = std::fs::read_dir(s.images().join("orph5"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect::<Vec<_>>();
    // the image is still mounted (the unmount never finished); a re-run succeeds at once
    std::fs::remove_file(&big).unwrap();
    ok_at_once(&s, &["livenet", "unmount", "orph5"]);
    assert!(
        s.mounts().is_empty(),
        "{:?} (image dir: {gens:?})",
        s.mounts()
    );
    assert_ne!(
        sha(&served),
        before,
        "the re-run published a new generation"
    );
    ok_at_once(&s, &["recover"]);
}
