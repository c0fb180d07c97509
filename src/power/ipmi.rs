//! IPMI 2.0 over LAN through `ipmitool -I lanplus` (the one runner): `chassis power`,
//! `chassis bootdev DEV [options=efiboot,persistent]`, `chassis bootparam get 5` to read
//! the override back. The password reaches ipmitool through the environment
//! (`IPMI_PASSWORD` with `-E`), never argv; the runner shows it as `***`.
use crate::error::{Error, Result};
use crate::sys::runner::{Cmd, Runner};

use super::{
    BootDevice, BootMode, BootRequest, BootdevInfo, Driver, PowerAction, PowerState, Target,
};

/// `HOST`, `HOST:PORT`, `[V6]:PORT` -> (host, port); the IPMI port defaults to 623.
pub fn host_port(a: &str) -> std::result::Result<(String, u16), String> {
    let port_of = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("has a bad port {p:?}"))
    };
    if let Some(rest) = a.strip_prefix('[') {
        let (h, p) = rest
            .split_once(']')
            .ok_or_else(|| "has an unclosed [".to_string())?;
        let port = match p.strip_prefix(':') {
            Some(p) => port_of(p)?,
            None if p.is_empty() => 623,
            None => return Err("has text after ]".into()),
        };
        return Ok((h.to_string(), port));
    }
    match a.matches(':').count() {
        0 => Ok((a.to_string(), 623)),
        1 => {
            let (h, p) = a.split_once(':').unwrap_or((a, ""));
            Ok((h.to_string(), port_of(p)?))
        }
        // A bare IPv6 address.
        _ => Ok((a.to_string(), 623)),
    }
    .and_then(|(h, p)| {
        if h.is_empty() {
            Err("has no host".into())
        } else {
            Ok((h, p))
        }
    })
}

pub struct Ipmi<'a> {
    t: &'a Target,
    runner: &'a Runner,
    host: String,
    port: u16,
}

impl<'a> Ipmi<'a> {
    pub fn new(t: &'a Target, runner: &'a Runner) -> Result<Self> {
        let (host, port) = host_port(&t.address).map_err(|e| t.err(e))?;
        Ok(Ipmi {
            t,
            runner,
            host,
            port,
        })
    }

    /// `ipmitool -I lanplus -H HOST -p PORT [-U USER] [-E] -N 1 -R T ARGS`: one
    /// retransmission a second for the timeout's seconds.
    fn cmd(&self, args: &[&str]) -> Cmd {
        let mut c = Cmd::new("ipmitool").package("ipmitool").args([
            "-I",
            "lanplus",
            "-H",
            &self.host,
            "-p",
            &self.port.to_string(),
        ]);
        if let Some(u) = &self.t.user {
            c = c.arg("-U").arg(u);
        }
        if let Some(pw) = &self.t.password {
            c = c.arg("-E").secret_env("IPMI_PASSWORD", pw.expose());
        }
        c.args(["-N", "1", "-R", &self.t.timeout_secs().to_string()])
            .args(args)
    }

    /// Runs, retrying when no session could be made; errors name the BMC.
    fn run(&self, cmd: Cmd) -> Result<String> {
        let mut attempt = 0;
        loop {
            let out = self.runner.run_unchecked(&cmd)?;
            if out.success {
                return Ok(out.stdout_str());
            }
            let tail = out.tail.trim().to_string();
            let no_session = tail.contains("Unable to establish")
                || tail.contains("timeout")
                || tail.contains("No response");
            if no_session && attempt < self.t.retries {
                attempt += 1;
                tracing::info!(target: "run", "{}: no answer, retry {attempt}", self.t.address);
                continue;
            }
            let last = tail.lines().last().unwrap_or("").trim();
            let msg = if no_session {
                format!(
                    "timed out after {} s ({last}: check the address, the user and the password)",
                    self.t.timeout_secs()
                )
            } else if last.is_empty() {
                format!("ipmitool failed ({})", exit_text(out.code))
            } else {
                format!("ipmitool failed: {last}")
            };
            return Err(self.t.err(msg));
        }
    }
}

fn exit_text(code: Option<i32>) -> String {
    match code {
        Some(c) => format!("exit status {c}"),
        None => "killed by a signal".into(),
    }
}

/// `Chassis Power is on` -> on.
pub fn parse_power(out: &str) -> PowerState {
    let l = out.to_ascii_lowercase();
    if l.contains("power is on") {
        PowerState::On
    } else if l.contains("power is off") {
        PowerState::Off
    } else {
        PowerState::Unknown
    }
}

/// The output of `chassis bootparam get 5`.
pub fn parse_bootparam(out: &str) -> BootdevInfo {
    let mut device = "none".to_string();
    let mut persistent = None;
    let mut mode = None;
    let mut valid = true;
    for line in out.lines() {
        let l = line.trim().trim_start_matches('-').trim();
        if l.starts_with("Boot Flag Invalid") {
            valid = false;
        } else if l.starts_with("Options apply to all future boots") {
            persistent = Some(true);
        } else if l.starts_with("Options apply to only next boot") {
            persistent = Some(false);
        } else if l.starts_with("BIOS EFI boot") {
            mode = Some("uefi".to_string());
        } else if l.starts_with("BIOS PC Compatible") {
            mode = Some("legacy".to_string());
        } else if let Some(sel) = l.strip_prefix("Boot Device Selector :") {
            let sel = sel.trim();
            device = match sel {
                "Force PXE" => "pxe".into(),
                "Force Boot from default Hard-Drive"
                | "Force Boot from default Hard-Drive, request Safe-Mode" => "disk".into(),
                "Force Boot into BIOS Setup" => "bios".into(),
                "No override" => "none".into(),
                other => other.to_string(),
            };
        }
    }
    if !valid {
        device = "none".into();
    }
    BootdevInfo {
        device,
        persistent,
        mode,
    }
}

impl Driver for Ipmi<'_> {
    fn status(&self) -> Result<PowerState> {
        let out = self.run(self.cmd(&["chassis", "power", "status"]).read_only())?;
        match parse_power(&out) {
            PowerState::Unknown => Err(self.t.err(format!(
                "answered `chassis power status` with {:?}",
                out.trim()
            ))),
            s => Ok(s),
        }
    }

    fn power(&self, action: PowerAction) -> Result<String> {
        self.run(self.cmd(&["chassis", "power", action.as_str()]))?;
        Ok(String::new())
    }

    fn set_bootdev(&self, req: &BootRequest) -> Result<String> {
        let dev = match req.device {
            BootDevice::Pxe => "pxe",
            BootDevice::Disk => "disk",
            BootDevice::Bios => "bios",
        };
        let mut options = Vec::new();
        if req.mode == Some(BootMode::Uefi) {
            options.push("efiboot");
        }
        if req.persistent {
            options.push("persistent");
        }
        let opt = format!("options={}", options.join(","));
        let mut args = vec!["chassis", "bootdev", dev];
        if !options.is_empty() {
            args.push(&opt);
        }
        self.run(self.cmd(&args))?;
        Ok(String::new())
    }

    fn bootdev(&self) -> Result<BootdevInfo> {
        let out = self.run(self.cmd(&["chassis", "bootparam", "get", "5"]).read_only())?;
        if !out.contains("Boot Flags") {
            return Err(Error::Bmc {
                address: self.t.address.clone(),
                msg: format!("answered `chassis bootparam get 5` with {:?}", out.trim()),
            });
        }
        Ok(parse_bootparam(&out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(host_port("10.0.0.1").unwrap(), ("10.0.0.1".into(), 623));
        assert_eq!(host_port("bmc1:6230").unwrap(), ("bmc1".into(), 6230));
        assert_eq!(host_port("[fe80::1]:624").unwrap(), ("fe80::1".into(), 624));
        assert_eq!(host_port("fe80::1").unwrap(), ("fe80::1".into(), 623));
        assert!(host_port("bmc1:x").is_err());
        assert!(host_port(":623").is_err());
    }

    #[test]
    fn outputs() {
        assert_eq!(parse_power("Chassis Power is on\n"), PowerState::On);
        assert_eq!(parse_power("Chassis Power is off\n"), PowerState::Off);
        let out = "Boot parameter version: 1\nBoot parameter 5 is valid/unlocked\nBoot parameter data: e004000000\n Boot Flags :\n   - Boot Flag Valid\n   - Options apply to all future boots\n   - BIOS EFI boot \n   - Boot Device Selector : Force PXE\n";
        let i = parse_bootparam(out);
        assert_eq!(i.describe(), "pxe persistent uefi");
        let out = " Boot Flags :\n   - Boot Flag Valid\n   - Options apply to only next boot\n   - BIOS PC Compatible (legacy) boot \n   - Boot Device Selector : Force Boot from default Hard-Drive\n";
        assert_eq!(parse_bootparam(out).describe(), "disk once legacy");
    }

    #[test]
    fn password_goes_through_the_environment() {
        let t = Target {
            node: "n1".into(),
            driver: crate::cluster::BmcDriver::Ipmi,
            address: "10.0.0.9:6230".into(),
            user: Some("admin".into()),
            password: Some(super::super::Secret::new("pw-xyz")),
            system: None,
            ca_file: None,
            tls_verify: true,
            timeout: std::time::Duration::from_secs(5),
            retries: 1,
        };
        let r = Runner::new(true);
        let d = Ipmi::new(&t, &r).unwrap();
        d.power(PowerAction::On).unwrap();
        assert_eq!(
            r.plan(),
            vec!["+ IPMI_PASSWORD=*** ipmitool -I lanplus -H 10.0.0.9 -p 6230 -U admin -E -N 1 -R 5 chassis power on"]
        );
        let c = d.cmd(&["chassis", "power", "status"]);
        assert!(c.get_args().iter().all(|a| a.to_string_lossy() != "pw-xyz"));
    }
}
