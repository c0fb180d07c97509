//! The `bmc:` section of the inventory: how a node's power and boot device are
//! controlled. Per node or per group (`groups: {compute: {bmc: {...}}}`); field by
//! field, a node's own value wins over its groups' (in the node's group order, the
//! first group that sets a field wins). No password here: passwords live in the
//! secrets file (`bmc_secrets_file`), never in `nodes.yml`.
use std::path::PathBuf;

use serde::Serialize;
use yaml_serde::Value;

use crate::yaml::{py_bool, scalar_string};

/// The BMC protocols the tool speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BmcDriver {
    /// IPMI 2.0 over LAN (`ipmitool -I lanplus`).
    Ipmi,
    /// DMTF Redfish over HTTPS (JSON).
    Redfish,
    /// A libvirt domain (`virsh`): VMs and labs.
    Libvirt,
}

impl BmcDriver {
    pub const ALL: [BmcDriver; 3] = [BmcDriver::Ipmi, BmcDriver::Redfish, BmcDriver::Libvirt];

    pub fn as_str(self) -> &'static str {
        match self {
            BmcDriver::Ipmi => "ipmi",
            BmcDriver::Redfish => "redfish",
            BmcDriver::Libvirt => "libvirt",
        }
    }

    pub fn parse(s: &str) -> Option<BmcDriver> {
        BmcDriver::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

/// One `bmc:` mapping as written (every field optional: a group may give the driver
/// and user, the node its address).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BmcSpec {
    pub driver: Option<BmcDriver>,
    /// ipmi: `HOST[:PORT]`; redfish: a host (`https://` is implied) or a URL
    /// (`http://` accepted for labs and emulators); libvirt: the connection URI
    /// (`qemu:///system`, `qemu+ssh://host/system`). `{node}` is replaced by the node
    /// name (`{node}-bmc.example.org` in a group).
    pub address: Option<String>,
    pub user: Option<String>,
    /// redfish: which member of `/redfish/v1/Systems` (its Id, Name or UUID) when the
    /// BMC has several; libvirt: the domain name (default: the node name).
    pub system: Option<String>,
    /// redfish over HTTPS: the CA that signed the BMC's certificate (PEM).
    pub ca_file: Option<PathBuf>,
    /// redfish over HTTPS: `false` turns certificate verification off for this BMC
    /// (an explicit opt-out; the default is on).
    pub tls_verify: Option<bool>,
}

/// The keys a `bmc:` mapping may hold.
pub const BMC_KEYS: &[&str] = &[
    "driver",
    "address",
    "user",
    "system",
    "ca_file",
    "tls_verify",
];

impl BmcSpec {
    /// `self` with every field it lacks taken from `base`.
    pub fn or(&self, base: &BmcSpec) -> BmcSpec {
        BmcSpec {
            driver: self.driver.or(base.driver),
            address: self.address.clone().or_else(|| base.address.clone()),
            user: self.user.clone().or_else(|| base.user.clone()),
            system: self.system.clone().or_else(|| base.system.clone()),
            ca_file: self.ca_file.clone().or_else(|| base.ca_file.clone()),
            tls_verify: self.tls_verify.or(base.tls_verify),
        }
    }
}

fn one_line(what: &str, key: &str, v: &Value) -> Result<String, String> {
    let s = scalar_string(v).ok_or_else(|| format!("{what}.bmc.{key}: must be a string"))?;
    if s.is_empty() || s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!(
            "{what}.bmc.{key}: {s:?} must be one word without spaces or control characters"
        ));
    }
    Ok(s)
}

/// Parses the `bmc:` value of node or group `what`; errors name the field and the
/// allowed keys or values.
pub fn parse(v: &Value, what: &str) -> Result<BmcSpec, String> {
    let m = match v {
        Value::Null => return Ok(BmcSpec::default()),
        Value::Mapping(m) => m,
        _ => {
            return Err(format!(
                "{what}.bmc: must be a mapping ({})",
                BMC_KEYS.join(", ")
            ))
        }
    };
    let mut b = BmcSpec::default();
    for (k, v) in m {
        let key = k.as_str().unwrap_or_default();
        match key {
            "driver" => {
                let d = scalar_string(v).unwrap_or_default();
                b.driver = Some(BmcDriver::parse(&d).ok_or_else(|| {
                    format!("{what}.bmc.driver: {d:?} is not a driver (allowed: ipmi, redfish, libvirt)")
                })?);
            }
            "address" => b.address = Some(one_line(what, key, v)?),
            "user" => b.user = Some(one_line(what, key, v)?),
            "system" => b.system = Some(one_line(what, key, v)?),
            "ca_file" => {
                let p = PathBuf::from(one_line(what, key, v)?);
                if !p.is_absolute() {
                    return Err(format!(
                        "{what}.bmc.ca_file: {} must be an absolute path",
                        p.display()
                    ));
                }
                b.ca_file = Some(p);
            }
            "tls_verify" => {
                b.tls_verify = Some(py_bool(v).ok_or_else(|| {
                    format!("{what}.bmc.tls_verify: must be true or false")
                })?)
            }
            other => {
                return Err(format!(
                    "{what}.bmc.{other}: unknown field; allowed fields are {} (passwords go in the secrets file, bmc_secrets_file)",
                    BMC_KEYS.join(", ")
                ))
            }
        }
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<BmcSpec, String> {
        parse(&yaml_serde::from_str(text).unwrap(), "c1")
    }

    #[test]
    fn fields_and_refusals() {
        let b = p("{driver: redfish, address: 'https://10.0.0.1', user: admin, system: '1', tls_verify: false}").unwrap();
        assert_eq!(b.driver, Some(BmcDriver::Redfish));
        assert_eq!(b.address.as_deref(), Some("https://10.0.0.1"));
        assert_eq!(b.tls_verify, Some(false));
        let e = p("{driver: idrac}").unwrap_err();
        assert!(
            e.contains("c1.bmc.driver") && e.contains("ipmi, redfish, libvirt"),
            "{e}"
        );
        let e = p("{password: x}").unwrap_err();
        assert!(
            e.contains("c1.bmc.password") && e.contains("driver, address"),
            "{e}"
        );
        assert!(e.contains("secrets file"), "{e}");
        let e = p("{address: 'a b'}").unwrap_err();
        assert!(e.contains("c1.bmc.address"), "{e}");
        let e = p("{ca_file: ca.pem}").unwrap_err();
        assert!(e.contains("absolute"), "{e}");
        assert!(p("[x]").unwrap_err().contains("mapping"));
    }

    #[test]
    fn node_fields_win_over_the_group() {
        let group = p("{driver: ipmi, user: admin, address: '{node}-bmc'}").unwrap();
        let node = p("{address: 10.0.0.7}").unwrap();
        let b = node.or(&group);
        assert_eq!(b.driver, Some(BmcDriver::Ipmi));
        assert_eq!(b.user.as_deref(), Some("admin"));
        assert_eq!(b.address.as_deref(), Some("10.0.0.7"));
    }
}
