//! A test network like a cluster's provisioning network (issue 12): a network
//! namespace of its own, a bridge `br0` holding `10.N.0.1/24`, one tap device per VM
//! attached to the bridge, `dnsmasq` (Debian `dnsmasq-base`) as the DHCP server with
//! the inventory's reservations (`--dhcp-host=MAC,IP,NAME`) pointing iPXE at the boot
//! server's entry script, and `disklessset serve` listening on the bridge address.
//! Unlike QEMU user networking (every guest is 127.0.0.1 to the host), each VM comes
//! from its own address, so per-node checks on the server can be tested.
//!
//! Everything is torn down when the [`TestNet`] is dropped, also on a panic: dnsmasq
//! and the server are killed (and get SIGKILL anyway if the test thread dies first),
//! the taps and the namespace deleted. Namespaces left by a test run killed with
//! `kill -9` (their pid is in the name) are deleted by the next [`TestNet::new`].
//!
//! Needs root, `ip` (iproute2), `/dev/net/tun`, `dnsmasq` and `curl`
//! (scripts/install-deps.sh); missing pieces are errors, never skips.
#![allow(dead_code)]

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::vm::{VmBoot, VmNet};
use super::Store;

/// The bridge inside every test namespace.
pub const BRIDGE: &str = "br0";
/// The boot server's port on the bridge address.
pub const SERVER_PORT: u16 = 8080;
/// Namespace names: `dls-tn-PID-N`.
const NS_PREFIX: &str = "dls-tn-";
/// Third octets of the subnets tried (10.N.0.0/24), one per live TestNet.
const SUBNETS: std::ops::RangeInclusive<u8> = 100..=250;
/// Addresses dnsmasq hands out to MACs without a reservation (10.N.0.200-250).
const DYNAMIC_RANGE: (u8, u8) = (200, 250);

/// One DHCP reservation: `--dhcp-host=MAC,IP,NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub mac: String,
    pub ip: String,
    pub name: String,
}

/// A network namespace with a bridge, taps, dnsmasq and the boot server (see the
/// module doc). Create with [`TestNet::new`], then [`serve`](TestNet::serve) and
/// [`start_dhcp`](TestNet::start_dhcp), then boot VMs from [`vm`](TestNet::vm).
pub struct TestNet {
    /// The namespace name (`dls-tn-PID-N`).
    pub ns: String,
    /// The third octet: the bridge is 10.N.0.1/24.
    pub n: u8,
    /// dnsmasq's pid, lease and log files, the server's log.
    pub dir: tempfile::TempDir,
    /// Reservations given to dnsmasq (from the inventory, plus [`reserve`](Self::reserve)).
    pub reservations: Vec<Reservation>,
    /// Held while this subnet number is in use (a flock, released by the kernel when the
    /// process dies).
    _lock: fs::File,
    dnsmasq: Option<Child>,
    server: Option<Child>,
    taps: Vec<String>,
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (scripts/install-deps.sh)"))
}

fn must(cmd: &mut Command) -> String {
    let o = run(cmd);
    assert!(
        o.status.success(),
        "{cmd:?} failed ({}): {}{}",
        o.status,
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn ip(args: &[&str]) -> String {
    must(Command::new("ip").args(args))
}

/// The kernel sends SIGKILL to the child when the spawning thread ends (the test's
/// thread: a panic that skips Drop, or a harness that exits), so nothing outlives it.
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
}

/// Namespaces of earlier runs whose process is gone (killed before Drop ran).
fn delete_stale_namespaces() {
    let Ok(entries) = fs::read_dir("/run/netns") else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(NS_PREFIX)
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip")
                .args(["netns", "del", &name])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl TestNet {
    /// A new namespace `dls-tn-PID-N` with `lo` up and the bridge `br0` = 10.N.0.1/24
    /// (N: the first number in 100..=250 no other live TestNet holds). No dnsmasq or
    /// server yet.
    pub fn new() -> TestNet {
        assert!(
            nix::unistd::geteuid().is_root(),
            "TestNet needs root (network namespaces, taps)"
        );
        assert!(
            Path::new("/dev/net/tun").exists(),
            "/dev/net/tun is missing: no tap devices"
        );
        delete_stale_namespaces();
        let (n, lock) = SUBNETS
            .filter_map(|n| {
                let f = fs::File::create(format!("/tmp/dls-testnet-{n}.lock")).ok()?;
                f.try_lock().ok()?;
                Some((n, f))
            })
            .next()
            .expect("every test subnet 10.100-250.0.0/24 is in use");
        let ns = format!("{NS_PREFIX}{}-{n}", std::process::id());
        let dir = tempfile::Builder::new()
            .prefix("dls-testnet-")
            .tempdir_in("/var/tmp")
            .expect("temp dir");
        // From here on, Drop cleans up whatever was made.
        let net = TestNet {
            ns,
            n,
            dir,
            reservations: Vec::new(),
            _lock: lock,
            dnsmasq: None,
            server: None,
            taps: Vec::new(),
        };
        let ns = net.ns.as_str();
        ip(&["netns", "add", ns]);
        ip(&["-n", ns, "link", "set", "lo", "up"]);
        ip(&[
            "-n",
            ns,
            "link",
            "add",
            BRIDGE,
            "type",
            "bridge",
            "forward_delay",
            "0",
        ]);
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{}/24", net.gateway()),
            "dev",
            BRIDGE,
        ]);
        ip(&["-n", ns, "link", "set", BRIDGE, "up"]);
        net
    }

    /// `10.N.0.HOST`.
    pub fn addr(&self, host: u8) -> String {
        format!("10.{}.0.{host}", self.n)
    }

    /// The bridge's address, 10.N.0.1: the boot server and dnsmasq.
    pub fn gateway(&self) -> String {
        self.addr(1)
    }

    /// The boot server's base URL as the VMs see it.
    pub fn base_url(&self) -> String {
        format!("http://{}:{SERVER_PORT}", self.gateway())
    }

    /// The entry script every machine is pointed at by DHCP (`disklessset serve`
    /// answers `/boot.ipxe` with the chain to the node's own script).
    pub fn entry_url(&self) -> String {
        format!("{}/boot.ipxe", self.base_url())
    }

    /// `ip netns exec NS PROGRAM`: add the arguments and run it inside the namespace.
    pub fn exec(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns]).arg(program);
        c.stdin(Stdio::null());
        c
    }

    /// `curl -sS -o /dev/null -w %{http_code} ARGS...` inside the namespace: the HTTP
    /// status (0 when no answer) and curl's stderr.
    pub fn curl_status(&self, args: &[&str]) -> (u16, String) {
        let o = run(self
            .exec("curl")
            .args(["-sS", "-m", "20", "-o", "/dev/null", "-w", "%{http_code}"])
            .args(args));
        let code = String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        (code, String::from_utf8_lossy(&o.stderr).into_owned())
    }

    /// A new tap device `tapK`, attached to the bridge and up (carrier comes when QEMU
    /// opens it).
    pub fn add_tap(&mut self) -> String {
        let tap = format!("tap{}", self.taps.len());
        let ns = self.ns.clone();
        ip(&["-n", &ns, "tuntap", "add", "dev", &tap, "mode", "tap"]);
        self.taps.push(tap.clone());
        ip(&["-n", &ns, "link", "set", &tap, "master", BRIDGE]);
        ip(&["-n", &ns, "link", "set", &tap, "up"]);
        tap
    }

    /// The server's stderr (run with `-i`: its info lines, warnings, refusals).
    pub fn server_log_path(&self) -> PathBuf {
        self.dir.path().join("serve.log")
    }

    pub fn server_log(&self) -> String {
        fs::read_to_string(self.server_log_path()).unwrap_or_default()
    }

    /// dnsmasq's `--log-dhcp` log.
    pub fn dnsmasq_log_path(&self) -> PathBuf {
        self.dir.path().join("dnsmasq.log")
    }

    pub fn dnsmasq_log(&self) -> String {
        fs::read_to_string(self.dnsmasq_log_path()).unwrap_or_default()
    }

    /// Both logs, for a failure message.
    pub fn logs(&self) -> String {
        format!(
            "--- dnsmasq log ({}) ---\n{}\n--- server log ({}) ---\n{}",
            self.dnsmasq_log_path().display(),
            self.dnsmasq_log(),
            self.server_log_path().display(),
            self.server_log()
        )
    }

    /// Start `disklessset serve` of `store` inside the namespace on 10.N.0.1:8080 and
    /// wait until `/health` answers.
    pub fn serve(&mut self, store: &Store) {
        assert!(self.server.is_none(), "the server already runs");
        let log = fs::File::create(self.server_log_path()).expect("server log");
        let listen = format!("{}:{SERVER_PORT}", self.gateway());
        let mut cmd = self.exec(env!("CARGO_BIN_EXE_disklessset"));
        cmd.arg("--root")
            .arg(store.root())
            .args(["-i", "serve", "--listen", &listen])
            .env_remove("DISKLESSSET_CONFIG")
            .stdout(log.try_clone().expect("server log"))
            .stderr(log);
        die_with_parent(&mut cmd);
        self.server = Some(cmd.spawn().expect("start disklessset serve"));
        let health = format!("{}/health", self.base_url());
        let t = Instant::now();
        loop {
            if self.curl_status(&["-m", "2", &health]).0 == 200 {
                return;
            }
            if let Some(Ok(Some(st))) = self.server.as_mut().map(Child::try_wait) {
                panic!("disklessset serve exited ({st}):\n{}", self.server_log());
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "disklessset serve did not answer {health} within 30 s:\n{}",
                self.server_log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// An extra reservation (or one replacing the inventory's for that MAC), given to
    /// dnsmasq by the next [`start_dhcp`](Self::start_dhcp).
    pub fn reserve(&mut self, mac: &str, ip: &str, name: &str) {
        self.reservations
            .retain(|r| !r.mac.eq_ignore_ascii_case(mac));
        self.reservations.push(Reservation {
            mac: mac.to_lowercase(),
            ip: ip.to_string(),
            name: name.to_string(),
        });
    }

    /// Reservations of every inventory node of `store` with both a MAC and an IP
    /// (`disklessset nodes list --json`), then the ones [`reserve`](Self::reserve) added
    /// (they win for their MAC).
    pub fn inventory_reservations(&self, store: &Store) -> Vec<Reservation> {
        let rows: serde_json::Value = serde_json::from_str(&store.ok(&["nodes", "list", "--json"]))
            .expect("nodes list --json");
        let mut out: Vec<Reservation> = rows
            .as_array()
            .expect("nodes list --json is an array")
            .iter()
            .filter_map(|r| {
                Some(Reservation {
                    mac: r["mac"].as_str()?.to_lowercase(),
                    ip: r["ip"].as_str()?.to_string(),
                    name: r["name"].as_str()?.to_string(),
                })
            })
            .filter(|r| {
                !self
                    .reservations
                    .iter()
                    .any(|x| x.mac.eq_ignore_ascii_case(&r.mac))
            })
            .collect();
        out.extend(self.reservations.iter().cloned());
        out
    }

    /// Start dnsmasq on the bridge: DHCP only (`--port=0`), the reservations of
    /// [`inventory_reservations`](Self::inventory_reservations), the bootfile = the
    /// server's entry script, 10.N.0.200-250 for MACs without a reservation; no
    /// resolv.conf, hosts file or config file read; pid, leases and `--log-dhcp` log in
    /// this net's temp dir. Waits until it listens.
    pub fn start_dhcp(&mut self, store: &Store) {
        assert!(self.dnsmasq.is_none(), "dnsmasq already runs");
        self.reservations = self.inventory_reservations(store);
        let d = self.dir.path();
        let mut args: Vec<String> = vec![
            "--keep-in-foreground".into(),
            "--conf-file=/dev/null".into(),
            "--port=0".into(),
            "--no-resolv".into(),
            "--no-hosts".into(),
            "--user=root".into(),
            "--group=root".into(),
            format!("--interface={BRIDGE}"),
            "--bind-interfaces".into(),
            "--dhcp-authoritative".into(),
            format!(
                "--dhcp-range={},{},255.255.255.0,1h",
                self.addr(DYNAMIC_RANGE.0),
                self.addr(DYNAMIC_RANGE.1)
            ),
            format!("--dhcp-boot={}", self.entry_url()),
            "--log-dhcp".into(),
            format!("--log-facility={}", self.dnsmasq_log_path().display()),
            format!("--pid-file={}", d.join("dnsmasq.pid").display()),
            format!("--dhcp-leasefile={}", d.join("dnsmasq.leases").display()),
        ];
        for r in &self.reservations {
            args.push(format!("--dhcp-host={},{},{}", r.mac, r.ip, r.name));
        }
        fs::write(self.dnsmasq_log_path(), "").expect("dnsmasq log");
        let mut cmd = self.exec("dnsmasq");
        cmd.args(&args)
            .stdout(Stdio::null())
            .stderr(fs::File::create(d.join("dnsmasq.stderr")).expect("dnsmasq stderr"));
        die_with_parent(&mut cmd);
        self.dnsmasq = Some(cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot start dnsmasq: {e} (Debian dnsmasq-base: scripts/install-deps.sh)")
        }));
        let t = Instant::now();
        while !self.dnsmasq_log().contains("DHCP, IP range") {
            if let Some(Ok(Some(st))) = self.dnsmasq.as_mut().map(Child::try_wait) {
                panic!(
                    "dnsmasq exited ({st}): {}\n{}",
                    fs::read_to_string(d.join("dnsmasq.stderr")).unwrap_or_default(),
                    self.dnsmasq_log()
                );
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "dnsmasq did not start within 20 s (args {args:?}):\n{}",
                self.dnsmasq_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The DHCPACK lines dnsmasq logged for `mac` (`DHCPACK(br0) IP MAC NAME`).
    pub fn acks_for(&self, mac: &str) -> Vec<String> {
        let mac = mac.to_lowercase();
        self.dnsmasq_log()
            .lines()
            .filter(|l| l.contains("DHCPACK") && l.to_lowercase().contains(&mac))
            .map(str::to_string)
            .collect()
    }

    /// A VM boot on a new tap of this network with the NIC `mac`: DHCP from dnsmasq, the
    /// bootfile from its `--dhcp-boot`. 2 GiB, 900 s timeout (TCG on a loaded machine).
    pub fn vm(
        &mut self,
        mac: &str,
        serial_log: impl Into<PathBuf>,
        marker: impl Into<String>,
    ) -> VmBoot {
        let tap = self.add_tap();
        let mut vm = VmBoot::new(self.entry_url(), serial_log, marker);
        vm.mac = mac.to_string();
        vm.net = VmNet::Tap {
            netns: self.ns.clone(),
            tap,
        };
        vm.timeout = Duration::from_secs(900);
        vm
    }
}

impl TestNet {
    /// The pids of dnsmasq and the server (those running).
    pub fn pids(&self) -> Vec<u32> {
        [&self.dnsmasq, &self.server]
            .into_iter()
            .flatten()
            .map(Child::id)
            .collect()
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        for c in [self.dnsmasq.take(), self.server.take()]
            .into_iter()
            .flatten()
        {
            let mut c = c;
            let _ = c.kill();
            let _ = c.wait();
        }
        for tap in &self.taps {
            let _ = Command::new("ip")
                .args(["-n", &self.ns, "link", "del", tap])
                .stderr(Stdio::null())
                .status();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.ns])
            .stderr(Stdio::null())
            .status();
    }
}

/// Adds a console marker to a livenet image of `store`: a oneshot unit `NAME.service`
/// (enabled in multi-user.target, ordered after it (no cycle) and after the image's ready unit, so after its
/// call-home) running `script` with `sh`, its output on the console. Through `livenet
/// mount` / `unmount`: a new generation.
pub fn install_console_unit(store: &Store, image: &str, name: &str, script: &str) {
    store.ok(&["livenet", "mount", image]);
    let mnt = store.root().join("workdir").join(image).join("mnt");
    let prog = format!("/usr/local/lib/{name}");
    let unit = format!(
        "[Unit]\nDescription=test console marker {name}\nAfter=multi-user.target disklessset-ready.service\n\n\
         [Service]\nType=oneshot\nExecStart=/bin/sh {prog}\n\n\
         [Install]\nWantedBy=multi-user.target\n"
    );
    let write = |rel: &str, text: &str| {
        let p = mnt.join(rel.trim_start_matches('/'));
        fs::create_dir_all(p.parent().expect("a parent")).expect("mkdir in the image");
        fs::write(&p, text).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    };
    write(&prog, &format!("exec >/dev/console 2>&1\n{script}\n"));
    write(&format!("etc/systemd/system/{name}.service"), &unit);
    let wants = mnt.join("etc/systemd/system/multi-user.target.wants");
    fs::create_dir_all(&wants).expect("mkdir wants");
    std::os::unix::fs::symlink(
        format!("/etc/systemd/system/{name}.service"),
        wants.join(format!("{name}.service")),
    )
    .expect("enable the unit");
    store.ok(&["livenet", "unmount", image]);
}

/// `bootset --root STORE ARGS...` (its own binary); its stdout, panicking on failure.
pub fn bootset(store: &Store, args: &[&str]) -> String {
    let o = run(Command::new(env!("CARGO_BIN_EXE_bootset"))
        .arg("--root")
        .arg(store.root())
        .args(args)
        .env_remove("DISKLESSSET_CONFIG"));
    assert!(
        o.status.success(),
        "bootset {args:?} failed: {}{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A prepared `curl` command (`-s`, address, ports, URL) run with its status and
/// local port appended to the body: (status, body, local port).
pub fn curl_report(mut c: Command) -> (u16, String, u16) {
    let o = c
        .args(["-w", "\n%{http_code} %{local_port}"])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let (body, tail) = text.rsplit_once('\n').unwrap_or(("", &text));
    let mut it = tail.split_whitespace();
    let code = it.next().and_then(|c| c.parse().ok()).unwrap_or(0);
    let port = it.next().and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, body.to_string(), port)
}
