//! Discovery (issue 13) through the real binary: `discovery start|stop|list|accept`, the
//! real `disklessset serve` answering unknown MACs and reading reports (bounded bodies:
//! too large 413, malformed 400, nothing stored), the policies; and the VM end to end:
//! two unknown machines boot the discovery system, are named d01 and d02 in power-on
//! order with facts matching the VMs, then d01 boots an image, `bootset -s --json` shows
//! what it booted, and `--once` gives the next boot back to the previous boot type.
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::vm::{qemu_args, VmBoot, QEMU};
use common::{assert_one_line_error, Store};

/// curl: (status, body).
fn curl(port: u16, path: &str, post: Option<&Path>) -> (u16, String) {
    let mut c = Command::new("curl");
    c.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-m", "30"]);
    if let Some(f) = post {
        c.args(["-H", "Content-Type: application/json", "-H", "Expect:"])
            .arg("--data-binary")
            .arg(format!("@{}", f.display()));
    }
    let out = c
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("curl (Debian curl)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn post(s: &Store, port: u16, name: &str, body: &[u8]) -> (u16, String) {
    let f = s.root().join(name);
    std::fs::write(&f, body).unwrap();
    curl(port, "/discover/report", Some(&f))
}

fn facts_json(mac: &str, mem: u64, cpus: u32, disk: u64) -> String {
    format!(
        r#"{{"macs":["{mac}"],"arch":"x86_64","cpu_model":"QEMU TCG","cpus":{cpus},"memory_mib":{mem},"disks":[{{"name":"vda","size_bytes":{disk},"model":""}}],"vendor":"QEMU","product":"Standard PC","serial":"","uuid":""}}"#
    )
}

fn machines(s: &Store) -> Vec<serde_json::Value> {
    s.json(&["discovery", "list", "--json"])["machines"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn facts_files(s: &Store) -> usize {
    std::fs::read_dir(s.root().join("state/facts"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn server_answers_unknown_macs_and_reads_bounded_reports() {
    let s = Store::new();
    std::fs::write(
        s.root().join("nodes.yml"),
        "# by hand\nn1: {mac: '52:54:00:aa:00:01'}\n",
    )
    .unwrap();
    std::fs::create_dir_all(s.images()).unwrap();
    let kernels = s.root().join("www/diskless/kernels");
    std::fs::create_dir_all(&kernels).unwrap();
    std::fs::write(kernels.join("vmlinuz-6.1.0-test"), b"k").unwrap();
    std::fs::write(kernels.join("initramfs-own-6.1.0-test"), b"i").unwrap();
    let srv = s.serve(&[]);
    let unknown = "/nodes/52-54-00-dd-00-09.ipxe";
    // discovery off: an unknown machine gets what it always got (404), reports refused
    assert_eq!(curl(srv.port, unknown, None).0, 404);
    let (code, body) = post(
        &s,
        srv.port,
        "a.json",
        facts_json("52:54:00:dd:00:01", 983, 1, 1 << 30).as_bytes(),
    );
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("discovery is off"), "{body}");
    assert!(machines(&s).is_empty());

    let out = s.ok(&[
        "discovery",
        "start",
        "--policy",
        "sequential",
        "--pool",
        "d[01-02]",
    ]);
    assert!(
        out.contains("discovery on: policy sequential, pool d[01-02]"),
        "{out}"
    );
    // on: the discovery system (kernel + own initramfs in discover mode), no restart
    let (code, body) = curl(srv.port, unknown, None);
    assert_eq!(code, 200, "{body}");
    for needle in [
        "vmlinuz-6.1.0-test",
        "initrd=initramfs-own-6.1.0-test",
        "dl.mode=discover",
        &format!("dl.report=http://127.0.0.1:{}/discover/report", srv.port),
        "dl.after=poweroff",
    ] {
        assert!(body.contains(needle), "{needle:?} missing in {body}");
    }
    // a known machine never gets it
    assert_eq!(curl(srv.port, "/nodes/52-54-00-aa-00-01.ipxe", None).0, 404);

    // bad reports: refused, nothing stored
    let nodes_before = std::fs::read_to_string(s.root().join("nodes.yml")).unwrap();
    let big = format!(
        r#"{{"macs":["52:54:00:dd:00:01"],"cpu_model":"{}"}}"#,
        "x".repeat(70 * 1024)
    );
    assert_eq!(post(&s, srv.port, "big.json", big.as_bytes()).0, 413);
    for (i, bad) in [
        &b"{\"macs\": [\"52:54:00:dd:00:01\""[..],
        b"not json",
        br#"{"macs":[]}"#,
        br#"{"macs":["zz:zz"]}"#,
        br#"{"macs":["52:54:00:dd:00:01"],"cpus":"many"}"#,
        b"",
    ]
    .iter()
    .enumerate()
    {
        let (code, body) = post(&s, srv.port, &format!("bad{i}.json"), bad);
        assert_eq!(code, 400, "{}: {body}", String::from_utf8_lossy(bad));
    }
    // a body that never fully arrives: 408 after the header timeout, nothing stored
    let mut c = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
    write!(
        c,
        "POST /discover/report HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n{{\"macs\""
    )
    .unwrap();
    let mut buf = String::new();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let _ = c.read_to_string(&mut buf);
    assert!(buf.starts_with("HTTP/1.1 408"), "{buf}");
    assert!(machines(&s).is_empty());
    assert_eq!(facts_files(&s), 0);
    assert_eq!(
        std::fs::read_to_string(s.root().join("nodes.yml")).unwrap(),
        nodes_before
    );

    // sequential: the pool's names in arrival order, into nodes.yml (appended) + facts
    let (code, body) = post(
        &s,
        srv.port,
        "m1.json",
        facts_json("52-54-00-DD-00-01", 983, 1, 1 << 30).as_bytes(),
    );
    assert_eq!((code, body.as_str()), (200, "d01\n"));
    let (_, body) = post(
        &s,
        srv.port,
        "m2.json",
        facts_json("52:54:00:dd:00:02", 1479, 2, 2 << 30).as_bytes(),
    );
    assert_eq!(body, "d02\n");
    // the same machine again: the same name
    let (_, body) = post(
        &s,
        srv.port,
        "m1b.json",
        facts_json("52:54:00:dd:00:01", 983, 1, 1 << 30).as_bytes(),
    );
    assert_eq!(body, "d01\n");
    // a report with the MAC of a node it did not name: refused, nothing changed
    let (code, body) = post(
        &s,
        srv.port,
        "n1.json",
        facts_json("52:54:00:aa:00:01", 1, 64, 1).as_bytes(),
    );
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("node n1 of the inventory already"), "{body}");
    assert!(!s.root().join("state/facts/n1.json").exists());
    let nodes = std::fs::read_to_string(s.root().join("nodes.yml")).unwrap();
    assert!(nodes.starts_with("# by hand\n"), "{nodes}");
    let d01 = s.json(&["nodes", "show", "d01", "--json"]);
    assert_eq!(d01["mac"], "52:54:00:dd:00:01");
    assert_eq!(d01["state"], "discovered");
    assert_eq!(d01["facts"]["memory_mib"], 983);
    assert_eq!(d01["facts"]["disks"][0]["size_bytes"], 1u64 << 30);
    let text = s.ok(&["nodes", "show", "d02"]);
    assert!(text.contains("memory:   1479 MiB"), "{text}");
    // now known: d01's MAC no longer gets the discovery system
    assert_eq!(curl(srv.port, "/nodes/52-54-00-dd-00-01.ipxe", None).0, 404);

    // the pool exhausted: pending, then accepted by hand
    let (code, body) = post(
        &s,
        srv.port,
        "m3.json",
        facts_json("52:54:00:dd:00:03", 500, 4, 1 << 20).as_bytes(),
    );
    assert_eq!(code, 200);
    assert!(body.starts_with("pending"), "{body}");
    let m = machines(&s);
    assert_eq!(m.len(), 3, "{m:?}");
    assert_eq!(m[2]["mac"], "52:54:00:dd:00:03");
    assert!(m[2]["name"].is_null());
    let list = s.ok(&["discovery", "list"]);
    assert!(list.contains("(pending)") && list.contains("d02"), "{list}");
    let err = s.fails(&["discovery", "accept", "52:54:00:dd:00:03", "d01"]);
    assert_one_line_error(&err, "d01");
    let err = s.fails(&["discovery", "accept", "52:54:00:dd:00:99", "d09"]);
    assert_one_line_error(&err, "no machine with MAC 52:54:00:dd:00:99 reported");
    let err = s.fails(&["discovery", "accept", "nonsense", "d09"]);
    assert_one_line_error(&err, "not a MAC address");
    let out = s.ok(&["discovery", "accept", "52-54-00-dd-00-03", "d03"]);
    assert!(out.contains("accepted as d03"), "{out}");
    let err = s.fails(&["discovery", "accept", "52:54:00:dd:00:03", "d04"]);
    assert_one_line_error(&err, "already named d03");
    assert_eq!(
        s.json(&["nodes", "show", "d03", "--json"])["facts"]["cpus"],
        4
    );
    // nodes remove takes the facts with the node
    assert!(s.root().join("state/facts/d03.json").is_file());
    s.ok(&["--yes", "nodes", "remove", "d03"]);
    assert!(!s.root().join("state/facts/d03.json").exists());

    // manual: pending until accepted; sequential needs a pool; bad policy refused
    let err = s.fails(&["discovery", "start", "--policy", "sequential"]);
    assert_one_line_error(&err, "needs --pool");
    let err = s.fails(&["discovery", "start", "--policy", "permissive"]);
    assert_one_line_error(&err, "manual, sequential, open");
    s.ok(&["discovery", "start", "--policy", "manual"]);
    let (_, body) = post(
        &s,
        srv.port,
        "m4.json",
        facts_json("52:54:00:dd:00:04", 500, 1, 0).as_bytes(),
    );
    assert!(body.starts_with("pending"), "{body}");
    // open without a pool: a name from the MAC
    s.ok(&["discovery", "start", "--policy", "open"]);
    let (_, body) = post(
        &s,
        srv.port,
        "m5.json",
        facts_json("52:54:00:dd:00:05", 500, 1, 0).as_bytes(),
    );
    assert_eq!(body, "node-525400dd0005\n");

    // off again: back to 404, the list kept
    let out = s.ok(&["discovery", "stop"]);
    assert!(out.contains("discovery off"), "{out}");
    assert_eq!(curl(srv.port, unknown, None).0, 404);
    assert_eq!(machines(&s).len(), 5);
}

/// Boots a VM until `done` holds for its serial log (checked every 100 ms), at most
/// `timeout`; QEMU is killed afterwards. The serial log on failure.
fn boot_until(vm: &VmBoot, timeout: Duration, done: &dyn Fn(&str) -> bool) -> String {
    let sercon = vm.serial_log.with_extension("sercon");
    std::fs::write(&sercon, [0xf8u8, 0x03]).unwrap();
    std::fs::write(&vm.serial_log, b"").unwrap();
    let mut child = Command::new(QEMU)
        .args(qemu_args(vm, &sercon))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("qemu-system-x86_64 (scripts/install-deps.sh)");
    let t = Instant::now();
    let read =
        || String::from_utf8_lossy(&std::fs::read(&vm.serial_log).unwrap_or_default()).into_owned();
    loop {
        let log = read();
        if done(&log) {
            let _ = child.kill();
            let _ = child.wait();
            return log;
        }
        let exited = child.try_wait().ok().flatten().is_some();
        if exited || t.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            panic!(
                "VM {} {} after {:.0} s; serial log tail:\n{}",
                vm.mac,
                if exited { "exited" } else { "timed out" },
                t.elapsed().as_secs_f64(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn bootset(s: &Store, args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_bootset"))
        .arg("--root")
        .arg(s.root())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "bootset {args:?}: {}{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn sparse_disk(path: &Path, bytes: u64) {
    std::fs::File::create(path).unwrap().set_len(bytes).unwrap();
}

/// The acceptance of issue 13 items 3-5 in four VM boots sharing one image.
#[test]
fn two_vms_are_discovered_in_order_then_boot_an_image_once() {
    common::require_root();
    let s = Store::new();
    let t0 = Instant::now();
    s.core_image("img1", &[]);
    eprintln!("image built in {:.0} s", t0.elapsed().as_secs_f64());
    let srv = s.serve(&[]);
    let url = format!("http://10.0.2.2:{}/boot.ipxe", srv.port);
    s.ok(&[
        "discovery",
        "start",
        "--policy",
        "sequential",
        "--pool",
        "d[01-02]",
    ]);
    let vms = [
        ("52:54:00:dc:00:01", 1024u32, 1u32, 1u64 << 30),
        ("52:54:00:dc:00:02", 1536, 2, 2u64 << 30),
    ];
    let timeout = Duration::from_secs(900);
    let mut kernel_mem = Vec::new();
    for (i, (mac, mem, cpus, disk)) in vms.iter().enumerate() {
        let name = format!("d0{}", i + 1);
        let disk_path = s.root().join(format!("{name}.disk"));
        sparse_disk(&disk_path, *disk);
        let mut vm = VmBoot::new(&url, s.root().join(format!("discover-{name}.log")), "");
        vm.mac = mac.to_string();
        vm.memory_mib = *mem;
        vm.cpus = *cpus;
        vm.disks = vec![disk_path];
        let t = Instant::now();
        let want = format!("disklessset: discovery: reported as {name}");
        let log = boot_until(&vm, timeout, &|l| l.contains(&want) || l.contains("FAILED"));
        assert!(log.contains(&want), "{log}");
        eprintln!(
            "{name}: power-on to report {:.1} s",
            t.elapsed().as_secs_f64()
        );
        // what the kernel said it has (the facts line printed before the report)
        let line = log
            .lines()
            .find(|l| l.contains("disklessset: discovery: facts: "))
            .unwrap_or_else(|| panic!("no facts line: {log}"));
        let printed: serde_json::Value =
            serde_json::from_str(line.split_once("facts: ").unwrap().1.trim()).unwrap();
        kernel_mem.push(printed["memory_mib"].as_u64().unwrap());
    }
    // named in power-on order, facts matching the VMs
    for (i, (mac, mem, cpus, disk)) in vms.iter().enumerate() {
        let name = format!("d0{}", i + 1);
        let d = s.json(&["nodes", "show", &name, "--json"]);
        assert_eq!(d["mac"], *mac, "{d}");
        let f = &d["facts"];
        assert_eq!(f["macs"][0], *mac, "{f}");
        assert_eq!(f["cpus"], *cpus, "{f}");
        assert_eq!(f["arch"], "x86_64", "{f}");
        assert_eq!(f["vendor"], "QEMU", "{f}");
        assert_eq!(f["disks"][0]["name"], "vda", "{f}");
        assert_eq!(f["disks"][0]["size_bytes"], *disk, "{f}");
        // MemTotal: the VM's RAM less what firmware and kernel keep
        let got = f["memory_mib"].as_u64().unwrap();
        assert_eq!(got, kernel_mem[i], "{f}");
        assert!(
            got <= u64::from(*mem) && got + 160 >= u64::from(*mem),
            "memory {got} MiB for a {mem} MiB VM"
        );
    }
    let diff = kernel_mem[1] as i64 - kernel_mem[0] as i64;
    assert!((500..=524).contains(&diff), "memory difference {diff} MiB");
    s.ok(&["discovery", "stop"]);

    // d01 boots the image once (then back to its previous boot type, disk)
    bootset(&s, &["-n", "d01", "-b", "disk"]);
    bootset(&s, &["-n", "d01", "-b", "diskless", "-i", "img1", "--once"]);
    let disk_path = s.root().join("d01.disk");
    let mut vm = VmBoot::new(&url, s.root().join("d01-image.log"), "");
    vm.mac = vms[0].0.into();
    vm.memory_mib = 1024;
    vm.cpus = 1;
    vm.disks = vec![disk_path.clone()];
    let booted = || {
        let st: serde_json::Value = serde_json::from_str(&bootset(&s, &["-s", "--json"])).unwrap();
        st.to_string().contains("booted_at")
    };
    let t = Instant::now();
    let log = boot_until(&vm, timeout, &|l| {
        l.contains("disklessset: image img1 booted") && booted()
    });
    eprintln!(
        "d01: power-on to image marker {:.1} s",
        t.elapsed().as_secs_f64()
    );
    assert!(
        log.contains("disklessset: d01 boots diskless image img1"),
        "{log}"
    );
    let st = bootset(&s, &["-s", "--json"]);
    let js: serde_json::Value = serde_json::from_str(&st).unwrap();
    let text = js.to_string();
    assert!(text.contains("\"booted_image\":\"img1\""), "{st}");
    assert!(text.contains("\"booted_generation\":"), "{st}");
    assert!(text.contains("booted_at"), "{st}");
    let human = bootset(&s, &["-s"]);
    assert!(human.contains("disk") && human.contains("d01"), "{human}");

    // the second boot takes the previous boot type: disk
    let mut vm = VmBoot::new(&url, s.root().join("d01-second.log"), "");
    vm.mac = vms[0].0.into();
    vm.memory_mib = 1024;
    vm.cpus = 1;
    vm.disks = vec![disk_path];
    let log = boot_until(&vm, timeout, &|l| {
        l.contains("disklessset: d01 boots from its local disk")
    });
    assert!(
        !log.contains("vmlinuz"),
        "the second boot loaded a kernel: {log}"
    );
}
