//! Parameters files: batch creation of images (`create --params FILE`).
//!
//! Two formats, told apart by their top-level key:
//! - **reference** (`image_data:`): BlueBanquise's parameters files, unchanged — one image,
//!   `Type.CORE`-style enums, `livenet_size` in MiB, Python list reprs (`['gzip']`),
//!   `True`/`False`, a clear `password`. A reference livenet image gets the compat layout
//!   (`LiveOS/rootfs.img`, of `livenet_size` MiB, `auto` when absent).
//! - **native** (`images:`): several images in one file (livenet, nfs staging, nfs golden
//!   with nodes), with optional `defaults:` applied to every image. See
//!   `share/params/native.yml`.
//!
//! Everything is validated before any work; every error is
//! `FILE:LINE:COLUMN: FIELD: problem (allowed: ...)`. Unknown fields are refused.
//!
//! The distro: native images say `distro:` (or inherit `defaults.distro`); otherwise the
//! `--distro` given on the command line; otherwise `debian`. Reference files have no
//! distro field (the reference was EL-only): `--distro`, else `debian`.
//!
//! The clear password is accepted only here: it is hashed at once (SHA-512 crypt) and
//! the clear text is kept only in memory, in a [`Secret`] that cannot be printed,
//! serialised or cloned, to tell whether an existing image has that password.
//!
//! Files: `raw` (the documents as serde reads them), `validate` (parsing and checks
//! with positions), `compare` (an entry against an existing image). The operation that
//! creates the images is `ops::create_from_params`.
mod compare;
mod raw;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_saphyr::Spanned;

use crate::build::{self, password};
use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::modules::livenet::LivenetCreate;
use crate::store::{self, ImageClass};

pub use compare::differences;
pub use validate::parse;
pub(crate) use validate::perr;
use validate::P;

/// A position in the parameters file (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
}

impl Pos {
    const START: Pos = Pos { line: 1, column: 1 };

    fn of<T>(s: &Spanned<T>) -> Pos {
        let l = &s.referenced;
        if l.line() == 0 {
            Pos::START
        } else {
            Pos {
                line: l.line(),
                column: l.column().max(1),
            }
        }
    }
}

/// A clear password, held in memory only: no Debug text, no Serialize, no Clone; its
/// bytes are overwritten when dropped.
pub struct Secret(String);

impl Secret {
    /// Does this password match a stored crypt hash?
    pub fn matches(&self, hash: &str) -> bool {
        password::verify_password(&self.0, hash)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        let mut b = std::mem::take(&mut self.0).into_bytes();
        b.iter_mut().for_each(|x| *x = 0);
        std::hint::black_box(&b);
    }
}

/// The two formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Reference,
    Native,
}

/// What an entry creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ImageKind {
    #[serde(rename = "livenet")]
    Livenet,
    #[serde(rename = "nfs-staging")]
    NfsStaging,
    #[serde(rename = "nfs-golden")]
    NfsGolden,
}

impl ImageKind {
    pub const NATIVE_NAMES: &'static str = "livenet, nfs-staging, nfs-golden";

    pub fn as_str(self) -> &'static str {
        match self {
            ImageKind::Livenet => "livenet",
            ImageKind::NfsStaging => "nfs-staging",
            ImageKind::NfsGolden => "nfs-golden",
        }
    }

    pub fn class(self) -> ImageClass {
        match self {
            ImageKind::Livenet => ImageClass::LivenetImage,
            ImageKind::NfsStaging => ImageClass::NfsStagingImage,
            ImageKind::NfsGolden => ImageClass::NfsGoldenImage,
        }
    }
}

/// One image of a parameters file, validated.
#[derive(Debug)]
pub struct ImageParams {
    pub name: String,
    pub kind: ImageKind,
    /// Where the entry starts.
    pub at: Pos,
    /// What to build (livenet and nfs staging): the password is already a hash here.
    pub create: LivenetCreate,
    /// The kernel version the image must end up with (`vmlinuz-` stripped), if given.
    pub kernel: Option<String>,
    /// nfs-golden: the staging image it is made from.
    pub from: Option<String>,
    /// nfs-golden: nodes (a node set) to add.
    pub nodes: Option<String>,
    /// Whether the initramfs flavour was given explicitly (compared only then).
    pub initramfs_given: bool,
    positions: BTreeMap<&'static str, Pos>,
    password: Option<Secret>,
}

impl ImageParams {
    /// Where `field` was written (the entry's start when it was not).
    pub fn pos(&self, field: &str) -> Pos {
        self.positions.get(field).copied().unwrap_or(self.at)
    }
}

/// A parsed and validated parameters file.
#[derive(Debug)]
pub struct ParamsFile {
    pub path: PathBuf,
    pub format: Format,
    pub images: Vec<ImageParams>,
}

/// Allowed `image_class` values in a reference parameters file.
pub const REFERENCE_CLASSES: &str = "LivenetImage, NfsStagingImage";

/// Is creating NFS images available in this build?
pub const NFS_AVAILABLE: bool = true;

/// Reads, parses and validates a parameters file against this installation: releases
/// (against the distro's manifest), SSH key files, NFS availability, golden sources.
/// Nothing is changed.
pub fn load(ctx: &Ctx, path: &Path, distro: Option<&str>) -> Result<ParamsFile> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::invalid(format!(
            "parameters file {}: cannot read it: {e}",
            path.display()
        ))
    })?;
    let mut pf = parse(&text, path, distro)?;
    let p = P { file: path };
    let names_in_store = if ctx.cfg.images_dir.is_dir() {
        store::names(&ctx.cfg)?
    } else {
        Vec::new()
    };
    for ip in &mut pf.images {
        if ip.kind != ImageKind::Livenet && !NFS_AVAILABLE {
            return Err(p.err(
                if pf.format == Format::Reference {
                    ip.pos("image_class")
                } else {
                    ip.pos("kind")
                },
                if pf.format == Format::Reference {
                    "image_class"
                } else {
                    "kind"
                },
                format!(
                    "nfs images are not available in this build (allowed: {})",
                    if pf.format == Format::Reference {
                        "LivenetImage"
                    } else {
                        "livenet"
                    }
                ),
            ));
        }
        if ip.kind == ImageKind::NfsGolden {
            continue;
        }
        let mut spec =
            build::BuildSpec::new(&ip.create.build.distro, ip.create.build.livenet_type)?;
        spec.release = ip.create.build.release.clone();
        spec.extra_packages = ip.create.build.packages.clone();
        spec.mirror = ip.create.build.mirror.clone();
        let (_, release) = spec.resolve(ctx).map_err(|e| {
            let mut msg = e.to_string();
            if pf.format == Format::Reference && distro.is_none() {
                msg.push_str(&format!(
                    "; reference files carry no distro: this one was taken as {} (pass --distro rocky, alma, rhel or fedora for an EL release)",
                    ip.create.build.distro
                ));
            }
            let field = match pf.format {
                Format::Reference => "release_version",
                Format::Native => "release",
            };
            p.err(ip.pos("release"), field, msg)
        })?;
        ip.create.build.release = Some(release);
        if let Some(k) = &ip.create.build.ssh_pub_key_file {
            let text = std::fs::read_to_string(k).map_err(|e| {
                p.err(
                    ip.pos("ssh_pub_key"),
                    "ssh_pub_key",
                    format!("cannot read {}: {e}", k.display()),
                )
            })?;
            build::setup::check_ssh_keys(&text)
                .map_err(|e| p.wrap(ip.pos("ssh_pub_key"), "ssh_pub_key", e))?;
        }
    }
    for ip in &pf.images {
        if let Some(from) = &ip.from {
            let in_file = pf.images.iter().any(|o| &o.name == from);
            if !in_file && !names_in_store.contains(from) {
                return Err(p.err(
                    ip.pos("from"),
                    "from",
                    format!("no image {from} in the store nor earlier in this file (allowed: an nfs-staging image)"),
                ));
            }
        }
    }
    Ok(pf)
}

#[cfg(test)]
mod tests {
    use super::validate::*;
    use super::*;
    use crate::modules::livenet::SizeSpec;
    use crate::store::ImageRecord;
    use crate::store::{Layout, LivenetType};

    /// The seed README's livenet example, verbatim.
    pub const SEED_LIVENET: &str = "  image_data:\n\n      name: livenet1\n      password: root\n      kernel: vmlinuz-4.18.0-305.el8.x86_64\n      livenet_type: Type.CORE\n      livenet_size: 700\n      ssh_pub_key: /root/.ssh/id_rsa.pub\n      selinux: False\n      optimize: False\n      additional_packages: ['gzip']\n      release_version: 8\n      image_class: LivenetImage\n";

    pub const SEED_NFS: &str = "  image_data:\n\n      name: nfs1\n      password: root\n      kernel: vmlinuz-4.18.0-305.el8.x86_64\n      additional_packages: ['gzip']\n      release_version: 8\n      image_class: NfsStagingImage\n    \n";

    fn f() -> &'static Path {
        Path::new("p.yml")
    }

    #[test]
    fn seed_livenet_example_parses() {
        let pf = parse(SEED_LIVENET, f(), None).unwrap();
        assert_eq!(pf.format, Format::Reference);
        let i = &pf.images[0];
        assert_eq!(i.name, "livenet1");
        assert_eq!(i.kind, ImageKind::Livenet);
        assert_eq!(i.create.build.livenet_type, LivenetType::Core);
        assert_eq!(i.create.layout, Layout::Compat);
        assert_eq!(i.create.size, Some(SizeSpec::Mib(700)));
        assert_eq!(i.create.build.packages, vec!["gzip"]);
        assert_eq!(i.create.build.release.as_deref(), Some("8"));
        assert_eq!(i.kernel.as_deref(), Some("4.18.0-305.el8.x86_64"));
        assert_eq!(i.create.build.distro, "debian");
        assert_eq!(
            i.create.build.ssh_pub_key_file.as_deref(),
            Some(Path::new("/root/.ssh/id_rsa.pub"))
        );
        let h = i.create.build.password_hash.as_deref().unwrap();
        assert!(h.starts_with("$6$") && password::verify_password("root", h));
        assert!(
            !format!("{pf:?}").contains("root\""),
            "the clear password leaks"
        );
        let pf = parse(SEED_LIVENET, f(), Some("rocky")).unwrap();
        assert_eq!(pf.images[0].create.build.distro, "rocky");
    }

    #[test]
    fn seed_nfs_example_parses() {
        let pf = parse(SEED_NFS, f(), None).unwrap();
        let i = &pf.images[0];
        assert_eq!(i.kind, ImageKind::NfsStaging);
        assert_eq!(i.create.build.packages, vec!["gzip"]);
    }

    #[test]
    fn shipped_examples_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("share/params");
        let r = dir.join("reference-livenet.yml");
        let pf = parse(&std::fs::read_to_string(&r).unwrap(), &r, None).unwrap();
        assert_eq!(pf.format, Format::Reference);
        let n = dir.join("native.yml");
        let pf = parse(&std::fs::read_to_string(&n).unwrap(), &n, None).unwrap();
        assert_eq!(pf.format, Format::Native);
        let kinds: Vec<ImageKind> = pf.images.iter().map(|i| i.kind).collect();
        assert_eq!(
            kinds,
            vec![
                ImageKind::Livenet,
                ImageKind::Livenet,
                ImageKind::Livenet,
                ImageKind::NfsStaging,
                ImageKind::NfsGolden
            ]
        );
        assert_eq!(pf.images[1].create.layout, Layout::Compat);
        let transient: Vec<bool> = pf.images.iter().map(|i| i.create.build.transient).collect();
        assert_eq!(transient, vec![false, false, true, false, false]);
        assert_eq!(pf.images[4].nodes.as_deref(), Some("c[001-004]"));
    }

    fn err(text: &str) -> String {
        parse(text, f(), None).unwrap_err().to_string()
    }

    #[test]
    fn transient_in_both_formats_with_positions() {
        let pf = parse(
            "image_data:\n  name: a\n  image_class: LivenetImage\n  transient: True\n",
            f(),
            None,
        )
        .unwrap();
        assert!(pf.images[0].create.build.transient);
        let pf = parse(
            "defaults:\n  transient: true\nimages:\n  - name: a\n    kind: livenet\n  - name: b\n    kind: nfs-staging\n    transient: false\n",
            f(),
            None,
        )
        .unwrap();
        let t: Vec<bool> = pf.images.iter().map(|i| i.create.build.transient).collect();
        assert_eq!(t, vec![true, false]);
        let pf = parse("images:\n  - name: a\n    kind: livenet\n", f(), None).unwrap();
        assert!(!pf.images[0].create.build.transient, "false unless said");
        let e = err("image_data:\n  name: a\n  image_class: LivenetImage\n  transient: Maybe\n");
        assert!(
            e.starts_with("p.yml:4:14: transient: ") && e.contains("allowed: true, false"),
            "{e}"
        );
        let e = err("images:\n  - name: a\n    kind: livenet\n    transient: 2\n");
        assert!(
            e.starts_with("p.yml:4:16: transient: ") && e.contains("not a boolean"),
            "{e}"
        );
        let e =
            err("images:\n  - name: g\n    kind: nfs-golden\n    from: s\n    transient: true\n");
        assert!(
            e.starts_with("p.yml:5:16: transient: not used by nfs-golden"),
            "{e}"
        );
    }

    #[test]
    fn errors_have_file_line_column_field_and_allowed_values() {
        let e = err("image_data:\n  name: a\n  image_class: FooImage\n");
        assert_eq!(
            e,
            "p.yml:3:16: image_class: unknown image class \"FooImage\" (allowed: LivenetImage, NfsStagingImage)"
        );
        let e = err("image_data:\n  name: a\n  image_class: LivenetImage\n  colour: blue\n");
        assert!(
            e.starts_with("p.yml:4:3: colour: unknown field (allowed: name, image_class"),
            "{e}"
        );
        let e =
            err("image_data:\n  name: a\n  image_class: LivenetImage\n  livenet_type: Type.HUGE\n");
        assert!(
            e.starts_with("p.yml:4:17: livenet_type: ") && e.contains("Type.CORE"),
            "{e}"
        );
        let e = err("image_data:\n  name: a\n  image_class: LivenetImage\n  livenet_size: 20\n");
        assert!(
            e.starts_with("p.yml:4:17: livenet_size: ") && e.contains("allowed"),
            "{e}"
        );
        let e = err("image_data:\n  name: a\n  image_class: LivenetImage\n  selinux: Maybe\n");
        assert!(
            e.starts_with("p.yml:4:12: selinux: ") && e.contains("allowed: true, false"),
            "{e}"
        );
        let e = err("image_data:\n  name: a b\n  image_class: LivenetImage\n");
        assert!(e.starts_with("p.yml:2:9: name: "), "{e}");
        let e = err("image_data:\n  name: [a\n");
        assert!(e.starts_with("p.yml:2:"), "{e}");
        let e = err("image_data:\n  name: a\n  name: b\n");
        assert!(e.starts_with("p.yml:3:3: name: given twice"), "{e}");
        let e = err("image_data:\n  name: {x: 1}\n");
        assert!(e.starts_with("p.yml:2:9: name: "), "{e}");
        let e = err("hello: world\n");
        assert!(
            e.starts_with("p.yml:1:1: (top level): ") && e.contains("allowed: image_data, images"),
            "{e}"
        );
        let e = err("");
        assert!(e.starts_with("p.yml:1:1: (top level)"), "{e}");
        let e = err("images:\n  - name: a\n    kind: livenet\n    layout: native\n    size: 1G\n");
        assert!(
            e.starts_with("p.yml:5:11: size: only for the compat layout"),
            "{e}"
        );
        let e = err("images:\n  - name: a\n    kind: squash\n");
        assert!(
            e.starts_with("p.yml:3:11: kind: ")
                && e.contains("allowed: livenet, nfs-staging, nfs-golden"),
            "{e}"
        );
        let e = err("images:\n  - name: a\n    kind: livenet\n  - name: a\n    kind: livenet\n");
        assert!(
            e.starts_with("p.yml:4:11: name: image a is declared twice"),
            "{e}"
        );
        let e =
            err("images:\n  - name: g\n    kind: nfs-golden\n    from: s\n    distro: debian\n");
        assert!(
            e.starts_with("p.yml:5:13: distro: not used by nfs-golden"),
            "{e}"
        );
        let e = err("images:\n  - name: a\n    kind: livenet\n    distro: centos\n");
        assert!(
            e.contains("distro: unknown distro") && e.contains("allowed: debian, ubuntu"),
            "{e}"
        );
        let e = err("images:\n  - name: a\n    kind: livenet\n    packages: ['-oops']\n");
        assert!(e.starts_with("p.yml:4:15: packages: "), "{e}");
    }

    #[test]
    fn native_defaults_and_password_hash() {
        let h = password::hash_password("x").unwrap();
        let text = format!(
            "version: 1\ndefaults:\n  distro: debian\n  release: bookworm\n  password_hash: '{h}'\n  packages: [python3]\nimages:\n  - name: a\n    kind: livenet\n  - name: b\n    kind: livenet\n    packages: []\n    type: small\n"
        );
        let pf = parse(&text, f(), Some("rocky")).unwrap();
        assert_eq!(pf.images[0].create.build.distro, "debian");
        assert_eq!(pf.images[0].create.build.packages, vec!["python3"]);
        assert!(pf.images[1].create.build.packages.is_empty());
        assert_eq!(pf.images[1].create.build.livenet_type, LivenetType::Small);
        assert_eq!(
            pf.images[0].create.build.password_hash.as_deref(),
            Some(h.as_str())
        );
    }

    #[test]
    fn comparison() {
        let pf = parse(SEED_LIVENET, f(), None).unwrap();
        let ip = &pf.images[0];
        let mut rec = ImageRecord::new("livenet1", ImageClass::LivenetImage);
        rec.distro = Some("debian".into());
        rec.release_version = Some("8".into());
        rec.livenet_type = Some(LivenetType::Core);
        rec.layout = Some(Layout::Compat);
        rec.livenet_size = Some(700);
        rec.additional_packages = vec!["gzip".into()];
        rec.ssh_pub_key = Some("/root/.ssh/id_rsa.pub".into());
        rec.kernel = Some("vmlinuz-4.18.0-305.el8.x86_64".into());
        rec.password = Some(password::hash_password("root").unwrap());
        assert!(
            differences(ip, &rec).is_empty(),
            "{:?}",
            differences(ip, &rec)
        );
        rec.password = Some(password::hash_password("other").unwrap());
        rec.livenet_size = Some(950); // grown to fit: the reference size is a floor
        assert_eq!(
            differences(ip, &rec).len(),
            1,
            "{:?}",
            differences(ip, &rec)
        );
        rec.livenet_size = Some(600);
        let d = differences(ip, &rec);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d.iter().all(|x| !x.contains("root")), "{d:?}");
    }

    mod fuzz {
        use super::super::*;
        use proptest::prelude::*;

        fn yamlish() -> impl Strategy<Value = String> {
            let key = prop_oneof![
                Just("image_data".to_string()),
                Just("images".to_string()),
                Just("defaults".to_string()),
                Just("name".to_string()),
                Just("image_class".to_string()),
                Just("kind".to_string()),
                Just("livenet_type".to_string()),
                Just("livenet_size".to_string()),
                Just("size".to_string()),
                Just("layout".to_string()),
                Just("additional_packages".to_string()),
                Just("packages".to_string()),
                Just("selinux".to_string()),
                Just("release_version".to_string()),
                Just("kernel".to_string()),
                Just("from".to_string()),
                Just("nodes".to_string()),
                Just("- name".to_string()),
                Just("<<".to_string()),
                "[a-z_]{1,8}",
            ];
            let value = prop_oneof![
                Just(String::new()),
                Just("LivenetImage".to_string()),
                Just("livenet".to_string()),
                Just("nfs-golden".to_string()),
                Just("Type.CORE".to_string()),
                Just("['gzip', 'vim']".to_string()),
                Just("[a, [b]]".to_string()),
                Just("{a: 1}".to_string()),
                Just("True".to_string()),
                Just("700".to_string()),
                Just("1.5G".to_string()),
                Just("&a x".to_string()),
                Just("*a".to_string()),
                Just("c[001-004]".to_string()),
                Just("'unterminated".to_string()),
                Just("\"q\\u00e9\"".to_string()),
                Just("|".to_string()),
                "[ -~]{0,12}",
            ];
            let line =
                (0usize..8, key, value).prop_map(|(i, k, v)| format!("{}{k}: {v}", " ".repeat(i)));
            prop::collection::vec(line, 0..14).prop_map(|l| l.join("\n"))
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

            #[test]
            fn parser_never_panics_on_arbitrary_text(s in "\\PC{0,300}") {
                let _ = parse(&s, Path::new("f.yml"), None);
            }

            #[test]
            fn parser_never_panics_on_yamlish_text(s in yamlish()) {
                match parse(&s, Path::new("f.yml"), None) {
                    Ok(pf) => prop_assert!(!pf.images.is_empty()),
                    Err(e) => {
                        let m = e.to_string();
                        prop_assert!(!m.contains('\n'), "{}", m);
                    }
                }
            }
        }
    }
}
