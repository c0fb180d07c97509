//! Power and boot-device control against real emulators, each started by its test:
//! libvirt (libvirtd + a QEMU TCG domain), virtualbmc (IPMI in front of that domain),
//! sushy-tools (Redfish: its fake driver for many systems, its libvirt driver for a
//! real VM). The emulators come from scripts/install-deps.sh (Debian) and
//! scripts/install-emulators.sh (PyPI, a venv in $DLS_EMULATORS); missing ones fail the
//! test, never skip it.
//!
//! The end-to-end test boots a libvirt domain whose NIC has the inventory's MAC through
//! iPXE into a livenet image, `bootset --reboot` driving it through Redfish, then
//! through IPMI. The domain's NIC is a libvirt `<interface type='udp'>` whose other end
//! is a QEMU user-mode network (slirp) in the same QEMU process, joined by a QEMU hub:
//! slirp answers DHCP with the boot server's URL as bootfile and maps 10.0.2.2 to the
//! host's loopback, where `disklessset serve` listens. All traffic stays on 127.0.0.1.
mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{assert_one_line_error, Store};

const VIRSH_URI: &str = "qemu:///system";

fn emulators() -> PathBuf {
    let venv = PathBuf::from(
        std::env::var("DLS_EMULATORS").unwrap_or_else(|_| "/opt/disklessset-emulators".into()),
    );
    assert!(
        venv.join("bin/sushy-emulator").is_file() && venv.join("bin/vbmcd").is_file(),
        "the BMC emulators are missing in {}: run scripts/install-emulators.sh",
        venv.display()
    );
    venv
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A process this test started, in its own process group; the group is killed on drop
/// (vbmcd forks one child per BMC).
struct Proc {
    child: Child,
}

impl Proc {
    fn spawn(cmd: &mut Command, log: &Path) -> Proc {
        let f = std::fs::File::create(log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Proc { child }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let pgid = self.child.id() as i32;
        // SAFETY: kill(2) on the process group this test created; no memory involved.
        unsafe {
            libc::kill(-pgid, libc::SIGTERM);
        }
        std::thread::sleep(Duration::from_millis(300));
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

fn tcp_up(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

fn virsh(args: &[&str]) -> Output {
    Command::new("virsh")
        .args(["-c", VIRSH_URI])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("virsh (Debian libvirt-clients)")
}

/// libvirtd and virtlogd, started without systemd when they do not run (left running:
/// other tests of this file share them).
fn libvirtd() {
    static UP: OnceLock<()> = OnceLock::new();
    UP.get_or_init(|| {
        if virsh(&["version"]).status.success() {
            return;
        }
        for d in ["virtlogd", "libvirtd"] {
            let st = Command::new(d)
                .arg("-d")
                .status()
                .unwrap_or_else(|e| panic!("cannot start {d} (Debian libvirt-daemon-system): {e}"));
            assert!(st.success(), "{d} -d failed");
        }
        wait_until("libvirtd", Duration::from_secs(30), || {
            virsh(&["version"]).status.success()
        });
    });
}

/// A libvirt domain, destroyed and undefined on drop.
struct Domain {
    name: String,
}

impl Domain {
    fn define(name: &str, xml: &str, dir: &Path) -> Domain {
        libvirtd();
        let _ = virsh(&["destroy", name]);
        let _ = virsh(&["undefine", name]);
        let f = dir.join(format!("{name}.xml"));
        std::fs::write(&f, xml).unwrap();
        let o = virsh(&["define", f.to_str().unwrap()]);
        assert!(
            o.status.success(),
            "virsh define: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        Domain { name: name.into() }
    }

    fn state(&self) -> String {
        String::from_utf8_lossy(&virsh(&["domstate", &self.name]).stdout)
            .trim()
            .to_string()
    }

    fn uuid(&self) -> String {
        String::from_utf8_lossy(&virsh(&["domuuid", &self.name]).stdout)
            .trim()
            .to_string()
    }

    fn inactive_xml(&self) -> String {
        String::from_utf8_lossy(&virsh(&["dumpxml", "--inactive", &self.name]).stdout).into_owned()
    }
}

impl Drop for Domain {
    fn drop(&mut self) {
        let _ = virsh(&["destroy", &self.name]);
        let _ = virsh(&["undefine", &self.name]);
    }
}

/// A small TCG domain: one NIC with `mac`; `net` is its network XML (udp + slirp for
/// the boot test, a plain user NIC otherwise) and `extra` its QEMU arguments.
fn domain_xml(
    name: &str,
    mac: &str,
    memory_mib: u32,
    serial: &Path,
    net: &str,
    extra: &[String],
) -> String {
    let args: String = extra
        .iter()
        .map(|a| format!("    <qemu:arg value='{a}'/>\n"))
        .collect();
    format!(
        "<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>{name}</name>
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu>2</vcpu>
  <cpu mode='maximum'/>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <on_reboot>destroy</on_reboot>
  <devices>
    <interface type='{net}'><mac address='{mac}'/><model type='virtio'/></interface>
    <serial type='file'><source path='{}'/></serial>
  </devices>
  <qemu:commandline>
{args}  </qemu:commandline>
</domain>
",
        serial.display()
    )
}

fn write_secrets(s: &Store, text: &str, mode: u32) -> PathBuf {
    let p = s.root().join("bmc-secrets.yml");
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

fn nodes(s: &Store, text: &str) {
    std::fs::write(s.root().join("nodes.yml"), text).unwrap();
}

fn out(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json(s: &Store, args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.push("--json");
    let o = s.run(&a);
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {}", out(&o)))
}

fn state_of(s: &Store, set: &str) -> Vec<(String, String)> {
    let v = json(s, &["power", "status", set]);
    v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["node"].as_str().unwrap().to_string(),
                n["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Where a password must never appear: stdout and stderr of a run, the log file.
fn assert_no_leak(s: &Store, password: &str, runs: &[Output]) {
    for o in runs {
        assert!(
            !out(o).contains(password),
            "password leaked in output: {}",
            out(o)
        );
    }
    let log = std::fs::read_to_string(s.root().join("log/disklessset.log")).unwrap_or_default();
    assert!(!log.is_empty(), "no log file written");
    assert!(!log.contains(password), "password leaked in the log file");
    let grep = Command::new("grep")
        .args(["-r", "-l", "-a", "-F", password])
        .arg(s.root().join("www"))
        .output()
        .unwrap();
    assert!(
        grep.stdout.is_empty(),
        "password in the web root: {}",
        out(&grep)
    );
}

// ------------------------------------------------------------------ Redfish (sushy-tools)

struct Sushy {
    _proc: Proc,
    port: u16,
    log: PathBuf,
}

/// sushy-emulator with `config` (Python) appended to the listen settings.
fn sushy(dir: &Path, tag: &str, config: &str, tls: Option<(&Path, &Path)>) -> Sushy {
    let port = free_port();
    let conf = dir.join(format!("sushy-{tag}.conf"));
    let mut text = format!(
        "SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'\nSUSHY_EMULATOR_LISTEN_PORT = {port}\n{config}\n"
    );
    if let Some((cert, key)) = tls {
        text.push_str(&format!(
            "SUSHY_EMULATOR_SSL_CERT = '{}'\nSUSHY_EMULATOR_SSL_KEY = '{}'\n",
            cert.display(),
            key.display()
        ));
    }
    std::fs::write(&conf, text).unwrap();
    let log = dir.join(format!("sushy-{tag}.log"));
    // The fake driver keeps its systems' state in TMPDIR/sushy-emulator: one per test.
    let tmp = dir.join(format!("sushy-{tag}.tmp"));
    std::fs::create_dir_all(&tmp).unwrap();
    let p = Proc::spawn(
        Command::new(emulators().join("bin/sushy-emulator"))
            .arg("--config")
            .arg(&conf)
            .env("TMPDIR", &tmp),
        &log,
    );
    wait_until("sushy-emulator", Duration::from_secs(30), || tcp_up(port));
    Sushy {
        _proc: p,
        port,
        log,
    }
}

fn fake_systems(names: &[String]) -> String {
    let items: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            format!(
                "{{'uuid': '{}', 'name': '{n}', 'power_state': 'Off', 'nics': [{{'mac': '52:54:00:00:10:{:02x}', 'ip': '10.0.0.{}'}}]}}",
                uuid_of(i + 1),
                i + 1,
                i + 1
            )
        })
        .collect();
    format!(
        "SUSHY_EMULATOR_FAKE_DRIVER = True\nSUSHY_EMULATOR_FAKE_SYSTEMS = [{}]\n",
        items.join(", ")
    )
}

fn uuid_of(i: usize) -> String {
    format!("00000000-0000-0000-0000-{i:012}")
}

/// A CA and a server certificate for 127.0.0.1 signed by it (openssl).
fn make_tls(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let p = |f: &str| dir.join(f);
    let run = |args: &[&str]| {
        let o = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(o.status.success(), "openssl {args:?}: {}", out(&o));
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=dls test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "bmc.key",
        "-out",
        "bmc.csr",
    ]);
    std::fs::write(
        p("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "bmc.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "bmc.pem",
    ]);
    (p("ca.pem"), p("bmc.pem"), p("bmc.key"))
}

fn htpasswd(dir: &Path, user: &str, password: &str) -> PathBuf {
    let o = Command::new(emulators().join("bin/python"))
        .args([
            "-c",
            "import bcrypt,sys; print(bcrypt.hashpw(sys.argv[1].encode(), bcrypt.gensalt(rounds=4)).decode())",
            password,
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", out(&o));
    let f = dir.join("htpasswd");
    std::fs::write(
        &f,
        format!("{user}:{}", String::from_utf8_lossy(&o.stdout).trim()),
    )
    .unwrap();
    f
}

#[test]
fn redfish_driver_against_sushy_tools_over_https() {
    let s = Store::new();
    let dir = s.root().to_path_buf();
    let (ca, cert, key) = make_tls(&dir);
    const PW: &str = "rf-Secr3t-9431";
    let auth = htpasswd(&dir, "admin", PW);
    let sushy = sushy(
        &dir,
        "rf",
        &format!(
            "{}SUSHY_EMULATOR_AUTH_FILE = '{}'\n",
            fake_systems(&["r1".into()]),
            auth.display()
        ),
        Some((&cert, &key)),
    );
    let inv = |extra: &str| {
        nodes(
            &s,
            &format!(
                "r1: {{bmc: {{driver: redfish, address: '127.0.0.1:{}', user: admin{extra}}}}}\n",
                sushy.port
            ),
        )
    };
    // https:// is implied; the emulator's certificate is not in the system store.
    inv("");
    write_secrets(&s, &format!("r1: {{password: '{PW}'}}\n"), 0o600);
    let e = s.fails(&["power", "status", "r1"]);
    assert!(e.contains("r1"), "{e}");
    let o = s.run(&["power", "status", "r1"]);
    let text = out(&o);
    assert!(
        text.contains("TLS failed") && text.contains("bmc.ca_file"),
        "{text}"
    );
    // With the CA that signed it: verified.
    inv(&format!(", ca_file: '{}'", ca.display()));
    // No password: contacted without credentials (with a warning), refused by the BMC.
    write_secrets(&s, "other: x\n", 0o600);
    let o = s.run(&["power", "status", "r1"]);
    let text = out(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(text.contains("no BMC credentials for r1"), "{text}");
    assert!(text.contains("401"), "{text}");
    write_secrets(&s, &format!("r1: {{password: '{PW}'}}\n"), 0o600);

    assert_eq!(state_of(&s, "r1"), vec![("r1".into(), "off".into())]);
    let dry = s.run(&["power", "on", "r1", "--dry-run"]);
    let text = out(&dry);
    assert!(dry.status.success(), "{text}");
    assert!(
        text.contains(&format!("POST https://127.0.0.1:{}/redfish/v1/Systems/{}/Actions/ComputerSystem.Reset {{\"ResetType\":\"On\"}} (Basic auth: user admin, password ***)", sushy.port, uuid_of(1))),
        "{text}"
    );
    assert_eq!(
        state_of(&s, "r1"),
        vec![("r1".into(), "off".into())],
        "dry run changed nothing"
    );
    // The fake driver applies a power change 1 to 11 s later: --wait polls for it.
    let on = s.run(&["-d", "power", "on", "r1", "--wait", "--json"]);
    assert!(on.status.success(), "{}", out(&on));
    let v: serde_json::Value = serde_json::from_slice(&on.stdout).unwrap();
    assert_eq!(v["nodes"][0]["state"], "on");
    assert_eq!(state_of(&s, "r1"), vec![("r1".into(), "on".into())]);

    let pxe = s.run(&["bootdev", "pxe", "r1"]);
    assert!(
        out(&pxe).contains("r1: next boot pxe once"),
        "{}",
        out(&pxe)
    );
    let v = json(&s, &["bootdev", "status", "r1"]);
    assert_eq!(v["nodes"][0]["bootdev"]["device"], "pxe", "{v}");
    s.ok(&["bootdev", "disk", "r1", "--persistent"]);
    let v = json(&s, &["bootdev", "status", "r1"]);
    assert_eq!(v["nodes"][0]["bootdev"]["device"], "disk", "{v}");
    // A target the BMC does not list is refused naming what it offers.
    let o = s.run(&["bootdev", "bios", "r1"]);
    assert!(
        out(&o).contains("does not offer boot target BiosSetup (it offers Pxe"),
        "{}",
        out(&o)
    );

    // Off is destructive: refused without a terminal unless --yes.
    let e = s.fails(&["power", "off", "r1"]);
    assert_one_line_error(&e, "--yes");
    let off = s.run(&["power", "off", "r1", "--yes", "--wait"]);
    assert!(out(&off).contains("r1: off"), "{}", out(&off));
    assert_eq!(state_of(&s, "r1"), vec![("r1".into(), "off".into())]);
    let j = s.run(&["power", "status", "r1", "--json", "-d"]);
    assert_no_leak(&s, PW, &[dry, on, off, j, pxe]);
    let sushy_log = std::fs::read_to_string(&sushy.log).unwrap();
    assert!(
        sushy_log.contains("PATCH /redfish/v1/Systems/"),
        "{sushy_log}"
    );
}

#[test]
fn fanout_twenty_systems_and_a_dead_bmc() {
    let s = Store::new();
    let dir = s.root().to_path_buf();
    let names: Vec<String> = (1..=20).map(|i| format!("e{i:02}")).collect();
    let sushy = sushy(&dir, "fan", &fake_systems(&names), None);
    // A BMC that accepts the connection and never answers.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    let mut inv =
        String::from("groups:\n  e: {bmc: {driver: redfish, address: 'http://127.0.0.1:%P'}}\n")
            .replace("%P", &sushy.port.to_string());
    for (i, n) in names.iter().enumerate() {
        if n == "e07" {
            inv.push_str(&format!(
                "{n}: {{groups: [e], bmc: {{address: 'http://127.0.0.1:{dead_port}', system: '{}'}}}}\n",
                uuid_of(i + 1)
            ));
        } else {
            inv.push_str(&format!(
                "{n}: {{groups: [e], bmc: {{system: '{}'}}}}\n",
                uuid_of(i + 1)
            ));
        }
    }
    nodes(&s, &inv);
    let t = Instant::now();
    let o = s.run(&[
        "power",
        "status",
        "e[01-20]",
        "--fanout",
        "5",
        "--timeout",
        "2",
        "--retries",
        "0",
    ]);
    let took = t.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{text}{err}");
    assert!(text.contains("e[01-06,08-20]: off\n"), "{text}");
    assert!(
        text.contains(&format!(
            "e07: error: BMC http://127.0.0.1:{dead_port} timed out after 2 s"
        )),
        "{text}"
    );
    assert!(err.contains("1 of 20 nodes failed: e07"), "{err}");
    eprintln!("power status of 20 nodes, one dead, fan-out 5: {took:.1}s");
    let v = json(
        &s,
        &[
            "power",
            "status",
            "e[01-20]",
            "--fanout",
            "5",
            "--timeout",
            "2",
            "--retries",
            "0",
        ],
    );
    let nodes = v["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 20);
    assert_eq!(
        nodes
            .iter()
            .filter(|n| n["ok"] == true && n["state"] == "off")
            .count(),
        19
    );
    let e07 = nodes.iter().find(|n| n["node"] == "e07").unwrap();
    assert_eq!(e07["state"], "unknown");
    assert!(
        e07["error"].as_str().unwrap().contains("timed out"),
        "{e07}"
    );
    drop(dead);
}

#[test]
fn staged_reboot_sends_power_requests_in_groups() {
    let s = Store::new();
    let dir = s.root().to_path_buf();
    let names: Vec<String> = (1..=4).map(|i| format!("s{i}")).collect();
    let sushy = sushy(&dir, "stage", &fake_systems(&names), None);
    let mut inv = format!(
        "groups:\n  s: {{bmc: {{driver: redfish, address: 'http://127.0.0.1:{}'}}}}\n",
        sushy.port
    );
    for (i, n) in names.iter().enumerate() {
        inv.push_str(&format!(
            "{n}: {{mac: '52:54:00:00:20:{:02x}', groups: [s], bmc: {{system: '{}'}}}}\n",
            i + 1,
            uuid_of(i + 1)
        ));
    }
    nodes(&s, &inv);
    let o = Command::new(env!("CARGO_BIN_EXE_bootset"))
        .arg("--root")
        .arg(s.root())
        .args([
            "-n",
            "s[1-4]",
            "-b",
            "disk",
            "--reboot",
            "--batch",
            "2",
            "--interval",
            "3",
            "--json",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", out(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["assign"]["written"], 4, "{v}");
    let at: Vec<f64> = v["reboot"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            assert!(
                n["outcome"]
                    .as_str()
                    .unwrap()
                    .contains("next boot pxe once, powered on"),
                "{n}"
            );
            n["at_secs"].as_f64().unwrap()
        })
        .collect();
    assert!(at[1] - at[0] < 1.0 && at[3] - at[2] < 1.0, "{at:?}");
    assert!((2.9..4.5).contains(&(at[2] - at[0])), "{at:?}");
    // The emulator's own log (werkzeug, 1 s resolution): two resets, then two more 3 s later.
    let log = std::fs::read_to_string(&sushy.log).unwrap();
    let times: Vec<i64> = log
        .lines()
        .filter(|l| l.contains("POST /redfish/v1/Systems/") && l.contains("ComputerSystem.Reset"))
        .map(|l| {
            // `127.0.0.1 - - [02/Dec/2026 14:01:04] "POST ...`
            let ts = l
                .split('[')
                .nth(1)
                .and_then(|r| r.split(']').next())
                .unwrap();
            let hms: Vec<i64> = ts
                .split(' ')
                .nth(1)
                .unwrap()
                .split(':')
                .map(|x| x.parse().unwrap())
                .collect();
            hms[0] * 3600 + hms[1] * 60 + hms[2]
        })
        .collect();
    assert_eq!(times.len(), 4, "{log}");
    assert!(
        times[1] - times[0] <= 1 && times[3] - times[2] <= 1,
        "{times:?}\n{log}"
    );
    assert!((2..=4).contains(&(times[2] - times[1])), "{times:?}\n{log}");
    let patches = log.matches("PATCH /redfish/v1/Systems/").count();
    assert_eq!(patches, 4, "one boot override per node: {log}");
}

// ------------------------------------------------------------------ libvirt, IPMI (virtualbmc)

struct Vbmc {
    _proc: Proc,
    port: u16,
}

/// vbmcd with its own config dir and control port, one BMC for `domain` on `port`.
fn vbmc(dir: &Path, domain: &str, user: &str, password: &str) -> Vbmc {
    let venv = emulators();
    let conf_dir = dir.join("vbmc");
    std::fs::create_dir_all(conf_dir.join("conf")).unwrap();
    let conf = conf_dir.join("virtualbmc.conf");
    std::fs::write(
        &conf,
        format!(
            "[default]\nconfig_dir = {}\npid_file = {}\nserver_port = {}\n[log]\nlogfile = {}\n",
            conf_dir.join("conf").display(),
            conf_dir.join("vbmcd.pid").display(),
            free_port(),
            conf_dir.join("vbmc.log").display()
        ),
    )
    .unwrap();
    let p = Proc::spawn(
        Command::new(venv.join("bin/vbmcd"))
            .arg("--foreground")
            .env("VIRTUALBMC_CONFIG", &conf),
        &conf_dir.join("vbmcd.out"),
    );
    let port = free_udp_port();
    let vbmc = |args: &[&str]| {
        Command::new(venv.join("bin/vbmc"))
            .args(args)
            .env("VIRTUALBMC_CONFIG", &conf)
            .output()
            .unwrap()
    };
    let port_s = port.to_string();
    wait_until("vbmcd", Duration::from_secs(30), || {
        vbmc(&["list"]).status.success()
    });
    let o = vbmc(&[
        "add",
        domain,
        "--port",
        &port_s,
        "--username",
        user,
        "--password",
        password,
        "--address",
        "127.0.0.1",
    ]);
    assert!(o.status.success(), "vbmc add: {}", out(&o));
    let o = vbmc(&["start", domain]);
    assert!(o.status.success(), "vbmc start: {}", out(&o));
    Vbmc { _proc: p, port }
}

fn test_dir(s: &Store) -> PathBuf {
    // libvirt's QEMU runs as libvirt-qemu: what it reads must be reachable.
    std::fs::set_permissions(s.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
    s.root().to_path_buf()
}

#[test]
fn libvirt_driver_status_on_bootdev_off() {
    let s = Store::new();
    let dir = test_dir(&s);
    let name = format!("dls-lv-{}", std::process::id());
    let dom = Domain::define(
        &name,
        &domain_xml(
            &name,
            "52:54:00:00:30:01",
            128,
            &dir.join("lv.serial"),
            "user",
            &[],
        ),
        &dir,
    );
    nodes(
        &s,
        &format!("lv1: {{mac: '52:54:00:00:30:01', bmc: {{driver: libvirt, system: {name}}}}}\n"),
    );
    assert_eq!(state_of(&s, "lv1"), vec![("lv1".into(), "off".into())]);
    let v = json(&s, &["bootdev", "status", "lv1"]);
    assert_eq!(v["nodes"][0]["bootdev"]["device"], "disk", "{v}");
    let o = s.run(&["bootdev", "pxe", "lv1"]);
    assert!(
        out(&o)
            .contains("lv1: next boot pxe once (libvirt has no one-time boot: set persistently)"),
        "{}",
        out(&o)
    );
    assert!(
        dom.inactive_xml().contains("<boot dev='network'/>"),
        "{}",
        dom.inactive_xml()
    );
    let v = json(&s, &["bootdev", "status", "lv1"]);
    assert_eq!(v["nodes"][0]["bootdev"]["device"], "pxe", "{v}");
    let o = s.run(&["power", "on", "lv1", "--wait"]);
    assert!(out(&o).contains("lv1: on"), "{}", out(&o));
    assert_eq!(dom.state(), "running");
    assert_eq!(state_of(&s, "lv1"), vec![("lv1".into(), "on".into())]);
    let dry = s.run(&["power", "off", "lv1", "--dry-run"]);
    assert!(
        out(&dry).contains(&format!("virsh --quiet -c qemu:///system destroy {name}")),
        "{}",
        out(&dry)
    );
    assert_eq!(dom.state(), "running", "dry run changed nothing");
    s.ok(&["power", "off", "lv1", "--yes"]);
    assert_eq!(state_of(&s, "lv1"), vec![("lv1".into(), "off".into())]);
    assert_eq!(dom.state(), "shut off");
}

#[test]
fn ipmi_driver_against_virtualbmc_and_secrets() {
    let s = Store::new();
    let dir = test_dir(&s);
    let name = format!("dls-ipmi-{}", std::process::id());
    let dom = Domain::define(
        &name,
        &domain_xml(
            &name,
            "52:54:00:00:40:01",
            128,
            &dir.join("ipmi.serial"),
            "user",
            &[],
        ),
        &dir,
    );
    const PW: &str = "ipmi-Pa55-7720";
    let bmc = vbmc(&dir, &name, "admin", PW);
    nodes(
        &s,
        &format!(
            "i1: {{bmc: {{driver: ipmi, address: '127.0.0.1:{}', user: admin}}}}\n",
            bmc.port
        ),
    );
    // A secrets file others can read is refused before any BMC is contacted.
    write_secrets(&s, &format!("i1: '{PW}'\n"), 0o644);
    let e = s.fails(&["power", "status", "i1"]);
    assert_one_line_error(&e, "mode 0644");
    assert!(e.contains("chmod 600") && !e.contains(PW), "{e}");
    write_secrets(&s, &format!("'*': {{password: '{PW}'}}\n"), 0o600);

    assert_eq!(state_of(&s, "i1"), vec![("i1".into(), "off".into())]);
    // virtualbmc reads the boot device from the live domain: set and read it while off.
    let dry = s.run(&["bootdev", "pxe", "i1", "--dry-run", "-d"]);
    assert!(
        out(&dry).contains(&format!(
            "IPMI_PASSWORD=*** ipmitool -I lanplus -H 127.0.0.1 -p {} -U admin -E",
            bmc.port
        )),
        "{}",
        out(&dry)
    );
    assert!(
        dom.inactive_xml().contains("<boot dev='hd'/>"),
        "dry run changed nothing"
    );
    let pxe = s.run(&["-d", "bootdev", "pxe", "i1"]);
    assert!(
        out(&pxe).contains("i1: next boot pxe once"),
        "{}",
        out(&pxe)
    );
    let v = json(&s, &["bootdev", "status", "i1"]);
    assert_eq!(v["nodes"][0]["bootdev"]["device"], "pxe", "{v}");
    assert!(dom.inactive_xml().contains("<boot dev='network'/>"));
    s.ok(&["bootdev", "disk", "i1"]);
    let v = json(&s, &["bootdev", "status", "i1"]);
    assert_eq!(v["nodes"][0]["bootdev"]["device"], "disk", "{v}");

    let on = s.run(&["power", "on", "i1", "--wait", "--json"]);
    assert!(on.status.success(), "{}", out(&on));
    assert_eq!(state_of(&s, "i1"), vec![("i1".into(), "on".into())]);
    assert_eq!(dom.state(), "running");
    let off = s.run(&["power", "off", "i1", "--yes", "--wait"]);
    assert!(out(&off).contains("i1: off"), "{}", out(&off));
    assert_eq!(state_of(&s, "i1"), vec![("i1".into(), "off".into())]);
    // A wrong password is the BMC's refusal, naming it.
    write_secrets(&s, "i1: wrong\n", 0o600);
    let o = s.run(&["power", "status", "i1", "--timeout", "3", "--retries", "0"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(
        out(&o).contains(&format!("i1: error: BMC 127.0.0.1:{}", bmc.port)),
        "{}",
        out(&o)
    );
    assert_no_leak(&s, PW, &[dry, pxe, on, off, o]);
}

// ------------------------------------------------------------------ end to end

/// One livenet image, built once, then booted by a libvirt domain through iPXE, the
/// power and boot device driven by `bootset --reboot`: through Redfish (sushy-tools'
/// libvirt driver), then through IPMI (virtualbmc).
#[test]
fn bootset_reboot_boots_a_vm_through_redfish_then_ipmi() {
    let s = Store::new();
    let dir = test_dir(&s);
    s.core_image("vmimg", &[]);
    let srv_port = free_port();
    let mut serve = s
        .cmd(&["serve", "--listen", &format!("127.0.0.1:{srv_port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("disklessset serve", Duration::from_secs(10), || {
        tcp_up(srv_port)
    });

    let name = format!("dls-e2e-{}", std::process::id());
    let mac = "52:54:00:00:50:01";
    let (a, b) = (free_udp_port(), free_udp_port());
    let serial = dir.join("vm1.serial");
    let sercon = dir.join("sercon");
    std::fs::write(&sercon, [0xf8u8, 0x03]).unwrap();
    std::fs::set_permissions(&sercon, std::fs::Permissions::from_mode(0o644)).unwrap();
    let extra: Vec<String> = [
        "-netdev",
        &format!("user,id=slirp0,bootfile=http://10.0.2.2:{srv_port}/boot.ipxe"),
        "-netdev",
        &format!("socket,id=sk0,udp=127.0.0.1:{b},localaddr=127.0.0.1:{a}"),
        "-netdev",
        "hubport,id=hp0,hubid=0,netdev=slirp0",
        "-netdev",
        "hubport,id=hp1,hubid=0,netdev=sk0",
        "-fw_cfg",
        &format!("name=etc/sercon-port,file={}", sercon.display()),
    ]
    .iter()
    .map(|x| x.to_string())
    .collect();
    let xml = domain_xml(&name, mac, 2048, &serial, "udp", &extra).replace(
        &format!("<mac address='{mac}'/>"),
        &format!("<mac address='{mac}'/><source address='127.0.0.1' port='{a}'><local address='127.0.0.1' port='{b}'/></source>"),
    );
    let dom = Domain::define(&name, &xml, &dir);
    let marker = "disklessset: image vmimg booted";
    let boot = |via: &str| {
        assert_eq!(dom.state(), "shut off");
        let _ = std::fs::remove_file(&serial);
        let t = Instant::now();
        let o = Command::new(env!("CARGO_BIN_EXE_bootset"))
            .arg("--root")
            .arg(s.root())
            .args(["-n", "vm1", "-b", "diskless", "-i", "vmimg", "--reboot"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = out(&o);
        assert!(o.status.success(), "{via}: {text}");
        assert!(
            text.contains("vm1: next boot pxe once, powered on"),
            "{via}: {text}"
        );
        let limit = Duration::from_secs(480);
        while !std::fs::read_to_string(&serial)
            .unwrap_or_default()
            .contains(marker)
        {
            if t.elapsed() > limit {
                let log = std::fs::read_to_string(&serial).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(60).collect();
                panic!(
                    "{via}: no {marker:?} after {} s (domain {}); serial tail:\n{}",
                    limit.as_secs(),
                    dom.state(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        let log = std::fs::read_to_string(&serial).unwrap_or_default();
        assert!(
            log.contains("disklessset: vm1 boots diskless image vmimg"),
            "{via}: chain not followed"
        );
        eprintln!(
            "{via}: bootset --reboot to marker {:.1}s",
            t.elapsed().as_secs_f64()
        );
        let _ = virsh(&["destroy", &name]);
        wait_until("domain off", Duration::from_secs(30), || {
            dom.state() == "shut off"
        });
    };

    // Redfish: sushy-tools' libvirt driver, only this domain.
    let sushy = sushy(
        &dir,
        "e2e",
        &format!(
            "SUSHY_EMULATOR_LIBVIRT_URI = '{VIRSH_URI}'\nSUSHY_EMULATOR_ALLOWED_INSTANCES = ['{}']\n",
            dom.uuid()
        ),
        None,
    );
    nodes(
        &s,
        &format!("vm1: {{mac: '{mac}', bmc: {{driver: redfish, address: 'http://127.0.0.1:{}', system: {name}}}}}\n", sushy.port),
    );
    boot("redfish");
    let log = std::fs::read_to_string(&sushy.log).unwrap();
    assert!(log.contains("PATCH /redfish/v1/Systems/"), "{log}");
    assert!(log.contains("Actions/ComputerSystem.Reset"), "{log}");

    // IPMI: virtualbmc; the boot device back to the disk first, so only bootset's
    // override can make the VM boot from the network.
    let reset = virsh(&["dumpxml", "--inactive", &name]);
    let xml_now = String::from_utf8_lossy(&reset.stdout)
        .replace("<boot order='1'/>", "")
        .replace("<boot dev='network'/>", "<boot dev='hd'/>");
    let f = dir.join("reset.xml");
    std::fs::write(&f, xml_now).unwrap();
    assert!(virsh(&["define", f.to_str().unwrap()]).status.success());
    const PW: &str = "e2e-ipmi-pw";
    let bmc = vbmc(&dir, &name, "admin", PW);
    write_secrets(&s, &format!("vm1: {{password: '{PW}'}}\n"), 0o600);
    nodes(
        &s,
        &format!(
            "vm1: {{mac: '{mac}', bmc: {{driver: ipmi, address: '127.0.0.1:{}', user: admin}}}}\n",
            bmc.port
        ),
    );
    boot("ipmi");
    let _ = serve.kill();
    let _ = serve.wait();
}
