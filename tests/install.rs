//! Boot type `install` end to end (issue 16): a VM with an empty 4 GiB disk is set to
//! `install`; it boots the image's kernel with the own initramfs in install mode,
//! partitions and fills the disk, reports to `disklessset serve`, reboots, and boots
//! from its disk (no kernel request after the report) to the image's marker; the
//! server has flipped it to `disk`. Under SeaBIOS and OVMF. And a disk that holds
//! partitions is refused without --wipe, its first MiB unchanged. One image for all.
mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::vm::{boot_until_marker, Firmware, VmBoot};
use common::Store;

fn bootset(s: &Store, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_bootset"))
        .arg("--root")
        .arg(s.root())
        .args(args)
        .env_remove("DISKLESSSET_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bootset {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn empty_disk(path: &Path) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(4 << 30).unwrap();
}

fn first_mib(path: &Path) -> Vec<u8> {
    use std::io::Read;
    let mut buf = vec![0u8; 1 << 20];
    std::fs::File::open(path)
        .unwrap()
        .read_exact(&mut buf)
        .unwrap();
    buf
}

#[test]
fn install_to_disk_under_bios_and_uefi_and_refuse_a_used_disk() {
    common::require_root();
    let s = Store::new();
    s.core_image("ins", &[]);
    std::fs::write(
        s.root().join("nodes.yml"),
        "i1: {mac: '52:54:00:dd:00:01'}\ni2: {mac: '52:54:00:dd:00:02'}\ni3: {mac: '52:54:00:dd:00:03'}\n",
    )
    .unwrap();
    let srv = s.serve(&[]);
    let url = format!("http://10.0.2.2:{}/boot.ipxe", srv.port);
    let mut times = Vec::new();

    // A disk that holds a partition: refused without --wipe, left untouched.
    let used = s.root().join("used.img");
    empty_disk(&used);
    let mut sf = Command::new("sfdisk")
        .arg("-q")
        .arg(&used)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    sf.stdin
        .take()
        .unwrap()
        .write_all(b"label: gpt\nsize=100MiB, type=L\n")
        .unwrap();
    assert!(sf.wait().unwrap().success());
    let before = first_mib(&used);
    bootset(&s, &["-n", "i3", "-b", "install", "-i", "ins"]);
    let mut vm = VmBoot::new(
        &url,
        s.root().join("i3-refused.log"),
        "refused disk /dev/vda",
    );
    vm.mac = "52:54:00:dd:00:03".into();
    vm.disks = vec![used.clone()];
    vm.timeout = Duration::from_secs(600);
    let r = boot_until_marker(&vm).unwrap_or_else(|e| panic!("no refusal: {e}"));
    assert!(
        r.log.contains("REFUSED: disk /dev/vda holds partitions"),
        "{}",
        r.log
    );
    assert_eq!(first_mib(&used), before, "the refused disk changed");
    assert!(bootset(&s, &["-s", "i3"]).contains("install ins: i3"));

    for (fw, node, mac) in [
        (Firmware::Uefi, "i2", "52:54:00:dd:00:02"),
        (Firmware::Bios, "i1", "52:54:00:dd:00:01"),
    ] {
        let disk = s.root().join(format!("{node}-disk.img"));
        empty_disk(&disk);
        bootset(&s, &["-n", node, "-b", "install", "-i", "ins"]);
        let mut vm = VmBoot::new(
            &url,
            s.root().join(format!("{node}-{}.log", fw.tag())),
            "disklessset: image ins booted",
        );
        vm.firmware = fw;
        vm.mac = mac.into();
        vm.disks = vec![disk.clone()];
        vm.allow_reboot = true;
        vm.timeout = Duration::from_secs(900);
        let r = boot_until_marker(&vm)
            .unwrap_or_else(|e| panic!("{node} did not install and boot under {}: {e}", fw.tag()));
        let done = r
            .time_of("install: done; rebooting")
            .unwrap_or_else(|| panic!("no install on the console: {}", r.log));
        assert!(
            r.log
                .contains(&format!("disklessset: {node} boots from its local disk")),
            "second boot not sent to the disk: {}",
            r.log
        );
        times.push(format!(
            "install, {}: power-on to installed {done:.1} s, to the marker from the disk {:.1} s",
            fw.tag(),
            r.elapsed_secs
        ));
        eprintln!("{}", times.last().unwrap());
        // The server: the report came, and no kernel was asked for after it.
        let log = std::fs::read_to_string(&srv.log).unwrap();
        let lines: Vec<&str> = log.lines().collect();
        let report = lines
            .iter()
            .rposition(|l| l.contains(&format!("/installed/{node}")))
            .unwrap_or_else(|| panic!("no report in the server log: {log}"));
        assert!(
            !lines[report..].iter().any(|l| l.contains("vmlinuz")),
            "kernel requested after the install report: {log}"
        );
        assert!(lines[..report].iter().any(|l| l.contains("vmlinuz")));
        let st = bootset(&s, &["-s", node]);
        assert!(st.starts_with(&format!("disk: {node}")), "{st}");
        assert!(s
            .root()
            .join(format!("state/installed/{node}.txt"))
            .is_file());
    }
    eprintln!("boot times:\n  {}", times.join("\n  "));
}
