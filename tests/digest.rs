//! Downloads that cannot be torn (issue 11): the image's boot script carries the sha256
//! of its published squashfs; the own initramfs refuses a download that does not match,
//! says so and retries with back-off; once the served file is right again, it boots.
mod common;

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::vm::{boot_until_marker, HttpServer, VmBoot};
use common::{sha256_hex, Store};

fn flip_byte(p: &Path, at: u64) {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(p)
        .unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    let mut b = [0u8; 1];
    f.read_exact(&mut b).unwrap();
    b[0] ^= 0xff;
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&b).unwrap();
    f.sync_all().unwrap();
}

#[test]
fn corrupted_squashfs_is_refused_retried_and_boots_once_restored() {
    let s = Store::new();
    let name = "dig1";
    s.core_image(name, &[]);
    let img: PathBuf = s.images().join(name).join("squashfs.img");
    let want = sha256_hex(&img);

    // The digest is recorded per generation, shown by `show`, and in the boot script.
    let sidecar =
        std::fs::read_to_string(s.images().join(name).join("squashfs.img.sha256")).unwrap();
    assert_eq!(sidecar, format!("{want}  squashfs.img\n"));
    let show: serde_json::Value = serde_json::from_str(&s.ok(&["show", name, "--json"])).unwrap();
    assert_eq!(show["sha256"], want.as_str(), "{show}");
    assert!(s.ok(&["show", name]).contains(&format!("sha256: {want}")));
    let script = std::fs::read_to_string(s.images().join(name).join("boot.ipxe")).unwrap();
    assert!(
        script.contains(&format!(" dl.sha256={want} ")),
        "boot.ipxe without the digest:\n{script}"
    );

    // The image script retries its kernel/initrd with back-off (only labels it has).
    assert!(script.contains("|| goto dls-retry-1\n"), "{script}");
    assert!(script.contains("\n:dls-failed\n"), "{script}");

    // One byte of the served file flipped in place (restored below).
    let size = std::fs::metadata(&img).unwrap().len();
    let at = size / 2;
    flip_byte(&img, at);
    assert_ne!(sha256_hex(&img), want);

    let web = s.root().join("www");
    let server = HttpServer::serve_dir(&web).unwrap();
    std::fs::write(
        web.join("entry-digest.ipxe"),
        common::entry_script(server.port, name, "boot.ipxe"),
    )
    .unwrap();
    let log = s.root().join("serial-digest.log");

    // Restores the byte once the node has said it refuses the download.
    let done = Arc::new(AtomicBool::new(false));
    let restored = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (log, img, done, restored) = (
            log.clone(),
            img.clone(),
            Arc::clone(&done),
            Arc::clone(&restored),
        );
        std::thread::spawn(move || {
            let start = Instant::now();
            while !done.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(900) {
                let text = std::fs::read(&log).unwrap_or_default();
                if String::from_utf8_lossy(&text).contains("sha256 mismatch") {
                    flip_byte(&img, at);
                    restored.store(true, Ordering::Relaxed);
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let mut vm = VmBoot::new(
        server.guest_url("entry-digest.ipxe"),
        &log,
        format!("disklessset: image {name} booted"),
    );
    vm.timeout = Duration::from_secs(900);
    let run = boot_until_marker(&vm);
    done.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    let run = run.unwrap_or_else(|e| panic!("{name} did not boot: {e}"));
    assert!(
        restored.load(Ordering::Relaxed),
        "no mismatch seen:\n{}",
        run.log
    );
    assert_eq!(sha256_hex(&img), want);
    let mismatch = format!("want {want}): retrying");
    let line = run
        .log
        .lines()
        .find(|l| l.contains("sha256 mismatch (got "))
        .unwrap_or_else(|| panic!("no mismatch line:\n{}", run.log));
    assert!(
        line.starts_with("disklessset-init: ") && line.contains(&mismatch),
        "{line}"
    );
    assert!(
        run.log.contains("sha256 of ") && run.log.contains(" verified"),
        "no verified line:\n{}",
        run.log
    );
    for l in run
        .log
        .lines()
        .filter(|l| l.contains("sha256") || l.contains("retry"))
    {
        eprintln!("console: {}", l.trim_end());
    }
    eprintln!(
        "{name}: power-on to marker {:.1}s (with one refused download)",
        run.elapsed_secs
    );
}

/// The digest in the boot script follows every publish: unmount (a new generation)
/// and rollback rewrite boot.ipxe with the digest of what is now served.
#[test]
fn boot_script_digest_follows_unmount_and_rollback() {
    let s = Store::new();
    let name = "dig2";
    s.core_image(name, &[]);
    let dir = s.images().join(name);
    let img = dir.join("squashfs.img");
    let script = || std::fs::read_to_string(dir.join("boot.ipxe")).unwrap();
    let gen1 = sha256_hex(&img);
    assert!(script().contains(&format!("dl.sha256={gen1} ")));

    s.ok(&["livenet", "mount", name]);
    std::fs::write(
        s.root().join(format!("workdir/{name}/mnt/etc/digest-test")),
        "2\n",
    )
    .unwrap();
    s.ok(&["livenet", "unmount", name]);
    let gen2 = sha256_hex(&img);
    assert_ne!(gen1, gen2);
    assert!(
        script().contains(&format!("dl.sha256={gen2} ")),
        "{}",
        script()
    );
    // the kept generation keeps its own digest
    let kept = std::fs::read_to_string(dir.join("generations/squashfs.img.1.sha256")).unwrap();
    assert_eq!(kept, format!("{gen1}  squashfs.img.1\n"));
    assert_eq!(sha256_hex(&dir.join("generations/squashfs.img.1")), gen1);

    s.ok(&["rollback", name]);
    assert_eq!(sha256_hex(&img), gen1);
    assert!(
        script().contains(&format!("dl.sha256={gen1} ")),
        "{}",
        script()
    );
    let show: serde_json::Value = serde_json::from_str(&s.ok(&["show", name, "--json"])).unwrap();
    assert_eq!(show["sha256"], gen1.as_str());
    assert!(!dir.join("generations/squashfs.img.1.sha256").exists());
    assert_eq!(
        std::fs::read_to_string(dir.join("generations/squashfs.img.2.sha256")).unwrap(),
        format!("{gen2}  squashfs.img.2\n")
    );
}

/// A node that read the boot script before a publish and downloads the squashfs after
/// it: the boot script's digest is the old generation's, the download the new one. The
/// initramfs fetches the generation's sidecar (`squashfs.img.sha256`, same server),
/// sees it names another digest, which the download matches, accepts it and boots.
#[test]
fn squashfs_republished_after_the_boot_script_was_read_still_boots() {
    let s = Store::new();
    let name = "dig3";
    s.core_image(name, &[]);
    let dir = s.images().join(name);
    let img = dir.join("squashfs.img");
    let old = sha256_hex(&img);
    let old_script = std::fs::read_to_string(dir.join("boot.ipxe")).unwrap();
    assert!(old_script.contains(&format!("dl.sha256={old} ")));

    // A publish: the served squashfs, its sidecar and boot.ipxe are the new generation's.
    s.ok(&["livenet", "mount", name]);
    std::fs::write(
        s.root().join(format!("workdir/{name}/mnt/etc/republished")),
        "2\n",
    )
    .unwrap();
    s.ok(&["livenet", "unmount", name]);
    let new = sha256_hex(&img);
    assert_ne!(old, new);
    // What the node read before the publish: the old boot script.
    std::fs::write(dir.join("boot-before-publish.ipxe"), &old_script).unwrap();

    let web = s.root().join("www");
    let server = HttpServer::serve_dir(&web).unwrap();
    std::fs::write(
        web.join("entry-republished.ipxe"),
        common::entry_script(server.port, name, "boot-before-publish.ipxe"),
    )
    .unwrap();
    let log = s.root().join("serial-republished.log");
    let mut vm = VmBoot::new(
        server.guest_url("entry-republished.ipxe"),
        &log,
        format!("disklessset: image {name} booted"),
    );
    vm.timeout = Duration::from_secs(900);
    let run = boot_until_marker(&vm).unwrap_or_else(|e| panic!("{name} did not boot: {e}"));
    let line = run
        .log
        .lines()
        .find(|l| l.contains("squashfs was republished: digest "))
        .unwrap_or_else(|| panic!("no republished line:\n{}", run.log));
    eprintln!("console: {}", line.trim_end());
    assert!(
        line.contains(&format!("digest {new} ")) && line.contains(&old),
        "{line}"
    );
    assert!(
        !run.log.contains("download attempt 2/"),
        "the republished squashfs was downloaded twice:\n{}",
        run.log
    );
    eprintln!(
        "{name}: power-on to marker {:.1}s (squashfs republished under the boot script)",
        run.elapsed_secs
    );
}

/// iPXE retries: the real `disklessset serve` does not have the image's kernel for the
/// first attempt (the file is put back once the node says it failed): the image script
/// waits and tries again, and the node boots.
#[test]
fn ipxe_retries_a_kernel_the_server_did_not_have_and_boots() {
    let s = Store::new();
    let name = "dig4";
    s.core_image(name, &[]);
    let script = std::fs::read_to_string(s.images().join(name).join("boot.ipxe")).unwrap();
    let kernel = script
        .split_whitespace()
        .find_map(|w| w.strip_prefix("${dls-base}/diskless/kernels/vmlinuz-"))
        .map(|v| format!("vmlinuz-{v}"))
        .unwrap_or_else(|| panic!("no kernel in:\n{script}"));
    let kpath = s.root().join("www/diskless/kernels").join(&kernel);
    let hidden = kpath.with_extension("hidden");
    std::fs::rename(&kpath, &hidden).unwrap();

    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let listen = format!("127.0.0.1:{port}");
    let mut serve = s
        .cmd(&["serve", "--listen", &listen])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t.elapsed() < Duration::from_secs(20), "serve did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let web = s.root().join("www");
    std::fs::write(
        web.join("entry-retry.ipxe"),
        common::entry_script(port, name, "boot.ipxe"),
    )
    .unwrap();
    let log = s.root().join("serial-retry.log");
    let failed = format!("disklessset: loading image {name} failed (attempt 1/3): retrying in 2 s");
    let done = Arc::new(AtomicBool::new(false));
    let restored = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (log, done, restored, failed) = (
            log.clone(),
            Arc::clone(&done),
            Arc::clone(&restored),
            failed.clone(),
        );
        let (hidden, kpath) = (hidden.clone(), kpath.clone());
        std::thread::spawn(move || {
            let start = Instant::now();
            while !done.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(900) {
                let text = std::fs::read(&log).unwrap_or_default();
                if String::from_utf8_lossy(&text).contains(&failed) {
                    std::fs::rename(&hidden, &kpath).unwrap();
                    restored.store(true, Ordering::Relaxed);
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let mut vm = VmBoot::new(
        format!("http://10.0.2.2:{port}/entry-retry.ipxe"),
        &log,
        format!("disklessset: image {name} booted"),
    );
    vm.timeout = Duration::from_secs(900);
    let run = boot_until_marker(&vm);
    done.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    let _ = serve.kill();
    let _ = serve.wait();
    let run = run.unwrap_or_else(|e| panic!("{name} did not boot: {e}"));
    assert!(
        restored.load(Ordering::Relaxed),
        "iPXE never said it retries:\n{}",
        run.log
    );
    for l in run
        .log
        .lines()
        .filter(|l| l.contains("loading image") || l.contains(&kernel))
    {
        eprintln!("console: {}", l.trim_end());
    }
    // the real server answered the first attempt 404 and a later one 200
    let slog = std::fs::read_to_string(s.root().join("log/disklessset.log")).unwrap_or_default();
    let kernel_reqs: Vec<&str> = slog.lines().filter(|l| l.contains(&kernel)).collect();
    assert!(
        kernel_reqs.iter().any(|l| l.contains("status=404"))
            && kernel_reqs.iter().any(|l| l.contains("status=200")),
        "server log for {kernel}: {kernel_reqs:?}"
    );
    eprintln!(
        "{name}: power-on to marker {:.1}s (kernel missing on the first attempt)",
        run.elapsed_secs
    );
}
