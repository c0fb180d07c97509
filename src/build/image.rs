//! What livenet and NFS image creation share before their layouts differ: checking the
//! build inputs (distro, release, packages, mirror, SSH key, password hash) and the
//! build directory in the work dir, on a tmpfs when RAM allows.
use std::path::{Path, PathBuf};

use crate::build::{self as b, password, setup, BuildSpec};
use crate::ctx::Ctx;
use crate::error::{Error, IoContext, Result};
use crate::store::record::LivenetType;
use crate::store::{self, Creation, ImageClass, ImageRecord};
use crate::sys::mount::{self, MountGuard};
use crate::sys::remove::remove_tree;

/// The build options `livenet create` and `nfs staging create` share (what their
/// command lines and parameters files give): one type, filled once.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildOptions {
    pub distro: String,
    /// None: the manifest's default release.
    pub release: Option<String>,
    pub livenet_type: LivenetType,
    /// A crypt(3) SHA-512 hash (the clear password never reaches here).
    pub password_hash: Option<String>,
    /// Public key file; its text goes to /root/.ssh/authorized_keys.
    pub ssh_pub_key_file: Option<PathBuf>,
    pub selinux: bool,
    pub optimize: bool,
    pub packages: Vec<String>,
    pub mirror: Option<String>,
    /// `--from`: the root tree from a directory, a tarball or an OCI image instead of
    /// the repositories (build::import).
    pub from: Option<PathBuf>,
    /// `--kernel-from`: the kernel and modules of this livenet image, for a tree that
    /// has none.
    pub kernel_from: Option<String>,
    /// `--transient`: a per-host image `gc` removes once no node is assigned to it nor
    /// booted it lately (recorded as `transient: true`).
    pub transient: bool,
    /// Reproducible builds and `rebuild` (issue 15).
    pub repro: Repro,
}

/// What makes a build the same as another (issue 15): the epoch (None: the
/// environment's `SOURCE_DATE_EPOCH`, else now), the package pins of a `rebuild`, the
/// image name written into the tree (a rebuild under another name is set up as the
/// image it reproduces, so that the two can be bit-identical).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Repro {
    pub epoch: Option<u64>,
    pub pins: Vec<(String, String)>,
    pub setup_name: Option<String>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            distro: "debian".into(),
            release: None,
            livenet_type: LivenetType::Core,
            password_hash: None,
            ssh_pub_key_file: None,
            selinux: false,
            optimize: false,
            packages: Vec::new(),
            mirror: None,
            from: None,
            kernel_from: None,
            repro: Repro::default(),
            transient: false,
        }
    }
}

impl BuildOptions {
    pub fn inputs(&self) -> Inputs<'_> {
        Inputs {
            distro: &self.distro,
            release: self.release.as_deref(),
            livenet_type: self.livenet_type,
            packages: &self.packages,
            optimize: self.optimize,
            mirror: self.mirror.as_deref(),
            ssh_pub_key_file: self.ssh_pub_key_file.as_deref(),
            password_hash: self.password_hash.as_deref(),
        }
    }

    /// The record of a new image built with these options (kernel, initramfs and
    /// layout are the module's to fill).
    pub fn record(&self, name: &str, class: ImageClass, release: &str) -> ImageRecord {
        let mut rec = ImageRecord::new(name, class);
        rec.livenet_type = Some(self.livenet_type);
        rec.distro = Some(self.distro.clone());
        rec.release_version = Some(release.to_string());
        // issue 12: the hash is kept in the secrets dir (store::secrets), never in the
        // record (image_data.yml sits in the web root).
        rec.password = None;
        rec.ssh_pub_key = self
            .ssh_pub_key_file
            .as_ref()
            .map(|p| p.display().to_string());
        rec.selinux = self.selinux;
        rec.optimize = self.optimize;
        rec.additional_packages = self.packages.clone();
        if self.transient {
            crate::store::record::set_transient(&mut rec);
        }
        rec
    }
}

/// What the shared first half of a creation hands the module: the set-up tree in the
/// work dir, the new record, the creation marker (finished by the module once it is
/// published).
pub struct Built {
    pub rec: ImageRecord,
    pub creation: Option<Creation>,
    pub work: PathBuf,
    pub tree: PathBuf,
    pub guard: Option<MountGuard>,
    pub on_tmpfs: bool,
    pub kver: String,
    pub build_seconds: f64,
    /// The build's `SOURCE_DATE_EPOCH`.
    pub epoch: u64,
}

impl Built {
    /// The build record (issue 15, `build.yml`) of this build with `b`: the
    /// declaration, the epoch, the kernel, the initramfs (flavour and digest) and the
    /// package manifest read from the tree. What only a livenet image has (layout,
    /// size, squashfs digest) is the module's to fill. One function for both classes:
    /// every image records its package manifest and its build inputs.
    pub fn build_record(
        &self,
        ctx: &Ctx,
        b: &BuildOptions,
        initramfs: &Path,
    ) -> Result<b::reproducible::BuildRecord> {
        let builder = if b.from.is_some() {
            "import"
        } else {
            b::builder_for(b::Distro::parse(&b.distro)?).tool()
        };
        Ok(b::reproducible::BuildRecord {
            builder: builder.into(),
            distro: b.distro.clone(),
            release: self.rec.release_version.clone().unwrap_or_default(),
            livenet_type: b.livenet_type.as_str().into(),
            mirror: b.mirror.clone(),
            packages: b.packages.clone(),
            optimize: b.optimize,
            selinux: b.selinux,
            ssh_pub_key_file: b.ssh_pub_key_file.clone(),
            layout: None,
            size_mib: None,
            initramfs: self.rec.initramfs_flavour.clone(),
            kernel: Some(self.kver.clone()),
            source_date_epoch: self.epoch,
            from: b.from.clone(),
            squashfs_sha256: None,
            initramfs_sha256: crate::fsutil::sha256_file(initramfs).ok(),
            rebuilt_from: b.repro.setup_name.clone(),
            manifest: b::pkglist::read_tree(ctx, &self.tree)?,
        })
    }
}

/// How a module wants its tree built and set up.
pub struct Pipeline<'a> {
    pub name: &'a str,
    pub class: ImageClass,
    /// The creation marker's operation (`livenet create`).
    pub operation: &'a str,
    /// The initramfs flavour the module will build (checked before any work).
    pub initramfs: &'a str,
    /// What a dry run notes before any step ("create livenet image NAME (...)").
    pub plan: String,
    /// Steps of the whole creation (the module's steps follow the three here).
    pub total_steps: usize,
    /// Step 3's label.
    pub setup_label: &'a str,
    /// What a dry run notes for step 3.
    pub setup_plan: String,
    pub nfs_root: bool,
    pub generation: Option<u32>,
}

/// Checks the name, the initramfs flavour and the build inputs, reserves the name (creation marker), and runs the three steps
/// every built image shares: 1. the build directory (tmpfs when RAM allows), 2. the
/// packages from the repositories, 3. the setup (password, key, os-release, console,
/// ready unit). On failure the image stays `corrupted` (clearable), nothing mounted
/// once the guard drops.
pub fn build_tree(ctx: &Ctx, o: &BuildOptions, p: &Pipeline) -> Result<Built> {
    let dry = ctx.runner.dry_run();
    crate::names::image(p.name)?;
    crate::kernel::initramfs_name(p.initramfs, "x")?;
    let Checked {
        mut spec,
        release,
        ssh_key,
    } = check_inputs(ctx, &o.inputs())?;
    let epoch = match o.repro.epoch {
        Some(e) => e,
        None => b::reproducible::epoch()?,
    };
    spec.epoch = Some(epoch);
    spec.pins = o.repro.pins.clone();
    let builder = b::builder_for(spec.distro);
    // An imported tree is read through once before anything is reserved: a refusal
    // (hostile entry, no kernel) leaves nothing in the store.
    let imported = match &o.from {
        Some(from) => Some(b::import::prepare(ctx, p.name, o, from)?),
        None => None,
    };
    let creation = if dry {
        ctx.runner.note(p.plan.replace("{release}", &release));
        None
    } else {
        Some(store::begin_creation(&ctx.cfg, p.name, p.operation)?)
    };
    let mut rec = o.record(p.name, p.class, &release);

    ctx.progress
        .step(1, p.total_steps, "prepare the build directory");
    let work = ctx.cfg.image_workdir(p.name);
    let BuildDir {
        tree,
        guard,
        on_tmpfs,
    } = prepare_build_dir(ctx, &work, o.livenet_type)?;

    let t = std::time::Instant::now();
    if let Some(imp) = &imported {
        ctx.progress.step(
            2,
            p.total_steps,
            &format!(
                "import the {} {}",
                imp.source.kind(),
                imp.source.path().display()
            ),
        );
        b::import::apply(ctx, imp, &tree, &work, &mut rec)?;
    } else {
        ctx.progress.step(
            2,
            p.total_steps,
            &format!(
                "install {} {release} ({}) with {}",
                o.distro,
                o.livenet_type.as_str(),
                builder.tool()
            ),
        );
        builder.build(ctx, &spec, &tree)?;
        if !spec.pins.is_empty() && !dry {
            let got = b::pkglist::read_tree(ctx, &tree)?;
            let unmet = b::pkglist::unmet_pins(&spec.pins, &got);
            if !unmet.is_empty() {
                return Err(Error::invalid(format!(
                    "the mirror no longer has these recorded versions: {}: point --mirror at an archive that has them (e.g. a snapshot.debian.org date), or build anew with `livenet create`",
                    unmet.join(", ")
                )));
            }
        }
    }
    let build_seconds = t.elapsed().as_secs_f64();

    ctx.progress.step(3, p.total_steps, p.setup_label);
    let kver = if dry {
        "KVER".to_string()
    } else {
        b::kernel_version(&tree)?
    };
    let mut setup = b::SetupSpec::new(o.repro.setup_name.as_deref().unwrap_or(p.name));
    setup.password_hash = o.password_hash.clone();
    setup.ssh_pub_key = ssh_key;
    setup.selinux = o.selinux;
    setup.kernel = Some(kver.clone());
    setup.generation = p.generation;
    setup.nfs_root = p.nfs_root;
    if dry {
        ctx.runner
            .note(p.setup_plan.replace("{tree}", &tree.display().to_string()));
    } else {
        b::setup_tree(ctx, &tree, &setup)?;
        let n = b::reproducible::normalise_tree(&tree, epoch)?;
        tracing::debug!("reproducible: {n:?}");
    }
    if dry {
        ctx.runner.note(format!(
            "keep the root password hash and authorized keys of {} in {} (not in the image)",
            p.name,
            store::secrets::image_dir(&ctx.cfg, p.name).display()
        ));
    } else {
        store::secrets::store_image_secrets(
            &ctx.cfg,
            p.name,
            o.password_hash.as_deref(),
            setup.ssh_pub_key.as_deref(),
        )?;
    }
    Ok(Built {
        rec,
        creation,
        work,
        tree,
        guard,
        on_tmpfs,
        kver,
        build_seconds,
        epoch,
    })
}

/// The inputs both `livenet create` and `nfs staging create` take.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub distro: &'a str,
    pub release: Option<&'a str>,
    pub livenet_type: LivenetType,
    pub packages: &'a [String],
    pub optimize: bool,
    pub mirror: Option<&'a str>,
    pub ssh_pub_key_file: Option<&'a Path>,
    pub password_hash: Option<&'a str>,
}

/// Checked inputs: the build spec with its canonical release, the SSH key text.
pub struct Checked {
    pub spec: BuildSpec,
    pub release: String,
    pub ssh_key: Option<String>,
}

/// Checks everything before any work: the spec against its manifest, the key file,
/// the password hash.
pub fn check_inputs(ctx: &Ctx, i: &Inputs) -> Result<Checked> {
    let mut spec = BuildSpec::new(i.distro, i.livenet_type)?;
    spec.release = i.release.map(str::to_string);
    spec.extra_packages = i.packages.to_vec();
    spec.optimize = i.optimize;
    spec.mirror = i.mirror.map(str::to_string);
    let (_manifest, release) = spec.resolve(ctx)?;
    spec.release = Some(release.clone());
    let ssh_key = match i.ssh_pub_key_file {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| {
                Error::invalid(format!("--ssh-key {}: cannot read it: {e}", p.display()))
            })?;
            Some(
                setup::check_ssh_keys(&text)
                    .map_err(|e| Error::invalid(format!("--ssh-key {}: {e}", p.display())))?,
            )
        }
        None => None,
    };
    if let Some(h) = i.password_hash {
        password::check_hash(h)?;
    }
    Ok(Checked {
        spec,
        release,
        ssh_key,
    })
}

/// Room a build tree of this type needs (generous: the tree plus apt's downloads).
pub fn room_mib(t: LivenetType) -> u64 {
    match t {
        LivenetType::Core => 2048,
        LivenetType::Small => 3072,
        LivenetType::Standard => 6144,
    }
}

/// The build directory of an image: `<work>/build`, emptied, on a tmpfs (unmounted when
/// the guard drops) when twice the room is available; the tree goes in `tree`.
pub struct BuildDir {
    pub tree: PathBuf,
    pub guard: Option<MountGuard>,
    pub on_tmpfs: bool,
}

pub fn prepare_build_dir(ctx: &Ctx, work: &Path, t: LivenetType) -> Result<BuildDir> {
    remove_tree(&ctx.runner, work)?;
    let build_dir = work.join("build");
    let room = room_mib(t);
    let on_tmpfs = crate::sys::proc::mem_available_mib() > room * 2;
    if !ctx.runner.dry_run() {
        std::fs::create_dir_all(&build_dir).at(&build_dir)?;
    }
    let mut guard = None;
    if on_tmpfs {
        mount::mount(
            &ctx.runner,
            Some("tmpfs"),
            "tmpfs",
            &build_dir,
            &[&format!("size={room}m"), "mode=0755"],
        )?;
        guard = Some(MountGuard::new(&ctx.runner, &build_dir));
    }
    Ok(BuildDir {
        tree: build_dir.join("tree"),
        guard,
        on_tmpfs,
    })
}
