//! Packing benchmark (not a test): on one real built tree, the reference pipeline
//! (dd a full-size file, mkfs.xfs, loop mount, cp -a, mksquashfs with defaults) against
//! this tool's pack for both layouts, then both initramfs flavours.
//!
//! `cargo bench --bench pack` builds a core Debian tree first (mmdebstrap, ~30 s), or
//! uses `BENCH_TREE=/path/to/tree`. Run as root. Prints wall times, sizes and ratios.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use disklessset::config::Config;
use disklessset::ops::Ctx;
use disklessset::sys::Runner;

fn sh(args: &[&str]) {
    let st = Command::new(args[0])
        .args(&args[1..])
        .status()
        .expect("spawn");
    assert!(st.success(), "{args:?} failed");
}

fn size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn mb(b: u64) -> f64 {
    b as f64 / 1e6
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("pack bench: run as root (loop mounts)");
        return;
    }
    let scratch = PathBuf::from("/var/tmp/dls-bench-pack");
    let _ = Command::new("umount").arg("-R").arg(&scratch).status();
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).unwrap();
    sh(&[
        "mount",
        "-t",
        "tmpfs",
        "-o",
        "size=6g",
        "tmpfs",
        scratch.to_str().unwrap(),
    ]);
    let cfg = Config::under_root(&scratch.join("store")).unwrap();
    let ctx = Ctx::new(cfg, Runner::new(false));

    let tree = match std::env::var("BENCH_TREE") {
        Ok(t) => PathBuf::from(t),
        Err(_) => {
            let t = scratch.join("tree");
            let mut spec =
                disklessset::build::BuildSpec::new("debian", disklessset::store::LivenetType::Core)
                    .unwrap();
            spec.extra_packages = vec!["python3".into()];
            let s = Instant::now();
            disklessset::build::builder_for(spec.distro)
                .build(&ctx, &spec, &t)
                .unwrap();
            println!(
                "built a core bookworm tree in {:.1}s",
                s.elapsed().as_secs_f64()
            );
            t
        }
    };
    let content = disklessset::pack::content_bytes(&tree);
    println!("tree: {} ({:.0} MB)", tree.display(), mb(content));
    let size_mib = disklessset::pack::min_size_mib(&tree) + 256;

    // (a) the reference pipeline
    let r = scratch.join("ref");
    std::fs::create_dir_all(r.join("LiveOS")).unwrap();
    std::fs::create_dir_all(r.join("mnt")).unwrap();
    let img = r.join("LiveOS/rootfs.img");
    let s = Instant::now();
    sh(&[
        "dd",
        "if=/dev/zero",
        &format!("of={}", img.display()),
        "bs=1M",
        &format!("count={size_mib}"),
        "status=none",
    ]);
    sh(&["mkfs.xfs", "-q", "-f", img.to_str().unwrap()]);
    sh(&[
        "mount",
        "-o",
        "loop",
        img.to_str().unwrap(),
        r.join("mnt").to_str().unwrap(),
    ]);
    sh(&[
        "cp",
        "-a",
        &format!("{}/.", tree.display()),
        r.join("mnt").to_str().unwrap(),
    ]);
    sh(&["umount", r.join("mnt").to_str().unwrap()]);
    std::fs::remove_dir(r.join("mnt")).unwrap();
    let ref_out = scratch.join("ref.squashfs.img");
    sh(&[
        "mksquashfs",
        r.to_str().unwrap(),
        ref_out.to_str().unwrap(),
        "-noappend",
        "-no-progress",
        "-quiet",
    ]);
    let ref_t = s.elapsed().as_secs_f64();
    let ref_sz = size(&ref_out);
    println!("(a) reference: dd {size_mib} MiB + mkfs.xfs + loop mount + cp -a + mksquashfs gzip: {ref_t:.1}s, {:.1} MB", mb(ref_sz));

    // (b) this tool
    let nat = scratch.join("native.squashfs.img");
    let s = Instant::now();
    disklessset::pack::pack_native(&ctx, &tree, &nat).unwrap();
    let nat_t = s.elapsed().as_secs_f64();
    println!(
        "(b) native layout (zstd-3, all cores): {nat_t:.1}s, {:.1} MB: {:.0}x faster, {:.2}x the size",
        mb(size(&nat)),
        ref_t / nat_t,
        size(&nat) as f64 / ref_sz as f64
    );
    let cmp = scratch.join("compat.squashfs.img");
    let s = Instant::now();
    disklessset::pack::pack_compat(&ctx, &tree, size_mib, &scratch.join("compat-scratch"), &cmp)
        .unwrap();
    let cmp_t = s.elapsed().as_secs_f64();
    println!(
        "(b) compat layout ({size_mib} MiB ext4 via mkfs.ext4 -d, zstd-3): {cmp_t:.1}s, {:.1} MB: {:.0}x faster, {:.2}x the size",
        mb(size(&cmp)),
        ref_t / cmp_t,
        size(&cmp) as f64 / ref_sz as f64
    );

    // initramfs, both flavours
    let kver = disklessset::build::kernel_version(&tree).unwrap();
    for flavour in ["own", "dracut"] {
        let rep = disklessset::kernel::build_initramfs(&ctx, &tree, &kver, flavour).unwrap();
        println!(
            "initramfs {flavour}: {:.1}s, {:.1} MB",
            rep.seconds,
            mb(rep.size_bytes)
        );
    }
    let _ = Command::new("umount").arg("-R").arg(&scratch).status();
    let _ = std::fs::remove_dir_all(&scratch);
}
