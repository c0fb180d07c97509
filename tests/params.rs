//! Parameters files, Ansible and exec acceptance: real images from the Debian mirror.
//! Two builds in all: the seed README's livenet example (booted through iPXE), and a
//! native-format `small` image (python3 inside) that Ansible and exec work on.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{assert_one_line_error, mounts_under, unsquashfs_list, Store};

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/params")
        .join(name)
        .display()
        .to_string()
}

fn record(s: &Store, name: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(&s.ok(&["show", name, "--json"])).unwrap();
    v["record"].clone()
}

fn crypt_check(hash: &str, password: &str) -> bool {
    let out = Command::new("/usr/bin/python3")
        .args([
            "-W",
            "ignore",
            "-c",
            "import crypt,sys; print(crypt.crypt(sys.argv[1], sys.argv[2]) == sys.argv[2])",
            password,
            hash,
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "True"
}

/// `/root/.ssh/id_rsa.pub`, which the seed example names: created for the test when
/// missing (and removed afterwards), left alone when it exists.
struct SeedKey(Option<PathBuf>);

impl SeedKey {
    fn ensure() -> SeedKey {
        let p = PathBuf::from("/root/.ssh/id_rsa.pub");
        if p.exists() {
            return SeedKey(None);
        }
        std::fs::create_dir_all("/root/.ssh").unwrap();
        std::fs::write(
            &p,
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOkq8cUjZpt3s8rVfLh3bb0xG2ZQbGEsdmg0fH7bXiwX test@disklessset\n",
        )
        .unwrap();
        SeedKey(Some(p))
    }
}

impl Drop for SeedKey {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// No loop device is backed by a file of the store.
fn store_loops(s: &Store) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/sys/block").unwrap().flatten() {
        if let Ok(b) = std::fs::read_to_string(e.path().join("loop/backing_file")) {
            if b.trim().starts_with(&s.root().display().to_string()) {
                out.push(b.trim().to_string());
            }
        }
    }
    out
}

#[test]
fn seed_reference_example_creates_a_bootable_image_skips_and_refuses() {
    let _key = SeedKey::ensure();
    let s = Store::new();
    let seed = fixture("seed-livenet.yml");

    // --dry-run: the plan and the exact commands, nothing created.
    let out = s.ok(&["create", "--params", &seed, "--dry-run"]);
    assert!(
        out.contains("livenet image livenet1: would be created"),
        "{out}"
    );
    assert!(out.contains("+ ") && out.contains("mmdebstrap"), "{out}");
    assert!(out.contains("gzip"), "{out}");
    assert!(!out.contains("password: root"), "{out}");
    assert!(!s.images().join("livenet1").exists());

    // The reference's NFS example (an EL release) plans an NFS staging image.
    let out = s.ok(&[
        "create",
        "--params",
        &fixture("seed-nfs.yml"),
        "--distro",
        "rocky",
        "--dry-run",
    ]);
    assert!(
        out.contains("nfs-staging image nfs1: would be created"),
        "{out}"
    );
    assert!(
        out.contains("dnf") && out.contains("nfsimages/staging/nfs1"),
        "{out}"
    );
    assert!(!s.images().join("nfs1").exists());

    // The real build.
    let out = s.ok(&["create", "--params", &seed]);
    assert!(out.contains("livenet image livenet1: created"), "{out}");
    let rec = record(&s, "livenet1");
    assert_eq!(rec["layout"], "compat");
    // 700 MiB (an EL 8 size) is too small for a Debian kernel's modules: the reference
    // size is a floor, the rootfs.img grows to fit.
    let size = rec["livenet_size"].as_u64().unwrap();
    assert!(size >= 700, "{size}");
    assert_eq!(rec["livenet_type"], "core");
    assert_eq!(rec["release_version"], "bookworm");
    assert_eq!(rec["additional_packages"], serde_json::json!(["gzip"]));
    assert!(rec["password"].is_null(), "no hash in the record: {rec}");
    let hash = s.root_hash("livenet1");
    assert!(crypt_check(&hash, "root"), "{hash}");
    let kernel = rec["kernel"].as_str().unwrap().to_string();
    let img = s.images().join("livenet1/squashfs.img");
    assert!(unsquashfs_list(&img).contains("LiveOS/rootfs.img"));
    let kver = kernel.strip_prefix("vmlinuz-").unwrap();
    assert!(s
        .root()
        .join(format!("www/diskless/kernels/vmlinuz-{kver}"))
        .is_file());
    assert!(s
        .root()
        .join(format!("www/diskless/kernels/initramfs-own-{kver}"))
        .is_file());
    s.boot_image("livenet1", "seed", Duration::from_secs(420));

    // Twice: skipped, nothing rebuilt.
    let before = std::fs::metadata(&img).unwrap().modified().unwrap();
    let out = s.ok(&["create", "--params", &seed]);
    assert!(out.contains("livenet1: skipped"), "{out}");
    assert_eq!(std::fs::metadata(&img).unwrap().modified().unwrap(), before);

    // The right kernel named: still matches; a wrong one: refused, naming both.
    let dir = s.root().join("p");
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read_to_string(&seed).unwrap();
    let with_kernel = dir.join("kernel.yml");
    std::fs::write(
        &with_kernel,
        text.replace(
            "password: root\n",
            &format!("password: root\n      kernel: {kernel}\n"),
        ),
    )
    .unwrap();
    let out = s.ok(&["create", "--params", with_kernel.to_str().unwrap()]);
    assert!(out.contains("skipped"), "{out}");

    // A differing file: refused without --replace, before any work.
    let differing = dir.join("differs.yml");
    std::fs::write(
        &differing,
        text.replace("livenet_type: Type.CORE", "livenet_type: Type.SMALL"),
    )
    .unwrap();
    let e = s.fails(&["create", "--params", differing.to_str().unwrap()]);
    assert_one_line_error(&e, "--replace");
    assert!(
        e.contains("type: the file says small, the image has core"),
        "{e}"
    );
    let bigger = dir.join("bigger.yml");
    let want = size + 100;
    std::fs::write(
        &bigger,
        text.replace("livenet_size: 700", &format!("livenet_size: {want}")),
    )
    .unwrap();
    let e = s.fails(&["create", "--params", bigger.to_str().unwrap()]);
    assert!(
        e.contains(&format!(
            "size: the file says {want}M, the image has {size}M"
        )),
        "{e}"
    );
    let other_pw = dir.join("pw.yml");
    std::fs::write(&other_pw, text.replace("password: root", "password: toor")).unwrap();
    let e = s.fails(&["create", "--params", other_pw.to_str().unwrap()]);
    assert!(e.contains("password") && !e.contains("toor"), "{e}");
    // --replace needs --yes; with --dry-run it shows the removal and the rebuild.
    let e = s.fails(&[
        "create",
        "--params",
        differing.to_str().unwrap(),
        "--replace",
    ]);
    assert_one_line_error(&e, "--yes");
    let out = s.ok(&[
        "create",
        "--params",
        differing.to_str().unwrap(),
        "--replace",
        "--dry-run",
    ]);
    assert!(
        out.contains("would be replaced") && out.contains("mmdebstrap"),
        "{out}"
    );
    assert!(
        out.contains("iputils-ping"),
        "the small type's packages: {out}"
    );
    assert_eq!(std::fs::metadata(&img).unwrap().modified().unwrap(), before);
    assert_eq!(record(&s, "livenet1")["livenet_type"], "core");
    assert!(s.mounts().is_empty(), "{:?}", s.mounts());
}

#[test]
fn malformed_files_name_file_line_column_field() {
    let s = Store::new();
    let dir = s.root().join("p");
    std::fs::create_dir_all(&dir).unwrap();
    let cases: &[(&str, &str)] = &[
        (
            "image_data:\n    name: x\n    image_class: BigImage\n",
            ":3:18: image_class: unknown image class \"BigImage\" (allowed: LivenetImage, NfsStagingImage)",
        ),
        (
            "image_data:\n    name: x\n    image_class: LivenetImage\n    livenet_sise: 700\n",
            ":4:5: livenet_sise: unknown field (allowed: ",
        ),
        (
            "image_data:\n    name: x\n    image_class: LivenetImage\n    additional_packages: ['gzip'\n",
            ":4:",
        ),
        (
            "images:\n  - name: a\n    kind: livenet\n    type: huge\n",
            ":4:11: type: unknown type \"huge\" (allowed: standard, small, core)",
        ),
        (
            "images:\n  - name: a\n    kind: livenet\n    release: bullseye-backports\n",
            ":4:14: release: ",
        ),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let f = dir.join(format!("bad{i}.yml"));
        std::fs::write(&f, text).unwrap();
        let e = s.fails(&["create", "--params", f.to_str().unwrap()]);
        assert_one_line_error(&e, &format!("{}{want}", f.display()));
    }
    assert!(!s.images().exists() || std::fs::read_dir(s.images()).unwrap().next().is_none());
}

const PLAYBOOK_OK: &str = r#"- name: customise a diskless image
  hosts: all
  gather_facts: false
  tasks:
    - name: install a package from the mirror
      ansible.builtin.apt:
        name: hello
        update_cache: true
    - name: a templated file
      ansible.builtin.template:
        src: greeting.j2
        dest: /etc/dls-greeting
        mode: "0644"
"#;

const PLAYBOOK_FAIL: &str = r#"- name: breaks halfway
  hosts: all
  gather_facts: false
  tasks:
    - name: a change that must not be published
      ansible.builtin.copy:
        content: "half-done\n"
        dest: /etc/dls-half-done
    - name: fails
      ansible.builtin.command: /bin/false
"#;

#[test]
fn native_file_then_ansible_and_exec() {
    let s = Store::new();
    let dir = s.root().join("p");
    std::fs::create_dir_all(&dir).unwrap();
    let params = dir.join("native.yml");
    std::fs::write(
        &params,
        "version: 1\ndefaults:\n  distro: debian\n  release: bookworm\nimages:\n  - name: sm1\n    kind: livenet\n    type: small\n    password: pw-native\n",
    )
    .unwrap();
    let out = s.ok(&["create", "--params", params.to_str().unwrap()]);
    assert!(out.contains("sm1: created"), "{out}");
    let img = s.images().join("sm1/squashfs.img");

    // exec on an image that is not mounted: a throwaway overlay in a private namespace.
    let out = s.ok(&["exec", "sm1", "--", "cat", "/etc/os-release"]);
    assert!(out.contains("Debian GNU/Linux 12"), "{out}");
    assert!(
        out.contains("sm1"),
        "the image's own os-release tags: {out}"
    );
    assert!(mounts_under(s.root()).is_empty(), "{:?}", s.mounts());
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mi.contains(&s.root().display().to_string()), "{mi}");
    assert!(store_loops(&s).is_empty(), "{:?}", store_loops(&s));
    // the exit code is the command's; changes are discarded
    let o = s.run(&["exec", "sm1", "--", "sh", "-c", "touch /etc/x; exit 7"]);
    assert_eq!(o.status.code(), Some(7));
    let o = s.run(&["exec", "sm1", "--", "test", "-e", "/etc/x"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "the throwaway overlay kept /etc/x"
    );
    assert!(mounts_under(s.root()).is_empty(), "{:?}", s.mounts());

    // shell: a login shell on the same throwaway overlay, fed from a pipe here.
    let mut c = s.cmd(&["shell", "sm1"]);
    c.stdin(std::process::Stdio::piped());
    c.stdout(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(b"grep -q DISKLESSSET_IMAGE_NAME /etc/os-release && exit 5\nexit 9\n")
            .unwrap();
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(5), "{o:?}");
    assert!(mounts_under(s.root()).is_empty(), "{:?}", s.mounts());

    // A playbook that installs a package and writes a templated file: new generation.
    std::fs::write(dir.join("site.yml"), PLAYBOOK_OK).unwrap();
    std::fs::write(dir.join("greeting.j2"), "hello from {{ greeting }}\n").unwrap();
    let out = s.ok(&[
        "ansible",
        "sm1",
        dir.join("site.yml").to_str().unwrap(),
        "--",
        "-e",
        "greeting=ansible",
    ]);
    assert!(out.contains("repacked as generation 2"), "{out}");
    assert_eq!(record(&s, "sm1")["generation"], 2);
    let list = unsquashfs_list(&img);
    assert!(list.contains("etc/dls-greeting"), "templated file missing");
    assert!(list.contains("usr/bin/hello"), "package missing");
    assert!(
        !list.contains("usr/sbin/policy-rc.d"),
        "policy-rc.d left in the image"
    );
    assert!(s.mounts().is_empty(), "{:?}", s.mounts());
    let out = s.ok(&["exec", "sm1", "--", "cat", "/etc/dls-greeting"]);
    assert_eq!(out, "hello from ansible\n");
    let logs: Vec<_> = std::fs::read_dir(s.root().join("log/ansible"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(logs.len(), 1);
    let log = std::fs::read_to_string(logs[0].path()).unwrap();
    assert!(log.contains("PLAY RECAP"), "{log}");

    // A failing playbook: the published generation stays byte-identical.
    let gen2 = std::fs::read(&img).unwrap();
    std::fs::write(dir.join("fail.yml"), PLAYBOOK_FAIL).unwrap();
    let e = s.fails(&["ansible", "sm1", dir.join("fail.yml").to_str().unwrap()]);
    assert_one_line_error(&e, "ansible-playbook failed on image sm1");
    assert!(e.contains("published image is unchanged"), "{e}");
    assert!(
        e.contains("full log: ") && e.contains("/log/ansible/sm1-"),
        "{e}"
    );
    assert_eq!(
        std::fs::read(&img).unwrap(),
        gen2,
        "published image changed"
    );
    assert_eq!(record(&s, "sm1")["generation"], 2);
    assert!(s.mounts().is_empty(), "{:?}", s.mounts());
    assert_eq!(s.state_of("sm1").as_deref(), Some("created"));

    // The reference's manual workflow: livenet mount, then the playbook on the mounted
    // tree (it stays mounted), exec sees the change, unmount repacks.
    s.ok(&["livenet", "mount", "sm1"]);
    std::fs::write(
        dir.join("m.yml"),
        PLAYBOOK_FAIL.replace(
            "    - name: fails\n      ansible.builtin.command: /bin/false\n",
            "",
        ),
    )
    .unwrap();
    let out = s.ok(&["ansible", "sm1", dir.join("m.yml").to_str().unwrap()]);
    assert!(out.contains("livenet unmount sm1"), "{out}");
    assert_eq!(s.state_of("sm1").as_deref(), Some("mounted"));
    let out = s.ok(&["exec", "sm1", "--", "cat", "/etc/dls-half-done"]);
    assert_eq!(out, "half-done\n");
    s.ok(&["livenet", "unmount", "sm1"]);
    assert_eq!(record(&s, "sm1")["generation"], 3);
    assert!(unsquashfs_list(&img).contains("etc/dls-half-done"));
    assert!(s.mounts().is_empty(), "{:?}", s.mounts());
    assert!(store_loops(&s).is_empty(), "{:?}", store_loops(&s));
}

/// `transient:` in both formats: a wrong value is refused at its FILE:LINE:COLUMN before
/// any work; `transient: true` builds an image `gc` collects (as `create --transient`
/// does), and a re-run that says otherwise is refused naming the difference.
#[test]
fn transient_key_in_parameters_files() {
    let s = Store::new();
    let dir = s.root().join("p");
    std::fs::create_dir_all(&dir).unwrap();
    let cases: &[(&str, &str)] = &[
        (
            "image_data:\n    name: x\n    image_class: LivenetImage\n    transient: Perhaps\n",
            ":4:16: transient: \"Perhaps\" is not a boolean (allowed: true, false, True, False)",
        ),
        (
            "images:\n  - name: a\n    kind: livenet\n    transient: 1\n",
            ":4:16: transient: \"1\" is not a boolean (allowed: true, false, True, False)",
        ),
        (
            "images:\n  - name: g\n    kind: nfs-golden\n    from: s\n    transient: true\n",
            ":5:16: transient: not used by nfs-golden images",
        ),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let f = dir.join(format!("bad{i}.yml"));
        std::fs::write(&f, text).unwrap();
        let e = s.fails(&["create", "--params", f.to_str().unwrap()]);
        assert_one_line_error(&e, &format!("{}{want}", f.display()));
    }
    // A reference file with `transient: True` passes validation (a dry run builds nothing).
    let r = dir.join("ref.yml");
    std::fs::write(
        &r,
        "image_data:\n    name: rt1\n    password: root\n    livenet_type: Type.CORE\n    livenet_size: 700\n    transient: True\n    release_version: 12\n    image_class: LivenetImage\n",
    )
    .unwrap();
    let out = s.ok(&["create", "--params", r.to_str().unwrap(), "--dry-run"]);
    assert!(out.contains("rt1"), "{out}");
    assert!(!s.images().join("rt1").exists());

    // The native format, built for real.
    let params = dir.join("t.yml");
    let text = |t: &str| {
        format!("images:\n  - name: t1\n    kind: livenet\n    type: core\n    release: bookworm\n    password: pw\n    transient: {t}\n")
    };
    std::fs::write(&params, text("true")).unwrap();
    let out = s.ok(&["create", "--params", params.to_str().unwrap()]);
    assert!(out.contains("t1: created"), "{out}");
    let v: serde_json::Value = serde_json::from_str(&s.ok(&["show", "t1", "--json"])).unwrap();
    assert_eq!(v["transient"], serde_json::json!(true), "{v}");
    // Same file again: skipped; saying false now: refused, naming the field.
    let out = s.ok(&["create", "--params", params.to_str().unwrap()]);
    assert!(out.contains("t1: skipped"), "{out}");
    std::fs::write(&params, text("false")).unwrap();
    let e = s.fails(&["create", "--params", params.to_str().unwrap()]);
    assert!(
        e.contains("transient: the file says false, the image has true"),
        "{e}"
    );
    // gc sees it as transient: unassigned and not booted, it would go.
    let out = s.ok(&["gc", "--older-than", "0", "--dry-run"]);
    assert!(out.contains("would remove transient image t1"), "{out}");
}
