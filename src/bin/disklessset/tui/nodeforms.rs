//! The forms of the Nodes screen and of the Images screen's foreground verbs: each is
//! the CLI command's arguments as fields, checked by the core's own parsers
//! (`NodeFields::parse`, node set expansion), and the request they become.
use std::path::PathBuf;

use disklessset::ops::{self, Inventory, NodeFields, Request};

use super::action::{Action, Foreground};
use super::form::{FieldKind, FieldSpec, FormSpec, Values};
use super::forms::{assign_fields, assign_of, choice};

fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

/// The inventory fields as `nodes add|set` parse them (`--mac`, `--ip`, `--group`,
/// `--var`); empty fields are left out.
fn fields(v: &Values) -> Result<NodeFields, String> {
    let ip = Some(v.get("ip").trim()).filter(|s| !s.is_empty());
    NodeFields::parse(
        &list(v.get("macs")),
        ip,
        &list(v.get("groups")),
        &list(v.get("vars")),
        None,
    )
    .map_err(|e| e.to_string())
}

fn macs(s: &str) -> Result<(), String> {
    NodeFields::parse(&list(s), None, &[], &[], None)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn ip(s: &str) -> Result<(), String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(());
    }
    NodeFields::parse(&[], Some(s), &[], &[], None)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn groups(s: &str) -> Result<(), String> {
    NodeFields::parse(&[], None, &list(s), &[], None)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn vars(s: &str) -> Result<(), String> {
    NodeFields::parse(&[], None, &[], &list(s), None)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn new_nodes(s: &str) -> Result<(), String> {
    match ops::query::check_nodeset(None, s) {
        Ok(n) if n.is_empty() => Err("give the nodes to add: c[001-100],login1".into()),
        Ok(_) => Ok(()),
        Err(e) => Err(e),
    }
}

fn node_name(s: &str) -> Result<(), String> {
    match ops::query::check_nodeset(None, s) {
        Ok(n) if n.len() == 1 && n[0] == s => Ok(()),
        Ok(_) => Err("one node name (d01)".into()),
        Err(e) => Err(e),
    }
}

fn field_tail() -> Vec<FieldSpec> {
    vec![
        FieldSpec::text("macs", "MAC", macs)
            .help("One per node, comma-separated, in node order (52:54:00:12:34:56)."),
        FieldSpec::text("ip", "IP", ip)
            .help("The first node's address; the next nodes get the next ones (IPv4)."),
        FieldSpec::text("groups", "Groups", groups).help("Comma-separated group names."),
        FieldSpec::text("vars", "Vars", vars)
            .help("KEY=VALUE, comma-separated (KEY= removes a variable)."),
    ]
}

/// `nodes add NODESET [--mac M]... [--ip A] [--group G]... [--var K=V]...`.
pub fn nodes_add() -> FormSpec {
    let mut f = vec![FieldSpec::text("nodes", "Nodes", new_nodes)
        .help("New nodes: c[001-100],login1 (refused if one exists).")];
    f.extend(field_tail());
    FormSpec {
        title: "Add nodes".into(),
        recap: |v| format!("Add nodes {} to the inventory", v.get("nodes")),
        fields: f,
        submit: |v| match fields(v) {
            Ok(fields) => Action::Run(Request::NodesAdd {
                nodeset: v.get("nodes").to_string(),
                fields,
            }),
            Err(e) => Action::Invalid(e),
        },
    }
}

/// `nodes set NODESET ...`: empty fields leave the nodes' values as they are.
pub fn nodes_set(set: &str, inv: Option<Inventory>) -> FormSpec {
    let mut f = vec![FieldSpec {
        key: "nodes",
        label: "Nodes",
        kind: FieldKind::NodeSet(inv),
        default: set.to_string(),
        help: "A node set: c[001-100],login1,@group. Empty fields below stay as they are.",
    }];
    f.extend(field_tail());
    FormSpec {
        title: "Change nodes".into(),
        recap: |v| format!("Change nodes {} in the inventory", v.get("nodes")),
        fields: f,
        submit: |v| match fields(v) {
            Ok(fields) => Action::Run(Request::NodesSet {
                nodeset: v.get("nodes").to_string(),
                fields,
            }),
            Err(e) => Action::Invalid(e),
        },
    }
}

const ASSIGN_ONLY: &str = "assign only";
const AND_REBOOT: &str = "assign and reboot (BMC)";

/// `bootset -n NODESET -b TYPE [-i IMAGE] [--once] [--reboot]`: the assignment, and
/// optionally the power cycle of the assign-and-reboot form.
pub fn bootset(set: &str, images: Vec<String>, inv: Option<Inventory>) -> FormSpec {
    let mut fields = assign_fields(set, images, inv);
    fields.extend([
        choice(
            "once",
            "Once",
            &["no", "yes"],
            "yes: back to the previous boot type after one boot (--once).",
        ),
        choice(
            "then",
            "Then",
            &[ASSIGN_ONLY, AND_REBOOT],
            "Reboot through the BMCs now (bootset --reboot), or at the nodes' next boot.",
        ),
    ]);
    FormSpec {
        title: "Assign a boot type to nodes".into(),
        recap: |v| {
            let image = match v.get("image") {
                "-" => String::new(),
                i => format!(" {i}"),
            };
            let once = if v.get("once") == "yes" {
                " for one boot (--once)"
            } else {
                ""
            };
            let then = if v.get("then") == AND_REBOOT {
                ", then boot them now: next boot PXE once and a power cycle"
            } else {
                ""
            };
            format!(
                "Assign {}{image} to nodes {}{once}{then}",
                v.get("boot"),
                v.get("nodes")
            )
        },
        fields,
        submit: |v| {
            let assign = match assign_of(v, v.get("once") == "yes") {
                Ok(a) => a,
                Err(e) => return Action::Invalid(e),
            };
            if v.get("then") == AND_REBOOT {
                Action::Run(Request::BootsetReboot {
                    assign,
                    staging: ops::Staging {
                        batch: None,
                        interval_secs: 0,
                    },
                    options: ops::BmcOptions::default(),
                })
            } else {
                Action::Run(Request::BootsetAssign { assign })
            }
        },
    }
}

/// `discovery accept MAC NODE`: the MAC among the pending machines.
pub fn discovery_accept(pending: Vec<String>, mac: &str) -> FormSpec {
    let default = if pending.iter().any(|m| m == mac) {
        mac.to_string()
    } else {
        pending.first().cloned().unwrap_or_default()
    };
    FormSpec {
        title: "Accept a discovered machine".into(),
        recap: |v| {
            format!(
                "Add node {} with MAC {} (and its facts) to the inventory",
                v.get("node"),
                v.get("mac")
            )
        },
        fields: vec![
            FieldSpec {
                key: "mac",
                label: "Machine (MAC)",
                kind: FieldKind::Choice(pending),
                default,
                help: "←→ to choose among the pending machines.",
            },
            FieldSpec::text("node", "Node name", node_name)
                .help("The name it gets in the inventory (d01)."),
        ],
        submit: |v| {
            Action::Run(Request::DiscoveryAccept {
                mac: v.get("mac").to_string(),
                node: v.get("node").to_string(),
            })
        },
    }
}

fn pool(s: &str) -> Result<(), String> {
    if s.trim().is_empty() {
        Ok(())
    } else {
        ops::query::check_nodeset(None, s).map(|_| ())
    }
}

/// `discovery start [--pool NODESET] [--policy manual|sequential|open]`.
pub fn discovery_start() -> FormSpec {
    FormSpec {
        title: "Start discovery".into(),
        recap: |v| {
            let pool = match v.get("pool").trim() {
                "" => String::new(),
                p => format!(", pool {p}"),
            };
            format!("Start discovery (policy {}{pool})", v.get("policy"))
        },
        fields: vec![
            choice(
                "policy",
                "Policy",
                &["manual", "sequential", "open"],
                "manual: you accept each machine; sequential: named from the pool in power-on order; open: any machine.",
            ),
            FieldSpec::text("pool", "Pool", pool)
                .help("The names new machines get, in order (d[01-10]). Empty: none."),
        ],
        submit: |v| {
            Action::Run(Request::DiscoveryStart {
                pool: Some(v.get("pool").trim())
                    .filter(|p| !p.is_empty())
                    .map(str::to_string),
                policy: v.get("policy").to_string(),
            })
        },
    }
}

const SHOW_KEYS: &str = "show the fingerprints";
const ROTATE_KEYS: &str = "rotate (delete them)";

/// `secrets show|rotate NODESET`: the fingerprints go to the job's output pane; a
/// rotation asks first, with the CLI's sentence.
pub fn host_keys(set: &str, inv: Option<Inventory>) -> FormSpec {
    FormSpec {
        title: "SSH host keys of nodes".into(),
        recap: |v| {
            if v.get("what") == ROTATE_KEYS {
                format!(
                    "Rotate the host keys of nodes {}: delete them, new ones are made at their next boot (asks first)",
                    v.get("nodes")
                )
            } else {
                format!("Show the host key fingerprints of nodes {}", v.get("nodes"))
            }
        },
        fields: vec![
            FieldSpec {
                key: "nodes",
                label: "Nodes",
                kind: FieldKind::NodeSet(inv),
                default: set.to_string(),
                help: "A node set: c[001-100],login1,@group (groups from the inventory).",
            },
            choice(
                "what",
                "Action",
                &[SHOW_KEYS, ROTATE_KEYS],
                "show: `secrets show` (fingerprints, never the keys); rotate: `secrets rotate` (SSH clients warn until known_hosts is updated).",
            ),
        ],
        submit: |v| {
            let nodeset = v.get("nodes").to_string();
            if v.get("what") == ROTATE_KEYS {
                Action::Ask {
                    request: Request::SecretsRotate { nodeset },
                    preview: false,
                }
            } else {
                Action::Run(Request::SecretsShow { nodeset })
            }
        },
    }
}

fn csv_file(s: &str) -> Result<(), String> {
    if s.is_empty() {
        Err("give the path of a CSV file".into())
    } else if std::path::Path::new(s).is_file() {
        Ok(())
    } else {
        Err(format!("{s}: no such file"))
    }
}

/// `nodes import FILE`: add or update nodes from a CSV file.
pub fn nodes_import() -> FormSpec {
    FormSpec {
        title: "Import nodes".into(),
        recap: |v| {
            format!(
                "Add or update the nodes of {} in the inventory",
                v.get("path")
            )
        },
        fields: vec![FieldSpec::text("path", "CSV file", csv_file)
            .help("Header: node,mac,ip,groups,bmc. Existing nodes are updated, new ones added.")],
        submit: |v| {
            Action::Run(Request::NodesImport {
                path: PathBuf::from(v.get("path")),
            })
        },
    }
}

fn command(s: &str) -> Result<(), String> {
    match shlex::split(s) {
        Some(v) if !v.is_empty() => Ok(()),
        Some(_) => Err("give a command (e.g. apt-get install -y htop)".into()),
        None => Err("unbalanced quotes".into()),
    }
}

fn fixed(key: &'static str, label: &'static str, value: &str) -> FieldSpec {
    FieldSpec {
        key,
        label,
        kind: FieldKind::Choice(vec![value.to_string()]),
        default: value.to_string(),
        help: "",
    }
}

/// `exec NAME -- CMD...`: the command split like a shell would (quotes), no shell run.
pub fn exec(name: &str) -> FormSpec {
    FormSpec {
        title: format!("Run a command in image {name}"),
        recap: |v| {
            format!(
                "Run `{}` in image {} (the screen is handed to it)",
                v.get("cmd"),
                v.get("name")
            )
        },
        fields: vec![
            FieldSpec::text("cmd", "Command", command).help(
                "Split on spaces, quotes group words; no shell: use sh -c '...' for pipes. Not mounted: a throwaway overlay.",
            ),
            fixed("name", "Image", name),
        ],
        submit: |v| match shlex::split(v.get("cmd")) {
            Some(cmd) => Action::Foreground(Foreground::Exec {
                name: v.get("name").to_string(),
                cmd,
            }),
            None => Action::Invalid("the command has unbalanced quotes".into()),
        },
    }
}

fn playbook(s: &str) -> Result<(), String> {
    if s.is_empty() {
        Err("give the path of a playbook".into())
    } else if std::path::Path::new(s).is_file() {
        Ok(())
    } else {
        Err(format!("{s}: no such file"))
    }
}

fn args(s: &str) -> Result<(), String> {
    shlex::split(s)
        .map(|_| ())
        .ok_or_else(|| "unbalanced quotes".into())
}

/// `ansible NAME PLAYBOOK [--keep-on-failure] [-- ARGS]`.
pub fn ansible(name: &str) -> FormSpec {
    FormSpec {
        title: format!("Run a playbook in image {name}"),
        recap: |v| {
            format!(
                "Run playbook {} in image {} (the screen is handed to ansible-playbook)",
                v.get("playbook"),
                v.get("name")
            )
        },
        fields: vec![
            FieldSpec::text("playbook", "Playbook", playbook)
                .help("The playbook file. A created image is mounted, and repacked as a new generation on success."),
            FieldSpec::text("args", "Extra arguments", args)
                .help("Passed to ansible-playbook (e.g. -e var=value --tags x). Empty: none."),
            choice(
                "keep",
                "On failure",
                &["discard the changes", "keep it mounted"],
                "keep it mounted: to inspect a failed run (--keep-on-failure).",
            ),
            fixed("name", "Image", name),
        ],
        submit: |v| {
            Action::Foreground(Foreground::Ansible {
                name: v.get("name").to_string(),
                playbook: PathBuf::from(v.get("playbook")),
                keep_on_failure: v.get("keep") == "keep it mounted",
                args: shlex::split(v.get("args")).unwrap_or_default(),
            })
        },
    }
}
