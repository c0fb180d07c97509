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

/// Start `args`, wait until a process whose comm is `needle` runs under the store, kill
/// the tool with SIGKILL, then check the tree is gone within 3 s and `clear` works.
fn kill_during(s: &Store, args: &[&str], needle: &str, image: &str) {
    let mut child = s
        .cmd(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    let groups = loop {
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
            // let it fork its own children (apt, dpkg)
            std::thread::sleep(Duration::from_secs(3));
            let groups = descendant_groups(child.id());
            if !groups.is_empty() {
                break groups;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let before = processes_of(s.root(), &groups);
    assert!(before.len() >= 2, "a process tree to kill: {before:?}");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let left = processes_of(s.root(), &groups);
    assert!(
        left.is_empty(),
        "still alive 3 s after kill -9 of {args:?} (had {before:?}): {left:?}"
    );
    let t = Instant::now();
    s.ok(&["clear", image, "--yes"]);
    assert!(
        t.elapsed() < Duration::from_secs(60),
        "clear took {:?}",
        t.elapsed()
    );
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
