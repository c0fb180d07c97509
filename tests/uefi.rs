//! Boot proof under both firmwares (issue 16): the quick-start livenet image (native
//! layout, own initramfs) boots through the bootset chain under SeaBIOS and under OVMF
//! with the iPXE EFI ROM; a node set to `disk` under OVMF leaves iPXE for the
//! firmware's next boot entry (a disk with systemd-boot at the removable path, whose
//! entry starts the image's kernel with a marker on its command line) and loads no
//! kernel over the network. Needs root, the mirror, QEMU, ipxe-qemu, ovmf,
//! systemd-boot-efi, dosfstools, fdisk, mtools (scripts/install-deps.sh).
mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::vm::{boot_until_marker, Firmware, VmBoot};
use common::Store;

fn bootset(s: &Store, args: &[&str]) {
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
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn kernel_of(s: &Store) -> PathBuf {
    let dir = s.root().join("www/diskless/kernels");
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("vmlinuz-")
        })
        .unwrap_or_else(|| panic!("no vmlinuz-* in {}", dir.display()))
}

/// A GPT disk whose one partition is an ESP holding systemd-boot at the removable path
/// and one entry: `kernel` with `cmdline` (built on the host: sfdisk, mkfs.vfat,
/// mcopy into the file system image, then copied into the disk at 1 MiB).
fn esp_disk(dir: &Path, kernel: &Path, cmdline: &str) -> PathBuf {
    let disk = dir.join("handover-disk.img");
    let esp = dir.join("handover-esp.img");
    let f = std::fs::File::create(&disk).unwrap();
    f.set_len(200 << 20).unwrap();
    drop(f);
    let mut sf = Command::new("sfdisk")
        .arg("-q")
        .arg(&disk)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    sf.stdin
        .take()
        .unwrap()
        .write_all(b"label: gpt\nstart=2048, size=380000, type=U\n")
        .unwrap();
    assert!(sf.wait().unwrap().success());
    let _ = std::fs::remove_file(&esp);
    run(Command::new("mkfs.vfat")
        .args(["-F", "32", "-C"])
        .arg(&esp)
        .arg("190000"));
    // mtools: no vfat module needed on the host (containers often lack it).
    let src = dir.join("handover-esp-src");
    let put = |rel: &str, data: &[u8]| {
        let p = src.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    };
    put(
        "EFI/BOOT/BOOTX64.EFI",
        &std::fs::read("/usr/lib/systemd/boot/efi/systemd-bootx64.efi").unwrap(),
    );
    put("vmlinuz", &std::fs::read(kernel).unwrap());
    put("loader/loader.conf", b"timeout 0\ndefault dls.conf\n");
    put(
        "loader/entries/dls.conf",
        format!("title handover\nlinux /vmlinuz\noptions {cmdline}\n").as_bytes(),
    );
    for entry in std::fs::read_dir(&src).unwrap() {
        run(Command::new("mcopy")
            .args(["-s", "-i"])
            .arg(&esp)
            .arg(entry.unwrap().path())
            .arg("::/"));
    }
    run(Command::new("dd")
        .arg(format!("if={}", esp.display()))
        .arg(format!("of={}", disk.display()))
        .args(["bs=1M", "seek=1", "conv=notrunc,fsync", "status=none"]));
    disk
}

#[test]
fn quick_start_image_boots_under_bios_and_uefi_and_disk_hands_over_under_uefi() {
    common::require_root();
    let s = Store::new();
    s.core_image("q1", &[]);
    std::fs::write(
        s.root().join("nodes.yml"),
        "n1: {mac: '52:54:00:cc:00:01'}\nn2: {mac: '52:54:00:cc:00:02'}\n",
    )
    .unwrap();
    bootset(&s, &["-n", "n1", "-b", "diskless", "-i", "q1"]);
    bootset(&s, &["-n", "n2", "-b", "disk"]);
    let srv = s.serve(&[]);

    let mut times = Vec::new();
    for fw in Firmware::BOTH {
        let mut vm = VmBoot::new(
            srv.url(),
            s.root().join(format!("n1-{}.log", fw.tag())),
            "disklessset: image q1 booted",
        );
        vm.firmware = fw;
        vm.mac = "52:54:00:cc:00:01".into();
        vm.timeout = Duration::from_secs(600);
        let r = boot_until_marker(&vm)
            .unwrap_or_else(|e| panic!("q1 did not boot under {}: {e}", fw.tag()));
        assert!(
            r.log.contains("disklessset: n1 boots diskless image q1"),
            "chain not followed under {}",
            fw.tag()
        );
        times.push(format!(
            "livenet native, own initramfs, {}: power-on to marker {:.1} s",
            fw.tag(),
            r.elapsed_secs
        ));
        eprintln!("{}", times.last().unwrap());
    }
    let kernel_requests = |log: &str| log.lines().filter(|l| l.contains("vmlinuz")).count();
    let before = kernel_requests(&srv.log_text());
    assert!(
        before >= 2,
        "the server log has no kernel requests: {}",
        srv.log_text()
    );

    // n2 is `disk`: under OVMF iPXE exits, the boot manager goes on to the disk.
    let marker = "dls-handover-marker";
    let disk = esp_disk(
        s.root(),
        &kernel_of(&s),
        &format!("console=ttyS0,115200 {marker} panic=-1"),
    );
    let mut vm = VmBoot::new(
        srv.url(),
        s.root().join("n2-uefi.log"),
        format!("Kernel command line: console=ttyS0,115200 {marker}"),
    );
    vm.firmware = Firmware::Uefi;
    vm.mac = "52:54:00:cc:00:02".into();
    vm.disks = vec![disk];
    vm.timeout = Duration::from_secs(600);
    let r = boot_until_marker(&vm).unwrap_or_else(|e| panic!("n2 did not reach its disk: {e}"));
    let left = r
        .time_of("leaves iPXE for the firmware's next boot entry")
        .unwrap_or_else(|| panic!("no hand-over line: {}", r.log));
    times.push(format!(
        "disk, uefi: power-on to iPXE exit {left:.1} s, to the disk's kernel {:.1} s",
        r.elapsed_secs
    ));
    eprintln!("{}", times.last().unwrap());
    assert_eq!(
        kernel_requests(&srv.log_text()),
        before,
        "the disk node loaded a kernel over the network: {}",
        srv.log_text()
    );
    eprintln!("boot times:\n  {}", times.join("\n  "));
}

/// nfs-ganesha on 127.0.0.1:PORT serving the tool's generated exports (as tests/nfs.rs).
struct Ganesha(Child);

impl Drop for Ganesha {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ganesha(dir: &Path, exports: &Path, port: u16) -> Ganesha {
    let conf = dir.join("ganesha.conf");
    std::fs::write(
        &conf,
        format!(
            "NFS_CORE_PARAM {{ Protocols = 4; NFS_Port = {port}; Bind_addr = 127.0.0.1; Enable_NLM = false; Enable_RQUOTA = false; }}\n\
             NFSV4 {{ Graceless = true; Allow_Numeric_Owners = true; Only_Numeric_Owners = true; }}\n\
             %include \"{}\"\n",
            exports.display()
        ),
    )
    .unwrap();
    let child = Command::new("ganesha.nfsd")
        .arg("-F")
        .arg("-f")
        .arg(&conf)
        .arg("-L")
        .arg(dir.join("ganesha.log"))
        .arg("-p")
        .arg(dir.join("ganesha.pid"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ganesha.nfsd (apt-get install nfs-ganesha nfs-ganesha-vfs)");
    let g = Ganesha(child);
    let t = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "nfs-ganesha did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    g
}

#[test]
fn nfs_golden_image_boots_under_bios_and_uefi() {
    common::require_root();
    let s = Store::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let cfg = s.root().join("config.yaml");
    std::fs::create_dir_all(s.root().join("ganesha")).unwrap();
    std::fs::write(
        &cfg,
        format!(
            "nfs_server_kind: ganesha\nnfs_server: 10.0.2.2\nnfs_mount_options: vers=4.1,port={port}\nganesha_pid_file: {}\n",
            s.root().join("ganesha/ganesha.pid").display()
        ),
    )
    .unwrap();
    let c = cfg.display().to_string();
    std::fs::write(
        s.root().join("nodes.yml"),
        "u1: {mac: '52:54:00:cc:01:01'}\n",
    )
    .unwrap();
    s.ok(&[
        "--config", &c, "nfs", "staging", "create", "ust", "--type", "core",
    ]);
    s.ok(&[
        "--config", &c, "nfs", "golden", "create", "ugold", "--from", "ust",
    ]);
    s.ok(&["--config", &c, "nfs", "nodes", "add", "ugold", "u1"]);
    let _g = ganesha(
        &s.root().join("ganesha"),
        &s.root().join("exports/disklessset.ganesha.conf"),
        port,
    );
    bootset(
        &s,
        &["--config", &c, "-n", "u1", "-b", "diskless", "-i", "ugold"],
    );
    let srv = s.serve(&[]);
    let mut times = Vec::new();
    for fw in Firmware::BOTH {
        let mut vm = VmBoot::new(
            srv.url(),
            s.root().join(format!("u1-{}.log", fw.tag())),
            "booted (kernel",
        );
        vm.firmware = fw;
        vm.mac = "52:54:00:cc:01:01".into();
        vm.timeout = Duration::from_secs(600);
        let r = boot_until_marker(&vm)
            .unwrap_or_else(|e| panic!("ugold did not boot over NFS under {}: {e}", fw.tag()));
        assert!(
            r.log.contains("disklessset: u1 boots diskless image ugold"),
            "chain not followed under {}",
            fw.tag()
        );
        assert!(r.log.contains("root=nfs:"), "not an NFS root: {}", r.log);
        times.push(format!(
            "NFS golden, own initramfs, {}: power-on to marker {:.1} s",
            fw.tag(),
            r.elapsed_secs
        ));
        eprintln!("{}", times.last().unwrap());
    }
    eprintln!("boot times:\n  {}", times.join("\n  "));
}
