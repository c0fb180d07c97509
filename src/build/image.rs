//! What livenet and NFS image creation share before their layouts differ: checking the
//! build inputs (distro, release, packages, mirror, SSH key, password hash) and the
//! build directory in the work dir, on a tmpfs when RAM allows.
use std::path::{Path, PathBuf};

use crate::build::{password, setup, BuildSpec};
use crate::error::{Error, IoContext, Result};
use crate::ctx::Ctx;
use crate::store::record::LivenetType;
use crate::sys::mount::{self, MountGuard};
use crate::sys::remove::remove_tree;

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
