//! libvirt domains through `virsh -c URI` (the one runner), each call bounded by
//! coreutils `timeout`: `domstate`, `start`, `destroy`, `reset`, `shutdown`; the boot
//! device is the domain's persistent XML (`dumpxml --inactive`, the `<boot>` elements
//! rewritten, `define`). libvirt has no one-time boot override and no firmware-setup
//! boot: a boot device is set persistently (the result says so), `bios` is refused.
use quick_xml::events::{BytesStart, Event};
use quick_xml::{Reader, Writer};

use crate::error::Result;
use crate::sys::runner::{Cmd, Runner};

use super::{BootDevice, BootRequest, BootdevInfo, Driver, PowerAction, PowerState, Target};

pub struct Libvirt<'a> {
    t: &'a Target,
    runner: &'a Runner,
    domain: String,
}

impl<'a> Libvirt<'a> {
    pub fn new(t: &'a Target, runner: &'a Runner) -> Self {
        Libvirt {
            t,
            runner,
            domain: t.system.clone().unwrap_or_else(|| t.node.clone()),
        }
    }

    fn cmd(&self, args: &[&str]) -> Cmd {
        Cmd::new("timeout")
            .package("coreutils")
            .args(["--kill-after=5", &self.t.timeout_secs().to_string()])
            .args(["virsh", "--quiet", "-c", &self.t.address])
            .args(args)
    }

    fn run(&self, cmd: Cmd) -> Result<String> {
        let mut attempt = 0;
        loop {
            let out = self.runner.run_unchecked(&cmd)?;
            if out.success {
                return Ok(out.stdout_str());
            }
            let timed_out = out.code == Some(124) || out.code == Some(137);
            if timed_out && attempt < self.t.retries {
                attempt += 1;
                continue;
            }
            let last = out
                .tail
                .trim()
                .lines()
                .last()
                .unwrap_or("")
                .trim()
                .to_string();
            return Err(self.t.err(if timed_out {
                format!("timed out after {} s (virsh)", self.t.timeout_secs())
            } else if last.contains("failed to get domain") || last.contains("Domain not found") {
                format!(
                    "has no domain {:?} (set bmc.system to the domain name; `virsh -c {} list --all`)",
                    self.domain, self.t.address
                )
            } else {
                format!("virsh failed: {last}")
            }));
        }
    }

    fn state(&self) -> Result<PowerState> {
        let out = self.run(self.cmd(&["domstate", &self.domain]).read_only())?;
        Ok(parse_domstate(&out))
    }

    fn virsh(&self, verb: &str) -> Result<()> {
        self.run(self.cmd(&[verb, &self.domain])).map(|_| ())
    }

    fn inactive_xml(&self) -> Result<String> {
        self.run(
            self.cmd(&["dumpxml", "--inactive", &self.domain])
                .read_only(),
        )
    }
}

/// `virsh domstate` -> power state.
pub fn parse_domstate(out: &str) -> PowerState {
    match out.trim() {
        "running" | "idle" | "paused" | "in shutdown" | "pmsuspended" | "blocked" => PowerState::On,
        "shut off" | "crashed" => PowerState::Off,
        _ => PowerState::Unknown,
    }
}

impl Driver for Libvirt<'_> {
    fn status(&self) -> Result<PowerState> {
        self.state()
    }

    fn power(&self, action: PowerAction) -> Result<String> {
        let state = self.state()?;
        match (action, state) {
            (PowerAction::On, PowerState::On) => return Ok("already on".into()),
            (PowerAction::On, _) => self.virsh("start")?,
            (PowerAction::Off, PowerState::Off) => return Ok("already off".into()),
            (PowerAction::Off, _) => self.virsh("destroy")?,
            (PowerAction::Cycle, PowerState::Off) => {
                self.virsh("start")?;
                return Ok("was off: started".into());
            }
            (PowerAction::Cycle, _) => {
                self.virsh("destroy")?;
                self.virsh("start")?;
            }
            (PowerAction::Reset, _) => self.virsh("reset")?,
            (PowerAction::Soft, _) => self.virsh("shutdown")?,
        }
        Ok(String::new())
    }

    fn set_bootdev(&self, req: &BootRequest) -> Result<String> {
        let dev = match req.device {
            BootDevice::Pxe => "network",
            BootDevice::Disk => "hd",
            BootDevice::Bios => {
                return Err(self.t.err(
                    "(libvirt) cannot boot a domain into its firmware setup: use pxe or disk",
                ))
            }
        };
        let xml = self.inactive_xml()?;
        let new = set_boot_dev(&xml, dev).map_err(|e| self.t.err(format!("domain XML: {e}")))?;
        if new != xml {
            self.run(
                self.cmd(&["define", "/dev/stdin"])
                    .stdin_bytes(new.into_bytes()),
            )?;
        }
        let mut notes = Vec::new();
        if !req.persistent {
            notes.push("libvirt has no one-time boot: set persistently");
        }
        if req.mode.is_some() {
            notes.push("the firmware is the domain's: mode unchanged");
        }
        Ok(notes.join("; "))
    }

    fn bootdev(&self) -> Result<BootdevInfo> {
        let xml = self.inactive_xml()?;
        let (dev, uefi) = read_boot(&xml).map_err(|e| self.t.err(format!("domain XML: {e}")))?;
        Ok(BootdevInfo {
            device: match dev.as_deref() {
                Some("network") => "pxe".into(),
                Some("hd") => "disk".into(),
                Some(other) => other.to_string(),
                None => "none".into(),
            },
            persistent: Some(true),
            mode: Some(if uefi { "uefi" } else { "legacy" }.into()),
        })
    }
}

fn xml_err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// The domain XML with one `<boot dev=DEV/>` in `<os>` and no per-device `<boot order>`
/// (libvirt refuses both at once); everything else is copied event by event.
pub fn set_boot_dev(xml: &str, dev: &str) -> std::result::Result<String, String> {
    let mut r = Reader::from_str(xml);
    let mut w = Writer::new(Vec::new());
    let mut depth_os: Option<usize> = None;
    let mut depth = 0usize;
    let mut inserted = false;
    let mut skip_boot_end = false;
    loop {
        let ev = r.read_event().map_err(xml_err)?;
        match &ev {
            Event::Eof => break,
            Event::Start(e) => {
                depth += 1;
                if e.name().as_ref() == "os" && depth == 2 {
                    depth_os = Some(depth);
                }
                if e.name().as_ref() == "boot" {
                    // <boot ...></boot>: drop it and its end tag.
                    skip_boot_end = true;
                    continue;
                }
            }
            Event::Empty(e) if e.name().as_ref() == "boot" => continue,
            Event::End(e) => {
                if skip_boot_end && e.name().as_ref() == "boot" {
                    skip_boot_end = false;
                    depth -= 1;
                    continue;
                }
                if e.name().as_ref() == "os" && depth_os == Some(depth) {
                    let mut b = BytesStart::new("boot");
                    b.push_attribute(("dev", dev));
                    w.write_event(Event::Empty(b)).map_err(xml_err)?;
                    inserted = true;
                    depth_os = None;
                }
                depth = depth.saturating_sub(1);
            }
            _ => {}
        }
        w.write_event(ev).map_err(xml_err)?;
    }
    if !inserted {
        return Err("no <os> element in the domain".into());
    }
    String::from_utf8(w.into_inner()).map_err(xml_err)
}

/// The first boot device (`<os><boot dev>`, else the device with `<boot order='1'/>`)
/// and whether the domain boots UEFI firmware.
pub fn read_boot(xml: &str) -> std::result::Result<(Option<String>, bool), String> {
    let mut r = Reader::from_str(xml);
    let mut stack: Vec<String> = Vec::new();
    let mut os_dev = None;
    let mut ordered: Option<(u32, String)> = None;
    let mut uefi = false;
    loop {
        let ev = r.read_event().map_err(xml_err)?;
        let (e, empty) = match &ev {
            Event::Eof => break,
            Event::Start(e) => (e.clone(), false),
            Event::Empty(e) => (e.clone(), true),
            Event::End(_) => {
                stack.pop();
                continue;
            }
            _ => continue,
        };
        let name = e.name().as_ref().to_string();
        let attr = |k: &str| {
            e.try_get_attribute(k).ok().flatten().and_then(|a| {
                a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                    .ok()
                    .map(|v| v.into_owned())
            })
        };
        let parent = stack.last().map(String::as_str);
        match (name.as_str(), parent) {
            ("os", _) if attr("firmware").as_deref() == Some("efi") => uefi = true,
            ("loader", Some("os")) if attr("type").as_deref() == Some("pflash") => uefi = true,
            ("boot", Some("os")) => os_dev = os_dev.or_else(|| attr("dev")),
            ("boot", Some(p)) => {
                if let Some(o) = attr("order").and_then(|o| o.parse::<u32>().ok()) {
                    let dev = match p {
                        "interface" => "network",
                        "disk" => "hd",
                        _ => "other",
                    };
                    if ordered.as_ref().is_none_or(|(best, _)| o < *best) {
                        ordered = Some((o, dev.to_string()));
                    }
                }
            }
            _ => {}
        }
        if !empty {
            stack.push(name);
        }
    }
    Ok((os_dev.or(ordered.map(|(_, d)| d)), uefi))
}

#[cfg(test)]
mod tests {
    use super::*;

    const XML: &str = "<domain type='qemu'>\n  <name>vm1</name>\n  <os>\n    <type arch='x86_64' machine='pc'>hvm</type>\n    <boot dev='hd'/>\n  </os>\n  <devices>\n    <interface type='user'>\n      <mac address='52:54:00:00:00:01'/>\n      <boot order='2'/>\n    </interface>\n  </devices>\n</domain>\n";

    #[test]
    fn boot_order_rewrite_keeps_the_rest() {
        assert_eq!(read_boot(XML).unwrap(), (Some("hd".into()), false));
        let new = set_boot_dev(XML, "network").unwrap();
        assert!(new.contains("<boot dev=\"network\"/>"), "{new}");
        assert!(!new.contains("order="), "{new}");
        assert!(!new.contains("dev='hd'"), "{new}");
        assert!(new.contains("<mac address='52:54:00:00:00:01'/>"), "{new}");
        assert_eq!(read_boot(&new).unwrap(), (Some("network".into()), false));
        // per-device order only (what sushy-tools writes)
        let per_dev = XML
            .replace("    <boot dev='hd'/>\n", "")
            .replace("order='2'", "order='1'");
        assert_eq!(read_boot(&per_dev).unwrap().0.as_deref(), Some("network"));
        let efi = XML.replace("<os>", "<os firmware='efi'>");
        assert!(read_boot(&efi).unwrap().1);
        assert!(set_boot_dev("<domain><name>x</name></domain>", "hd").is_err());
    }

    #[test]
    fn domstate_words() {
        assert_eq!(parse_domstate("running\n"), PowerState::On);
        assert_eq!(parse_domstate("shut off\n"), PowerState::Off);
        assert_eq!(parse_domstate("weird\n"), PowerState::Unknown);
    }
}
