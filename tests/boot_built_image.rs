//! End to end for the builders: a core bookworm tree built with mmdebstrap and set up
//! by `setup_tree` boots in a VM (iPXE -> the project's own initramfs -> squashfs over
//! HTTP -> systemd) and prints the boot marker of `disklessset-ready.service`, with
//! the name read from os-release; the network set up by setup (networkd,
//! KeepConfiguration) keeps the address. Needs root, the Debian mirror, QEMU,
//! busybox-static (scripts/install-deps.sh). ~1.5 min under TCG.
mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::vm::{boot_until_marker, HttpServer, VmBoot};
use disklessset::build::{self, setup_tree, BuildSpec, SetupSpec};
use disklessset::kernel::own::{build_own_initramfs, OwnInitramfsOptions};
use disklessset::store::record::LivenetType;
use disklessset::sys::mount::{self, MountGuard};
use disklessset::sys::runner::Runner;
use disklessset::{Config, Ctx};

#[test]
fn built_and_set_up_core_image_boots_to_the_marker() {
    common::require_root();
    let dir = tempfile::tempdir().unwrap();
    let runner = Runner::new(false);
    let mnt = dir.path().join("tmpfs");
    std::fs::create_dir(&mnt).unwrap();
    mount::mount(
        &runner,
        Some("tmpfs"),
        "tmpfs",
        &mnt,
        &["size=6g", "mode=0755"],
    )
    .unwrap();
    let guard = MountGuard::new(&runner, &mnt);
    let mut cfg = Config::under_root(&dir.path().join("store")).unwrap();
    cfg.data_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let ctx = Ctx::new(cfg, runner);

    let tree = mnt.join("tree");
    let spec = BuildSpec::new("debian", LivenetType::Core).unwrap();
    let t0 = Instant::now();
    build::builder_for(spec.distro)
        .build(&ctx, &spec, &tree)
        .unwrap();
    let built = t0.elapsed().as_secs_f64();
    let kv = build::kernel_version(&tree).unwrap();
    let mut ss = SetupSpec::new("boot-core");
    ss.password_hash = Some(build::hash_password("pw").unwrap());
    ss.ssh_pub_key = Some("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKp3 t@ci".into());
    setup_tree(&ctx, &tree, &ss).unwrap();

    let www = mnt.join("www");
    std::fs::create_dir(&www).unwrap();
    disklessset::pack::pack_native(&ctx, &tree, &www.join("squashfs.img")).unwrap();
    std::fs::copy(tree.join(format!("boot/vmlinuz-{kv}")), www.join("vmlinuz")).unwrap();
    build_own_initramfs(&OwnInitramfsOptions::new(
        &tree,
        &kv,
        www.join("initrd.img"),
    ))
    .unwrap();
    let http = HttpServer::serve_dir(&www).unwrap();
    std::fs::write(
        www.join("boot.ipxe"),
        format!(
            "#!ipxe\nkernel {} root=live:{} ip=dhcp console=ttyS0\ninitrd {}\nboot\n",
            http.guest_url("vmlinuz"),
            http.guest_url("squashfs.img"),
            http.guest_url("initrd.img")
        ),
    )
    .unwrap();

    let marker = format!("disklessset: image boot-core booted (kernel {kv}, os-release boot-core)");
    let mut vm = VmBoot::new(
        http.guest_url("boot.ipxe"),
        dir.path().join("serial.log"),
        marker.clone(),
    );
    vm.timeout = Duration::from_secs(240);
    let run = boot_until_marker(&vm).unwrap();
    eprintln!(
        "built in {built:.1} s; power-on to marker {:.1} s",
        run.elapsed_secs
    );
    assert!(run.log.contains(&marker));
    // systemd reports failed units on the console: none of what setup configured.
    let failed: Vec<&str> = run.log.lines().filter(|l| l.contains("FAILED")).collect();
    for l in &failed {
        eprintln!("console: {l}");
    }
    for unit in ["networkd", "ssh", "getty", "disklessset", "resolved"] {
        assert!(
            !failed.iter().any(|l| l.contains(unit)),
            "{unit} failed: {failed:?}"
        );
    }
    drop(http);
    guard.unmount().unwrap();
}
