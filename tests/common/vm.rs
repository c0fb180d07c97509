//! VM boot harness for end-to-end tests: boots `qemu-system-x86_64` (TCG, no
//! KVM) through the iPXE option ROM of a virtio NIC, with the DHCP bootfile
//! set to an HTTP URL, and waits for a marker on the serial console.
//!
//! Use from an integration test with `mod common;` (tests/common/mod.rs holding
//! `pub mod vm;`). Missing QEMU is an error, never a silent skip.
//!
//! From the guest, the host's 127.0.0.1 is `10.0.2.2` (QEMU user networking),
//! so serve files with [`HttpServer::serve_dir`] (or any server bound to
//! 127.0.0.1) and use `http://10.0.2.2:PORT/boot.ipxe` as the bootfile.
//!
//! [`VmNet::Tap`] instead puts the VM on a tap device inside a network namespace
//! (tests/common/net.rs `TestNet`): its own address from a real DHCP server, as on a
//! cluster's provisioning network (issue 12).
#![allow(dead_code)]

use std::fmt;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The QEMU binary.
pub const QEMU: &str = "qemu-system-x86_64";
/// Lines of serial log included in a failure.
pub const TAIL_LINES: usize = 60;

/// The firmware a VM boots under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    /// SeaBIOS (QEMU's default) with the iPXE PXE ROM of Debian's ipxe-qemu.
    Bios,
    /// OVMF (Debian `ovmf`, q35, pflash code + a per-VM copy of the variables) with
    /// the combined iPXE EFI ROM of ipxe-qemu (`efi-virtio.rom`).
    Uefi,
}

impl Firmware {
    /// Both, for tests that prove a path under each.
    pub const BOTH: [Firmware; 2] = [Firmware::Bios, Firmware::Uefi];

    /// `bios` / `uefi`, for log names and figures.
    pub fn tag(self) -> &'static str {
        match self {
            Firmware::Bios => "bios",
            Firmware::Uefi => "uefi",
        }
    }
}

/// OVMF's code (read-only) and the variable store template copied per VM.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS.fd";
/// The iPXE EFI ROM for virtio-net (ipxe-qemu ships EFI+PXE combined ROMs).
pub const IPXE_EFI_ROM: &str = "/usr/lib/ipxe/qemu/efi-virtio.rom";

/// The VM's network.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum VmNet {
    /// QEMU user networking (the default): QEMU's own DHCP hands out 10.0.2.15 and
    /// [`VmBoot::bootfile_url`]; the host's 127.0.0.1 is 10.0.2.2.
    #[default]
    User,
    /// A tap device inside a network namespace: QEMU runs in `netns` (`ip netns exec`)
    /// on the existing tap `tap`; DHCP and the bootfile come from whatever serves
    /// that network (dnsmasq of `TestNet`); `bootfile_url` is unused.
    Tap { netns: String, tap: String },
}

/// One VM boot.
#[derive(Debug, Clone)]
pub struct VmBoot {
    /// Firmware: SeaBIOS or OVMF.
    pub firmware: Firmware,
    /// Raw disk images attached as virtio-blk, boot entries after the NIC (in order).
    pub disks: Vec<PathBuf>,
    /// Let a guest reboot stay in the same QEMU run (default: a reboot ends QEMU).
    pub allow_reboot: bool,
    /// DHCP bootfile, e.g. `http://10.0.2.2:8080/boot.ipxe`.
    pub bootfile_url: String,
    /// NIC MAC address, e.g. `52:54:00:12:34:56`.
    pub mac: String,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Guest CPUs.
    pub cpus: u32,
    /// Serial console log file (truncated at start).
    pub serial_log: PathBuf,
    /// Text whose appearance on the serial console ends the boot successfully.
    pub marker: String,
    /// Give up (and kill QEMU) after this long.
    pub timeout: Duration,
    /// Extra QEMU arguments.
    pub extra_args: Vec<String>,
    /// User networking (default) or a tap in a network namespace.
    pub net: VmNet,
}

impl VmBoot {
    /// Defaults: MAC 52:54:00:12:34:56, 2048 MiB, 2 CPUs, 300 s timeout.
    pub fn new(
        bootfile_url: impl Into<String>,
        serial_log: impl Into<PathBuf>,
        marker: impl Into<String>,
    ) -> Self {
        Self {
            firmware: Firmware::Bios,
            disks: Vec::new(),
            allow_reboot: false,
            bootfile_url: bootfile_url.into(),
            mac: "52:54:00:12:34:56".into(),
            memory_mib: 2048,
            cpus: 2,
            serial_log: serial_log.into(),
            marker: marker.into(),
            timeout: Duration::from_secs(300),
            extra_args: Vec::new(),
            net: VmNet::User,
        }
    }
}

/// A boot that reached the marker.
#[derive(Debug, Clone)]
pub struct VmRun {
    /// Serial console text up to (at least) the marker.
    pub log: String,
    /// Seconds from QEMU start to the marker.
    pub elapsed_secs: f64,
    /// Every serial line with the time (s since QEMU start, 0.1 s resolution)
    /// at which the harness first saw it complete: a wall-clock timeline of
    /// firmware, iPXE, kernel and init for benchmarks.
    pub timeline: Vec<(f64, String)>,
}

impl VmRun {
    /// Time at which the first line containing `needle` appeared.
    pub fn time_of(&self, needle: &str) -> Option<f64> {
        self.timeline
            .iter()
            .find(|(_, l)| l.contains(needle))
            .map(|(t, _)| *t)
    }
}

/// A boot that did not reach the marker. `Debug` prints the same readable
/// text as `Display`, so `.unwrap()` in a test shows the log tail.
pub struct VmError {
    /// What went wrong.
    pub reason: String,
    /// The last [`TAIL_LINES`] lines of the serial log.
    pub log_tail: String,
    /// QEMU's own stderr (ROM not found, bad option, ...).
    pub qemu_stderr: String,
}

impl fmt::Display for VmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.reason)?;
        if !self.qemu_stderr.trim().is_empty() {
            writeln!(f, "--- qemu stderr ---\n{}", self.qemu_stderr.trim_end())?;
        }
        write!(
            f,
            "--- last {TAIL_LINES} lines of the serial log ---\n{}",
            self.log_tail
        )
    }
}

impl fmt::Debug for VmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for VmError {}

/// Kills and reaps QEMU when dropped (timeout, marker found, test panic).
struct QemuGuard(Child);

impl Drop for QemuGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Escape a value for QEMU's `-netdev`/`-device` option syntax (`,` -> `,,`).
fn qemu_escape(s: &str) -> String {
    s.replace(',', ",,")
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Read the log as text (the serial log may hold non-UTF-8 bytes).
fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The QEMU command line for `cfg` (exposed for logging and tests).
pub fn qemu_args(cfg: &VmBoot, sercon_file: &Path) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "-accel".into(),
        "tcg,thread=multi".into(),
        "-cpu".into(),
        "max".into(),
        "-m".into(),
        cfg.memory_mib.to_string(),
        "-smp".into(),
        cfg.cpus.to_string(),
        "-display".into(),
        "none".into(),
        "-nodefaults".into(),
        "-serial".into(),
        format!("file:{}", cfg.serial_log.display()),
        "-netdev".into(),
        match &cfg.net {
            VmNet::User => format!("user,id=n0,bootfile={}", qemu_escape(&cfg.bootfile_url)),
            VmNet::Tap { tap, .. } => format!(
                "tap,id=n0,ifname={},script=no,downscript=no",
                qemu_escape(tap)
            ),
        },
    ];
    if !cfg.allow_reboot {
        a.push("-no-reboot".into());
    }
    match cfg.firmware {
        Firmware::Bios => {
            a.extend([
                // SeaBIOS and iPXE print to the serial port 0x3f8 with this.
                "-fw_cfg".into(),
                format!("name=etc/sercon-port,file={}", sercon_file.display()),
                "-device".into(),
                format!(
                    "virtio-net-pci,netdev=n0,mac={},bootindex=0",
                    qemu_escape(&cfg.mac)
                ),
            ]);
        }
        Firmware::Uefi => {
            // OVMF writes its console (and iPXE's) to the serial port itself.
            a.extend([
                "-machine".into(),
                "q35".into(),
                "-drive".into(),
                format!("if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"),
                "-drive".into(),
                format!(
                    "if=pflash,format=raw,unit=1,file={}",
                    qemu_escape(&ovmf_vars_path(cfg).display().to_string())
                ),
                "-device".into(),
                format!(
                    "virtio-net-pci,netdev=n0,mac={},romfile={IPXE_EFI_ROM},bootindex=0",
                    qemu_escape(&cfg.mac)
                ),
            ]);
        }
    }
    for (i, d) in cfg.disks.iter().enumerate() {
        a.extend([
            "-drive".into(),
            format!(
                "if=none,id=disk{i},format=raw,file={}",
                qemu_escape(&d.display().to_string())
            ),
            "-device".into(),
            format!("virtio-blk-pci,drive=disk{i},bootindex={}", i + 1),
        ]);
    }
    a.extend(cfg.extra_args.iter().cloned());
    a
}

/// The per-VM copy of OVMF's variable store (next to the serial log).
pub fn ovmf_vars_path(cfg: &VmBoot) -> PathBuf {
    cfg.serial_log.with_extension("ovmf-vars.fd")
}

/// Boot the VM and wait for the marker on the serial console.
pub fn boot_until_marker(cfg: &VmBoot) -> Result<VmRun, VmError> {
    let fail = |reason: String, stderr_path: &Path| VmError {
        reason,
        log_tail: tail(&read_lossy(&cfg.serial_log), TAIL_LINES),
        qemu_stderr: read_lossy(stderr_path),
    };
    let log = &cfg.serial_log;
    let stderr_path = log.with_extension("qemu-stderr");
    let sercon = log.with_extension("sercon");
    let prep = (|| -> std::io::Result<(fs::File, fs::File)> {
        if let Some(dir) = log.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)?;
        }
        fs::write(&sercon, [0xf8u8, 0x03])?;
        if cfg.firmware == Firmware::Uefi {
            fs::copy(OVMF_VARS, ovmf_vars_path(cfg))?;
        }
        Ok((fs::File::create(log)?, fs::File::create(&stderr_path)?))
    })();
    let (_, stderr_file) = prep.map_err(|e| VmError {
        reason: format!("cannot prepare {} and its side files: {e}", log.display()),
        log_tail: String::new(),
        qemu_stderr: String::new(),
    })?;
    let args = qemu_args(cfg, &sercon);
    let start = Instant::now();
    // In a namespace: `ip netns exec` enters it and execs QEMU (same pid, so the guard
    // kills QEMU itself).
    let mut command = match &cfg.net {
        VmNet::User => Command::new(QEMU),
        VmNet::Tap { netns, .. } => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", netns.as_str(), QEMU]);
            c
        }
    };
    let child = command
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr_file)
        .spawn()
        .map_err(|e| {
            fail(
                format!(
                    "cannot start {QEMU}: {e} (install Debian's qemu-system-x86, ipxe-qemu and ovmf: scripts/install-deps.sh)"
                ),
                &stderr_path,
            )
        })?;
    let mut qemu = QemuGuard(child);
    let mut timeline: Vec<(f64, String)> = Vec::new();
    let mut consumed = 0usize;
    loop {
        let text = read_lossy(log);
        let now = start.elapsed().as_secs_f64();
        let new = text.get(consumed..).unwrap_or("");
        if let Some(end) = new.rfind('\n') {
            for line in new[..end].split('\n') {
                timeline.push((now, line.trim_end_matches('\r').to_string()));
            }
            consumed += end + 1;
        }
        if text.contains(&cfg.marker) {
            drop(qemu);
            if let Some(rest) = text.get(consumed..).filter(|r| !r.is_empty()) {
                timeline.push((now, rest.to_string()));
            }
            return Ok(VmRun {
                log: read_lossy(log),
                elapsed_secs: now,
                timeline,
            });
        }
        match qemu.0.try_wait() {
            Ok(Some(status)) => {
                return Err(fail(
                    format!(
                        "QEMU exited ({status}) after {:.1} s without printing {:?} (args: {})",
                        start.elapsed().as_secs_f64(),
                        cfg.marker,
                        args.join(" ")
                    ),
                    &stderr_path,
                ));
            }
            Ok(None) => {}
            Err(e) => return Err(fail(format!("waiting for QEMU: {e}"), &stderr_path)),
        }
        if start.elapsed() >= cfg.timeout {
            drop(qemu);
            return Err(fail(
                format!(
                    "timeout: no {:?} on the serial console after {} s (QEMU killed)",
                    cfg.marker,
                    cfg.timeout.as_secs()
                ),
                &stderr_path,
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A minimal static HTTP/1.0 file server on 127.0.0.1 (GET and HEAD only),
/// enough for iPXE and busybox wget. Stops when dropped.
pub struct HttpServer {
    /// The port it listens on.
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Serve the files of `dir` on an ephemeral port of 127.0.0.1.
    pub fn serve_dir(dir: impl Into<PathBuf>) -> std::io::Result<HttpServer> {
        let dir = dir.into();
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let dir = dir.clone();
                        std::thread::spawn(move || {
                            let _ = handle(stream, &dir);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Ok(HttpServer {
            port,
            stop,
            thread: Some(thread),
        })
    }

    /// `http://10.0.2.2:PORT/path` as seen from a QEMU user-network guest.
    pub fn guest_url(&self, path: &str) -> String {
        format!(
            "http://10.0.2.2:{}/{}",
            self.port,
            path.trim_start_matches('/')
        )
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn handle(stream: TcpStream, dir: &Path) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
    }
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stream);
    let mut parts = request.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let rel = target
        .split('?')
        .next()
        .unwrap_or("")
        .trim_start_matches('/');
    let safe = !rel.split('/').any(|c| c == ".." || c.is_empty());
    let path = dir.join(rel);
    let file = if safe && (method == "GET" || method == "HEAD") {
        fs::File::open(&path).ok().filter(|_| path.is_file())
    } else {
        None
    };
    match file {
        Some(mut f) => {
            let len = f.metadata()?.len();
            write!(
                out,
                "HTTP/1.0 200 OK\r\nContent-Length: {len}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
            )?;
            if method == "GET" {
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = f.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    out.write_all(&buf[..n])?;
                }
            }
        }
        None => {
            let body = format!("404 File not found: /{rel}\n");
            write!(
                out,
                "HTTP/1.0 404 File not found\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )?;
        }
    }
    out.flush()
}
