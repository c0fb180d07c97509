//! The concrete forms. Each is data: fields, their validators (the core's own checks),
//! the recap sentence, and the action the values become.
use std::path::PathBuf;

use disklessset::ops::{
    self, BuildOptions, DemoCreate, Inventory, LivenetCreate, LivenetType, ParamsOptions, Request,
    SizeSpec, StagingCreate,
};

use super::action::Action;
use super::form::{FieldKind, FieldSpec, FormSpec, Values};

fn image_name(s: &str) -> Result<(), String> {
    ops::query::check_image_name(s).map_err(|e| e.to_string())
}

fn message(s: &str) -> Result<(), String> {
    if s.contains('\0') {
        Err("must not contain NUL bytes".into())
    } else {
        Ok(())
    }
}

/// `demo create NAME --message TEXT`.
pub fn demo_create() -> FormSpec {
    FormSpec {
        title: "Create a demo image".into(),
        recap: |v| format!("Create demo image {}", v.get("name")),
        fields: vec![
            FieldSpec::text("name", "Image name", image_name)
                .help("Letters, digits, '-', '_' and '.'; at most 64 characters."),
            FieldSpec::text("message", "Message", message)
                .default("hello from disklessset")
                .help("The text the demo image holds (demo.txt)."),
        ],
        submit: |v| {
            Action::Run(Request::DemoCreate(DemoCreate {
                name: v.get("name").to_string(),
                message: v.get("message").to_string(),
                crash: false,
                // The TUI's own pause between steps replaces it (`TuiOptions`).
                step_delay: std::time::Duration::ZERO,
            }))
        },
    }
}

/// `clone SRC DST`.
pub fn clone(src: &str) -> FormSpec {
    FormSpec {
        title: format!("Clone image {src}"),
        recap: |v| format!("Clone image {} into {}", v.get("src"), v.get("name")),
        fields: vec![
            FieldSpec::text("name", "New image name", image_name)
                .help("Letters, digits, '-', '_' and '.'; at most 64 characters."),
            fixed(
                "src",
                "Source",
                src,
                "The image to copy (pick another one in the images list).",
            ),
        ],
        submit: |v| {
            Action::Run(Request::Clone {
                src: v.get("src").to_string(),
                dst: v.get("name").to_string(),
            })
        },
    }
}

fn livenet_size(s: &str) -> Result<(), String> {
    SizeSpec::parse(s).map(|_| ()).map_err(|e| e.to_string())
}

/// `livenet resize NAME SIZE`.
pub fn resize(name: &str) -> FormSpec {
    FormSpec {
        title: format!("Resize image {name}"),
        recap: |v| format!("Resize image {} to {}", v.get("name"), v.get("size")),
        fields: vec![
            FieldSpec::text("size", "New size", livenet_size)
                .default("auto")
                .help(
                    "700M, 1.5G (100M to 50G), or auto: the content plus the configured headroom.",
                ),
            fixed("name", "Image", name, ""),
        ],
        submit: |v| match SizeSpec::parse(v.get("size")) {
            Ok(size) => Action::Run(Request::LivenetResize {
                name: v.get("name").to_string(),
                size,
            }),
            Err(e) => Action::Invalid(e.to_string()),
        },
    }
}

/// `kernel set NAME VERSION`: a choice among the kernels of the kernels dir.
pub fn kernel_set(name: &str, versions: Vec<String>, current: Option<&str>) -> FormSpec {
    let default = current
        .filter(|c| versions.iter().any(|v| v == c))
        .or(versions.first().map(String::as_str))
        .unwrap_or_default()
        .to_string();
    FormSpec {
        title: format!("Kernel of image {name}"),
        recap: |v| format!("Image {} boots kernel {}", v.get("name"), v.get("version")),
        fields: vec![
            FieldSpec {
                key: "version",
                label: "Kernel",
                kind: FieldKind::Choice(versions),
                default,
                help: "←→ to choose. The core refuses a kernel without its initramfs.",
            },
            fixed("name", "Image", name, ""),
        ],
        submit: |v| {
            Action::Run(Request::KernelSet {
                name: v.get("name").to_string(),
                version: v.get("version").to_string(),
            })
        },
    }
}

/// Checks a parameters file as you type its path: readable, and valid for the core's
/// parser (its errors carry FILE:LINE:COLUMN). The installation checks (releases, key
/// files) run in the job, through `params::create_from_params`.
fn params_path(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("give the path of a parameters file".into());
    }
    ops::query::check_params_file(std::path::Path::new(s)).map_err(|e| e.to_string())
}

pub const DISTROS: [&str; 7] = [
    "(as in the file)",
    "debian",
    "ubuntu",
    "rocky",
    "alma",
    "rhel",
    "fedora",
];

/// `create --params FILE [--distro D]`.
pub fn params_file() -> FormSpec {
    FormSpec {
        title: "Create images from a parameters file".into(),
        recap: |v| format!("Create the images of {}", v.get("path")),
        fields: vec![
            FieldSpec::text("path", "Parameters file", params_path).help(
                "The reference's image_data: format or the native one. Images that exist and match are skipped; differing ones are refused (replace them with the CLI's --replace).",
            ),
            FieldSpec {
                key: "distro",
                label: "Default distro",
                kind: FieldKind::Choice(DISTROS.iter().map(|d| d.to_string()).collect()),
                default: DISTROS[0].to_string(),
                help: "For entries that name no distro (--distro).",
            },
        ],
        submit: |v| {
            Action::Run(Request::Params {
                path: PathBuf::from(v.get("path")),
                options: ParamsOptions {
                    distro: Some(v.get("distro"))
                        .filter(|d| *d != DISTROS[0])
                        .map(str::to_string),
                    replace: false,
                    yes: false,
                },
            })
        },
    }
}

fn optional_size(s: &str) -> Result<(), String> {
    if s.is_empty() {
        Ok(())
    } else {
        livenet_size(s)
    }
}

fn anything(_: &str) -> Result<(), String> {
    Ok(())
}

fn ssh_key(s: &str) -> Result<(), String> {
    if s.is_empty() || std::path::Path::new(s).is_file() {
        Ok(())
    } else {
        Err(format!("{s}: no such file"))
    }
}

fn packages(s: &str) -> Result<(), String> {
    match s
        .split(',')
        .map(str::trim)
        .find(|p| p.contains(char::is_whitespace))
    {
        Some(p) => Err(format!("'{p}': separate packages with commas")),
        None => Ok(()),
    }
}

/// A field fixed to one value (the image picked in the images list).
fn fixed(key: &'static str, label: &'static str, value: &str, help: &'static str) -> FieldSpec {
    FieldSpec {
        key,
        label,
        kind: FieldKind::Choice(vec![value.to_string()]),
        default: value.to_string(),
        help,
    }
}

pub(super) fn choice(
    key: &'static str,
    label: &'static str,
    opts: &[&str],
    help: &'static str,
) -> FieldSpec {
    FieldSpec {
        key,
        label,
        kind: FieldKind::Choice(opts.iter().map(|o| o.to_string()).collect()),
        default: opts.first().map(|o| o.to_string()).unwrap_or_default(),
        help,
    }
}

/// The build fields both create forms start with (after the name): distro, release,
/// type (`types`: in the order the form offers them, the first is the default).
fn build_fields_head(types: &[&str], types_help: &'static str) -> Vec<FieldSpec> {
    vec![
        choice(
            "distro",
            "Distro",
            &["debian", "ubuntu", "rocky", "alma", "rhel", "fedora"],
            "←→ to choose.",
        ),
        FieldSpec::text("release", "Release", anything)
            .help("bookworm, 12, noble, 9, ... Empty: the manifest's release for the distro."),
        choice("type", "Type", types, types_help),
    ]
}

/// The build fields both create forms share after their own: password (twice), key,
/// packages.
fn build_fields_tail() -> Vec<FieldSpec> {
    vec![
        FieldSpec {
            key: "password",
            label: "Root password",
            kind: FieldKind::Password,
            default: String::new(),
            help: "Hashed (SHA-512 crypt) when you start; the clear text is not kept.",
        },
        FieldSpec {
            key: "password2",
            label: "Password again",
            kind: FieldKind::Confirm("password"),
            default: String::new(),
            help: "The same password, to confirm it.",
        },
        FieldSpec::text("ssh_key", "SSH public key", ssh_key)
            .help("A public key file for /root/.ssh/authorized_keys. Empty: none."),
        FieldSpec::text("packages", "Extra packages", packages)
            .help("Comma-separated package names, added to the type's list."),
        choice(
            "transient",
            "Transient",
            &["no", "yes"],
            "yes: a per-host image (--transient): gc removes it once no node is assigned to it nor booted it lately.",
        ),
    ]
}

/// The build fields' values as the core's build options: the password is hashed here
/// (by the core's function); the request carries the hash only.
fn build_options(v: &Values) -> Result<BuildOptions, String> {
    Ok(BuildOptions {
        distro: v.get("distro").to_string(),
        release: Some(v.get("release").trim())
            .filter(|r| !r.is_empty())
            .map(str::to_string),
        livenet_type: LivenetType::parse(v.get("type")).map_err(|e| e.to_string())?,
        password_hash: Some(ops::hash_password(v.get("password")).map_err(|e| e.to_string())?),
        ssh_pub_key_file: Some(v.get("ssh_key"))
            .filter(|s| !s.is_empty())
            .map(PathBuf::from),
        selinux: false,
        optimize: false,
        packages: v
            .get("packages")
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect(),
        mirror: None,
        from: None,
        kernel_from: None,
        repro: Default::default(),
        transient: v.get("transient") == "yes",
    })
}

fn build_recap(what: &str, v: &Values) -> String {
    format!(
        "Create {}{what} {} ({} {}, {} type",
        if v.get("transient") == "yes" {
            "transient "
        } else {
            ""
        },
        v.get("name"),
        v.get("distro"),
        Some(v.get("release"))
            .filter(|r| !r.is_empty())
            .unwrap_or("default release"),
        v.get("type"),
    )
}

/// `livenet create NAME --distro --release --type --layout --size --password-* --ssh-key
/// --packages --initramfs`.
pub fn livenet_create() -> FormSpec {
    let mut fields = vec![FieldSpec::text("name", "Image name", image_name)
        .help("Letters, digits, '-', '_' and '.'; at most 64 characters.")];
    fields.extend(build_fields_head(
        &["standard", "small", "core"],
        "standard: full system; small: fewer packages; core: the minimum.",
    ));
    fields.push(choice(
        "layout",
        "Layout",
        &["native", "compat"],
        "native: squashfs of the tree; compat: squashfs holding a rootfs.img (the reference's).",
    ));
    fields.push(FieldSpec::text("size", "Size (compat)", optional_size).help(
        "Compat layout only: the rootfs.img size, 700M, 1.5G (100M to 50G) or auto. Empty: auto.",
    ));
    fields.extend(build_fields_tail());
    fields.push(choice(
        "initramfs",
        "Initramfs",
        &["own", "dracut"],
        "own: disklessset's initramfs; dracut: the distro's dracut livenet one.",
    ));
    FormSpec {
        title: "Create a livenet image".into(),
        recap: |v| {
            format!(
                "{}, {} layout)",
                build_recap("livenet image", v),
                v.get("layout")
            )
        },
        fields,
        submit: |v| {
            let req = || -> Result<Request, String> {
                let mut o = LivenetCreate::new(v.get("name"));
                o.build = build_options(v)?;
                o.layout = ops::Layout::parse(v.get("layout")).map_err(|e| e.to_string())?;
                o.size = Some(v.get("size").trim())
                    .filter(|s| !s.is_empty())
                    .map(SizeSpec::parse)
                    .transpose()
                    .map_err(|e| e.to_string())?;
                o.initramfs = v.get("initramfs").to_string();
                Ok(Request::LivenetCreate(Box::new(o)))
            };
            req().map_or_else(Action::Invalid, Action::Run)
        },
    }
}

/// `nfs staging create NAME --distro --release --type --password-* --ssh-key --packages`
/// (livenet create's fields without layout, size and initramfs: NFS roots use the own
/// initramfs).
pub fn nfs_staging_create() -> FormSpec {
    let mut fields = vec![FieldSpec::text("name", "Image name", image_name)
        .help("Letters, digits, '-', '_' and '.'; at most 64 characters.")];
    fields.extend(build_fields_head(
        &["core", "small", "standard"],
        "core: the minimum; small: fewer packages; standard: full system.",
    ));
    fields.extend(build_fields_tail());
    FormSpec {
        title: "Create an NFS staging image".into(),
        recap: |v| format!("{})", build_recap("NFS staging image", v)),
        fields,
        submit: |v| {
            build_options(v).map_or_else(Action::Invalid, |build| {
                let mut o = StagingCreate::new(v.get("name"));
                o.build = build;
                Action::Run(Request::NfsStagingCreate(Box::new(o)))
            })
        },
    }
}

/// `nfs golden create NAME --from STAGING`: the source is a choice among the store's
/// staging images.
pub fn nfs_golden_create(staging: Vec<String>) -> FormSpec {
    let default = staging.first().cloned().unwrap_or_default();
    FormSpec {
        title: "Create an NFS golden image".into(),
        recap: |v| {
            format!(
                "Create NFS golden image {} from staging image {}",
                v.get("name"),
                v.get("from")
            )
        },
        fields: vec![
            FieldSpec::text("name", "Golden image name", image_name)
                .help("Letters, digits, '-', '_' and '.'; at most 64 characters."),
            FieldSpec {
                key: "from",
                label: "Staging image",
                kind: FieldKind::Choice(staging),
                default,
                help: "←→ to choose. Its tree is copied (reflinks where the file system allows).",
            },
        ],
        submit: |v| {
            Action::Run(Request::NfsGoldenCreate {
                name: v.get("name").to_string(),
                from: v.get("from").to_string(),
            })
        },
    }
}

fn nodes_form(
    title: &str,
    golden: Vec<String>,
    inv: Option<Inventory>,
    recap: fn(&Values) -> String,
    submit: fn(&Values) -> Action,
) -> FormSpec {
    let default = golden.first().cloned().unwrap_or_default();
    FormSpec {
        title: title.into(),
        recap,
        fields: vec![
            FieldSpec {
                key: "image",
                label: "Golden image",
                kind: FieldKind::Choice(golden),
                default,
                help: "←→ to choose.",
            },
            FieldSpec {
                key: "nodes",
                label: "Nodes",
                kind: FieldKind::NodeSet(inv),
                default: String::new(),
                help: "A node set: c[001-100],login1,@group (groups from the inventory).",
            },
        ],
        submit,
    }
}

/// `nfs nodes add GOLDEN NODESET`.
pub fn nfs_nodes_add(golden: Vec<String>, inv: Option<Inventory>) -> FormSpec {
    nodes_form(
        "Add nodes to an NFS golden image",
        golden,
        inv,
        |v| format!("Add nodes {} to image {}", v.get("nodes"), v.get("image")),
        |v| {
            Action::Run(Request::NfsNodesAdd {
                golden: v.get("image").to_string(),
                nodeset: v.get("nodes").to_string(),
            })
        },
    )
}

/// `nfs nodes remove GOLDEN NODESET` (the confirm popup names the node directories).
pub fn nfs_nodes_remove(golden: Vec<String>, inv: Option<Inventory>) -> FormSpec {
    nodes_form(
        "Remove nodes of an NFS golden image",
        golden,
        inv,
        |v| {
            format!(
                "Remove nodes {} of image {} and the state they keep",
                v.get("nodes"),
                v.get("image")
            )
        },
        |v| Action::AskNfsNodesRemove {
            image: v.get("image").to_string(),
            set: v.get("nodes").to_string(),
        },
    )
}

fn count_or_empty(s: &str) -> Result<(), String> {
    if s.is_empty() || s.parse::<u64>().is_ok_and(|n| n > 0) {
        Ok(())
    } else {
        Err("a whole number of nodes, at least 1 (empty: all at once)".into())
    }
}

fn seconds(s: &str) -> Result<(), String> {
    s.parse::<u64>()
        .map(|_| ())
        .map_err(|_| "whole seconds (0: no pause)".into())
}

/// The fields every assignment form starts with (`bootset -n NODESET -b TYPE [-i IMAGE]`):
/// the node set (checked against the inventory), the boot type, the image (`-`: none).
pub(super) fn assign_fields(
    set: &str,
    images: Vec<String>,
    inv: Option<Inventory>,
) -> Vec<FieldSpec> {
    let mut image_choices = vec!["-".to_string()];
    image_choices.extend(images);
    vec![
        FieldSpec {
            key: "nodes",
            label: "Nodes",
            kind: FieldKind::NodeSet(inv),
            default: set.to_string(),
            help: "A node set: c[001-100],login1,@group (groups from the inventory).",
        },
        choice(
            "boot",
            "Boot type",
            &[
                "diskless",
                "disk",
                "next",
                "osdeploy",
                "clone",
                "clonedeploy",
            ],
            "←→ to choose (bootset -b).",
        ),
        FieldSpec {
            key: "image",
            label: "Image",
            kind: FieldKind::Choice(image_choices),
            default: "-".into(),
            help: "←→ to choose; diskless needs one (bootset -i).",
        },
    ]
}

/// The assignment those fields describe; a boot type the core does not know is refused
/// naming it.
pub(super) fn assign_of(v: &Values, once: bool) -> Result<ops::Assign, String> {
    let boot_type = ops::BootType::parse(v.get("boot")).map_err(|e| e.to_string())?;
    Ok(ops::Assign {
        nodeset: v.get("nodes").to_string(),
        boot_type,
        image: match v.get("image") {
            "-" => None,
            i => Some(i.to_string()),
        },
        extra: None,
        net: ops::NetMode::Default,
        wipe: false,
        once,
    })
}

/// `bootset -n NODESET -b TYPE [-i IMAGE] --reboot [--batch N --interval S]`: assign,
/// then next boot PXE once and a power cycle (power on when off) through the BMCs.
pub fn bootset_reboot(set: &str, images: Vec<String>, inv: Option<Inventory>) -> FormSpec {
    let mut fields = assign_fields(set, images, inv);
    fields.extend([
        FieldSpec::text("batch", "Nodes at a time", count_or_empty)
            .help("Power requests in groups of this many nodes; empty: all at once."),
        FieldSpec::text("interval", "Seconds apart", seconds)
            .default("0")
            .help("From one group's power requests to the next group's."),
    ]);
    FormSpec {
        title: "Assign and reboot nodes".into(),
        recap: |v| {
            let image = match v.get("image") {
                "-" => String::new(),
                i => format!(" {i}"),
            };
            let staged = match v.get("batch") {
                "" => String::new(),
                b => format!(", {b} at a time, {} s apart", v.get("interval")),
            };
            format!(
                "Assign {}{image} to nodes {}, then boot them now: next boot PXE once and a power cycle (power on when off){staged}",
                v.get("boot"),
                v.get("nodes")
            )
        },
        fields,
        submit: |v| {
            let assign = match assign_of(v, false) {
                Ok(a) => a,
                Err(e) => return Action::Invalid(e),
            };
            Action::Run(Request::BootsetReboot {
                assign,
                staging: ops::Staging {
                    batch: v.get("batch").parse().ok(),
                    interval_secs: v.get("interval").parse().unwrap_or(0),
                },
                options: ops::BmcOptions::default(),
            })
        },
    }
}

fn age(s: &str) -> Result<(), String> {
    match s.trim() {
        "" => Ok(()),
        a => ops::gc::parse_age(a).map(|_| ()).map_err(|e| e.to_string()),
    }
}

/// `gc [--older-than AGE]`: the popup lists what its dry run would remove (and what it
/// keeps, and why) before asking.
pub fn gc() -> FormSpec {
    FormSpec {
        title: "Collect transient images and surplus generations".into(),
        recap: |v| {
            let within = match v.get("older").trim() {
                "" => "the configured gc_keep_booted_days".to_string(),
                a => a.to_string(),
            };
            format!(
                "Collect garbage: keep what a node booted (or a transient image changed) within {within}; a dry run lists what goes, then you confirm"
            )
        },
        fields: vec![FieldSpec::text("older", "Older than", age).help(
            "7d, 12h, 30m, 45s or 0 (--older-than). Empty: the config's gc_keep_booted_days.",
        )],
        submit: |v| {
            let older_than = match v.get("older").trim() {
                "" => None,
                a => match ops::gc::parse_age(a) {
                    Ok(d) => Some(d),
                    Err(e) => return Action::Invalid(e.to_string()),
                },
            };
            Action::Ask {
                request: Request::Gc(ops::gc::GcOptions { older_than }),
                preview: true,
            }
        },
    }
}

fn optional_image_name(s: &str) -> Result<(), String> {
    if s.trim().is_empty() {
        Ok(())
    } else {
        image_name(s.trim())
    }
}

fn optional_epoch(s: &str) -> Result<(), String> {
    if s.trim().is_empty() || s.trim().parse::<u64>().is_ok() {
        Ok(())
    } else {
        Err("whole seconds since 1970 (empty: the recorded SOURCE_DATE_EPOCH)".into())
    }
}

/// `rebuild NAME [--as NEW] [--source-date-epoch N]`: the report (bit-identical or what
/// differs) goes to the job's output pane.
pub fn rebuild(name: &str) -> FormSpec {
    FormSpec {
        title: format!("Rebuild image {name}"),
        recap: |v| {
            let new = match v.get("as").trim() {
                "" => ops::rebuild_default_name(v.get("name")),
                n => n.to_string(),
            };
            let epoch = match v.get("epoch").trim() {
                "" => "its recorded SOURCE_DATE_EPOCH".to_string(),
                e => format!("SOURCE_DATE_EPOCH={e}"),
            };
            format!(
                "Rebuild image {} as {new} from its build record at {epoch}, and compare it with generation 1",
                v.get("name")
            )
        },
        fields: vec![
            FieldSpec::text("as", "New image name", optional_image_name)
                .help("--as. Empty: NAME-rebuild."),
            FieldSpec::text("epoch", "SOURCE_DATE_EPOCH", optional_epoch).help(
                "--source-date-epoch. Empty: the recorded one (another one differs in timestamps only).",
            ),
            fixed("name", "Image", name, ""),
        ],
        submit: |v| {
            Action::Run(Request::Rebuild {
                name: v.get("name").to_string(),
                as_name: Some(v.get("as").trim())
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
                epoch: v.get("epoch").trim().parse().ok(),
            })
        },
    }
}

/// NAME or NAME@GENERATION: the name is checked as typed, the generation by the core.
fn image_spec(s: &str) -> Result<(), String> {
    let name = s.rsplit_once('@').map_or(s, |(n, _)| n);
    image_name(name)
}

/// `diff A B`: two livenet images or generations (NAME@3); the report goes to the
/// job's output pane.
pub fn diff(a: &str) -> FormSpec {
    FormSpec {
        title: "Compare two images or generations".into(),
        recap: |v| {
            format!(
                "Compare {} with {}: packages and files added, removed, changed",
                v.get("a"),
                v.get("b")
            )
        },
        fields: vec![
            FieldSpec::text("a", "First", image_spec)
                .default(a)
                .help("An image (its current generation) or NAME@N (a kept generation)."),
            FieldSpec::text("b", "Second", image_spec).help(
                "An image or NAME@N: e.g. the same image at another generation, or NAME-rebuild.",
            ),
        ],
        submit: |v| Action::Diff {
            a: v.get("a").to_string(),
            b: v.get("b").to_string(),
        },
    }
}

fn names(s: &str) -> Vec<String> {
    s.split([',', ' '])
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

/// `replicate [NAME...]`: the names typed (empty: every replica of the config).
pub fn replicate(configured: &[String]) -> FormSpec {
    let known = if configured.is_empty() {
        "(none in the config)".to_string()
    } else {
        configured.join(", ")
    };
    FormSpec {
        title: "Push the boot tree to the replicas".into(),
        recap: |v| {
            match names(v.get("names")).as_slice() {
            [] => "Push the boot tree to every replica (rsync; each switches to the new copy in one step)".into(),
            n => format!(
                "Push the boot tree to {} (rsync; each switches to the new copy in one step)",
                n.join(", ")
            ),
        }
        },
        fields: vec![
            FieldSpec::text("names", "Replicas", anything)
                .help("Names from the config's replicas:, comma-separated. Empty: all of them."),
            fixed(
                "known",
                "Configured",
                &known,
                "The replicas the config names.",
            ),
        ],
        submit: |v| {
            Action::Run(Request::Replicate {
                names: names(v.get("names")),
            })
        },
    }
}

/// `nfs exports --for REPLICA [--output FILE]`: the exports file that replica needs.
pub fn nfs_exports_for(replicas: Vec<String>) -> FormSpec {
    let default = replicas.first().cloned().unwrap_or_default();
    FormSpec {
        title: "Write the NFS exports of a replica".into(),
        recap: |v| {
            let to = match v.get("output").trim() {
                "" => "STATE_DIR/replicas/".to_string() + v.get("replica") + ".exports",
                o => o.to_string(),
            };
            format!(
                "Write the exports replica {} needs to {to} (nothing is reloaded)",
                v.get("replica")
            )
        },
        fields: vec![
            FieldSpec {
                key: "replica",
                label: "Replica",
                kind: FieldKind::Choice(replicas),
                default,
                help: "←→ to choose among the config's replicas (--for).",
            },
            FieldSpec::text("output", "Output file", anything)
                .help("--output. Empty: STATE_DIR/replicas/REPLICA.exports."),
        ],
        submit: |v| {
            Action::Run(Request::NfsExportsFor {
                replica: v.get("replica").to_string(),
                output: Some(v.get("output").trim())
                    .filter(|s| !s.is_empty())
                    .map(PathBuf::from),
            })
        },
    }
}
