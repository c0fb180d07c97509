//! DMTF Redfish over HTTPS with ureq (blocking, rustls). No vendor path is assumed:
//! the system is found in `/redfish/v1/Systems` (the only member, or the one whose
//! path, Id, Name or UUID is `bmc.system`); power goes through the system's
//! `#ComputerSystem.Reset` action with a reset type the BMC advertises; the boot
//! override is a PATCH of `Boot.BootSourceOverrideTarget` / `Enabled` (`Once`,
//! `Continuous`) / `Mode` (`UEFI`, `Legacy`), checked against the allowable values,
//! with `If-Match` when the BMC gave an ETag.
//!
//! TLS: certificates are verified by default against the system trust store, or
//! against `bmc.ca_file` only; `bmc.tls_verify: false` turns verification off for that
//! one BMC. `http://` addresses are accepted (labs, emulators). Credentials go in a
//! Basic `Authorization` header, never in a URL, a log line or the plan.
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::error::Result;
use crate::sys::runner::Runner;

use super::{
    BootDevice, BootMode, BootRequest, BootdevInfo, Driver, PowerAction, PowerState, Target,
};

pub struct Redfish<'a> {
    t: &'a Target,
    runner: &'a Runner,
    base: String,
    agent: ureq::Agent,
    auth: Option<String>,
    /// The system's path, found once.
    system: OnceLock<String>,
}

/// An HTTP answer: status, ETag, JSON body (Null when empty or not JSON).
struct Answer {
    status: u16,
    etag: Option<String>,
    body: Value,
}

impl<'a> Redfish<'a> {
    pub fn new(t: &'a Target, runner: &'a Runner) -> Result<Self> {
        let base = if t.address.contains("://") {
            t.address.trim_end_matches('/').to_string()
        } else {
            format!("https://{}", t.address.trim_end_matches('/'))
        };
        let roots = match &t.ca_file {
            Some(f) => {
                let pem = std::fs::read(f).map_err(|e| {
                    t.err(format!("bmc.ca_file {}: cannot read it: {e}", f.display()))
                })?;
                let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
                    .filter_map(|i| match i {
                        Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                        _ => None,
                    })
                    .collect();
                if certs.is_empty() {
                    return Err(t.err(format!(
                        "bmc.ca_file {}: no PEM certificate in it",
                        f.display()
                    )));
                }
                ureq::tls::RootCerts::new_with_certs(&certs)
            }
            None => ureq::tls::RootCerts::PlatformVerifier,
        };
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(roots)
            .disable_verification(!t.tls_verify)
            .build();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(t.timeout))
            .http_status_as_error(false)
            .tls_config(tls)
            .user_agent(concat!("disklessset/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let auth = t.password.as_ref().map(|pw| {
            let user = t.user.clone().unwrap_or_default();
            let raw = format!("{user}:{}", pw.expose());
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(raw)
            )
        });
        Ok(Redfish {
            t,
            runner,
            base,
            agent,
            auth,
            system: OnceLock::new(),
        })
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        }
    }

    /// How the plan shows a request's credentials.
    fn auth_note(&self) -> String {
        match (&self.auth, &self.t.user) {
            (Some(_), Some(u)) => format!(" (Basic auth: user {u}, password ***)"),
            (Some(_), None) => " (Basic auth: password ***)".into(),
            (None, _) => " (no credentials)".into(),
        }
    }

    fn transport_error(&self, e: &ureq::Error) -> String {
        match e {
            ureq::Error::Timeout(_) => format!("timed out after {} s", self.t.timeout_secs()),
            ureq::Error::HostNotFound => "cannot be resolved (host not found)".into(),
            ureq::Error::ConnectionFailed => "refused the connection (nothing listens there?)".into(),
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                "refused the connection (nothing listens there?)".into()
            }
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
                format!("timed out after {} s", self.t.timeout_secs())
            }
            e if is_tls(e) => format!(
                "TLS failed: {} (set bmc.ca_file to the CA that signed the BMC's certificate, or bmc.tls_verify: false to skip the check for this BMC)",
                e.to_string().trim_start_matches("io: ")
            ),
            other => other.to_string(),
        }
    }

    /// One request, retried on transport errors (a POST only when it never connected).
    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        etag: Option<&str>,
    ) -> Result<Answer> {
        let url = self.url(path);
        let mut attempt = 0;
        loop {
            tracing::info!(target: "run", "{method} {url}{}", body.map(|b| format!(" {b}")).unwrap_or_default());
            let r = match method {
                "GET" => {
                    let mut rq = self.agent.get(&url).header("Accept", "application/json");
                    if let Some(a) = &self.auth {
                        rq = rq.header("Authorization", a);
                    }
                    rq.call()
                }
                _ => {
                    let mut rq = if method == "PATCH" {
                        self.agent.patch(&url)
                    } else {
                        self.agent.post(&url)
                    };
                    rq = rq
                        .header("Accept", "application/json")
                        .header("Content-Type", "application/json");
                    if let Some(a) = &self.auth {
                        rq = rq.header("Authorization", a);
                    }
                    if let Some(tag) = etag {
                        rq = rq.header("If-Match", tag);
                    }
                    rq.send(body.map(|b| b.to_string()).unwrap_or_default())
                }
            };
            match r {
                Ok(mut resp) => {
                    let status = resp.status().as_u16();
                    let etag = resp
                        .headers()
                        .get("etag")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    let text = resp.body_mut().read_to_string().unwrap_or_default();
                    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
                    return Ok(Answer { status, etag, body });
                }
                Err(e) => {
                    let never_sent =
                        matches!(e, ureq::Error::ConnectionFailed | ureq::Error::HostNotFound);
                    let retry =
                        attempt < self.t.retries && (method != "POST" || never_sent) && !is_tls(&e);
                    if retry {
                        attempt += 1;
                        tracing::info!(target: "run", "{}: {e}; retry {attempt}", self.t.address);
                        continue;
                    }
                    return Err(self.t.err(self.transport_error(&e)));
                }
            }
        }
    }

    /// A 2xx answer or an error naming the status and the BMC's message.
    fn checked(&self, method: &str, path: &str, a: Answer) -> Result<Answer> {
        if (200..300).contains(&a.status) {
            return Ok(a);
        }
        let msg = bmc_message(&a.body);
        Err(self.t.err(match a.status {
            401 => format!(
                "answered 401 Unauthorized to {method} {path}: check bmc.user and the password in the secrets file{msg}"
            ),
            403 => format!("answered 403 Forbidden to {method} {path}: the user lacks the privilege{msg}"),
            s => format!("answered {s} to {method} {path}{msg}"),
        }))
    }

    fn get(&self, path: &str) -> Result<Answer> {
        let a = self.request("GET", path, None, None)?;
        self.checked("GET", path, a)
    }

    /// A change: recorded in the plan under --dry-run, sent otherwise.
    fn change(&self, method: &str, path: &str, body: &Value, etag: Option<&str>) -> Result<()> {
        if self.runner.dry_run() {
            self.runner.note(format!(
                "{method} {} {body}{}{}",
                self.url(path),
                etag.map(|t| format!(" If-Match: {t}")).unwrap_or_default(),
                self.auth_note()
            ));
            return Ok(());
        }
        let a = self.request(method, path, Some(body), etag)?;
        self.checked(method, path, a).map(|_| ())
    }

    /// The system's path, from `/redfish/v1/Systems`.
    fn system_path(&self) -> Result<String> {
        if let Some(p) = self.system.get() {
            return Ok(p.clone());
        }
        let coll = self.get("/redfish/v1/Systems")?.body;
        let members: Vec<String> = coll["Members"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|m| m["@odata.id"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let last = |p: &str| {
            p.trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or("")
                .to_string()
        };
        let found =
            match &self.t.system {
                None if members.len() == 1 => members[0].clone(),
                None if members.is_empty() => {
                    return Err(self.t.err("lists no system in /redfish/v1/Systems"))
                }
                None => {
                    return Err(self.t.err(format!(
                        "has {} systems ({}): set bmc.system to one of them",
                        members.len(),
                        members
                            .iter()
                            .map(|m| last(m))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )))
                }
                Some(want) => {
                    if let Some(m) = members.iter().find(|m| last(m) == *want || *m == want) {
                        m.clone()
                    } else {
                        let mut hit = None;
                        for m in &members {
                            let s = self.get(m)?.body;
                            let is = |k: &str| {
                                s[k].as_str().is_some_and(|v| v.eq_ignore_ascii_case(want))
                            };
                            if is("Id") || is("Name") || is("UUID") {
                                hit = Some(m.clone());
                                break;
                            }
                        }
                        hit.ok_or_else(|| {
                            self.t.err(format!(
                            "has no system {want:?} (Id, Name or UUID) in /redfish/v1/Systems ({})",
                            members.iter().map(|m| last(m)).collect::<Vec<_>>().join(", ")
                        ))
                        })?
                    }
                }
            };
        let _ = self.system.set(found.clone());
        Ok(found)
    }

    fn system(&self) -> Result<(String, Answer)> {
        let p = self.system_path()?;
        let a = self.get(&p)?;
        Ok((p, a))
    }

    /// The reset action's target and the reset types the BMC advertises (None: it does
    /// not say).
    fn reset_info(&self, path: &str, sys: &Value) -> Result<(String, Option<Vec<String>>)> {
        let act = &sys["Actions"]["#ComputerSystem.Reset"];
        let target = act["target"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("{path}/Actions/ComputerSystem.Reset"));
        let strings = |v: &Value| -> Option<Vec<String>> {
            v.as_array().map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
        };
        if let Some(v) = strings(&act["ResetType@Redfish.AllowableValues"]) {
            return Ok((target, Some(v)));
        }
        if let Some(info) = act["@Redfish.ActionInfo"].as_str() {
            let ai = self.get(info)?.body;
            let allowed = ai["Parameters"].as_array().and_then(|ps| {
                ps.iter()
                    .find(|p| p["Name"] == "ResetType")
                    .and_then(|p| strings(&p["AllowableValues"]))
            });
            return Ok((target, allowed));
        }
        Ok((target, None))
    }

    fn reset(&self, target: &str, kind: &str) -> Result<()> {
        self.change("POST", target, &json!({ "ResetType": kind }), None)
    }

    fn power_state(&self) -> Result<PowerState> {
        let (_, a) = self.system()?;
        Ok(parse_power_state(&a.body))
    }
}

/// A TLS failure (ureq wraps rustls' errors in `Io` during the handshake).
fn is_tls(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::Rustls(_) | ureq::Error::Tls(_) => true,
        ureq::Error::Io(io) => {
            let m = io.to_string().to_ascii_lowercase();
            m.contains("certificate") || m.contains("tls") || m.contains("handshake")
        }
        _ => false,
    }
}

/// `PowerState` of a ComputerSystem.
pub fn parse_power_state(sys: &Value) -> PowerState {
    match sys["PowerState"].as_str() {
        Some("On") => PowerState::On,
        Some("Off") => PowerState::Off,
        _ => PowerState::Unknown,
    }
}

/// The BMC's own message in an error body (`error.message` or the first extended info).
fn bmc_message(body: &Value) -> String {
    let e = &body["error"];
    let ext = e["@Message.ExtendedInfo"]
        .as_array()
        .and_then(|a| a.first())
        .and_then(|m| m["Message"].as_str());
    match ext.or(e["message"].as_str()) {
        Some(m) if !m.is_empty() => format!(" ({})", m.replace('\n', " ")),
        _ => String::new(),
    }
}

/// The first reset type of `wanted` the BMC allows (all of them when it does not say).
fn pick<'x>(allowed: &Option<Vec<String>>, wanted: &[&'x str]) -> Option<&'x str> {
    wanted
        .iter()
        .copied()
        .find(|w| allowed.as_ref().is_none_or(|a| a.iter().any(|x| x == w)))
}

impl Driver for Redfish<'_> {
    fn status(&self) -> Result<PowerState> {
        self.power_state()
    }

    fn power(&self, action: PowerAction) -> Result<String> {
        let (path, sys) = self.system()?;
        let (target, allowed) = self.reset_info(&path, &sys.body)?;
        let listed = || allowed.as_ref().map(|a| a.join(", ")).unwrap_or_default();
        let wanted: &[&str] = match action {
            PowerAction::On => &["On", "ForceOn"],
            PowerAction::Off => &["ForceOff"],
            PowerAction::Soft => &["GracefulShutdown"],
            PowerAction::Reset => &["ForceRestart", "GracefulRestart"],
            PowerAction::Cycle => &["PowerCycle", "ForceRestart"],
        };
        if let Some(kind) = pick(&allowed, wanted) {
            self.reset(&target, kind)?;
            return Ok(if kind == wanted[0] {
                String::new()
            } else {
                kind.to_string()
            });
        }
        if action == PowerAction::Cycle
            && pick(&allowed, &["ForceOff"]).is_some()
            && pick(&allowed, &["On"]).is_some()
        {
            // Off, wait until the BMC says so, then on.
            self.reset(&target, "ForceOff")?;
            if !self.runner.dry_run() {
                let limit = self.t.timeout * 6;
                let start = Instant::now();
                while self.power_state()? != PowerState::Off {
                    if start.elapsed() > limit {
                        return Err(self
                            .t
                            .err(format!("still on {} s after ForceOff", limit.as_secs())));
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
            self.reset(&target, "On")?;
            return Ok("ForceOff, then On".into());
        }
        Err(self.t.err(format!(
            "does not offer a reset type for power {} (wanted {}; it offers {})",
            action.as_str(),
            wanted.join(" or "),
            listed()
        )))
    }

    fn set_bootdev(&self, req: &BootRequest) -> Result<String> {
        let (path, sys) = self.system()?;
        let boot = &sys.body["Boot"];
        let target = match req.device {
            BootDevice::Pxe => "Pxe",
            BootDevice::Disk => "Hdd",
            BootDevice::Bios => "BiosSetup",
        };
        if let Some(allowed) = boot["BootSourceOverrideTarget@Redfish.AllowableValues"].as_array() {
            if !allowed.iter().any(|v| v == target) {
                let list: Vec<&str> = allowed.iter().filter_map(|v| v.as_str()).collect();
                return Err(self.t.err(format!(
                    "does not offer boot target {target} (it offers {})",
                    list.join(", ")
                )));
            }
        }
        let mut b = json!({
            "BootSourceOverrideTarget": target,
            "BootSourceOverrideEnabled": if req.persistent { "Continuous" } else { "Once" },
        });
        if let Some(m) = req.mode {
            b["BootSourceOverrideMode"] = json!(match m {
                BootMode::Uefi => "UEFI",
                BootMode::Legacy => "Legacy",
            });
        }
        self.change("PATCH", &path, &json!({ "Boot": b }), sys.etag.as_deref())?;
        Ok(String::new())
    }

    fn bootdev(&self) -> Result<BootdevInfo> {
        let (_, sys) = self.system()?;
        let boot = &sys.body["Boot"];
        let enabled = boot["BootSourceOverrideEnabled"].as_str().unwrap_or("");
        let device = match (enabled, boot["BootSourceOverrideTarget"].as_str()) {
            ("Disabled", _) | (_, None) | (_, Some("None")) => "none".to_string(),
            (_, Some("Pxe")) => "pxe".into(),
            (_, Some("Hdd")) => "disk".into(),
            (_, Some("BiosSetup")) => "bios".into(),
            (_, Some(other)) => other.to_ascii_lowercase(),
        };
        Ok(BootdevInfo {
            device,
            persistent: match enabled {
                "Continuous" => Some(true),
                "Once" => Some(false),
                _ => None,
            },
            mode: boot["BootSourceOverrideMode"]
                .as_str()
                .map(|m| m.to_ascii_lowercase()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_type_choice() {
        let fake = Some(vec![
            "On".to_string(),
            "ForceOff".into(),
            "ForceRestart".into(),
        ]);
        assert_eq!(
            pick(&fake, &["PowerCycle", "ForceRestart"]),
            Some("ForceRestart")
        );
        assert_eq!(pick(&fake, &["GracefulShutdown"]), None);
        assert_eq!(
            pick(&None, &["PowerCycle", "ForceRestart"]),
            Some("PowerCycle")
        );
    }

    #[test]
    fn messages_and_states() {
        let body = json!({"error": {"code": "Base.1.0.GeneralError", "message": "A general error", "@Message.ExtendedInfo": [{"Message": "Bad target"}]}});
        assert_eq!(bmc_message(&body), " (Bad target)");
        assert_eq!(bmc_message(&Value::Null), "");
        assert_eq!(
            parse_power_state(&json!({"PowerState": "On"})),
            PowerState::On
        );
        assert_eq!(
            parse_power_state(&json!({"PowerState": "PoweringOn"})),
            PowerState::Unknown
        );
    }
}
