//! The real event loop on a `TestBackend`, driven by readable key strings (helix style),
//! with insta snapshots of every screen at 80×24 and 120×40, and assertions on the files
//! the actions produced in a temporary store. Creating a demo image mounts a tmpfs: root.
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use ratatui::backend::TestBackend;
use ratatui::Terminal;

use disklessset::ops::{Config, Verbosity};

use super::keys::parse;
use super::{event_loop, logsink, App, Event, TuiOptions};

const SIZES: [(u16, u16); 2] = [(80, 24), (120, 40)];

struct Harness {
    dir: tempfile::TempDir,
    cfg: Config,
    app: App,
    tx: Sender<Event>,
    rx: Receiver<Event>,
    term: Terminal<TestBackend>,
    sent: usize,
}

impl Harness {
    fn new() -> Harness {
        Harness::with_delay(Duration::ZERO)
    }

    fn with_delay(delay: Duration) -> Harness {
        // /tmp/dlsXXXXXX: always the same length, so redacting it keeps the layout.
        let dir = tempfile::Builder::new()
            .prefix("dls")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let cfg = Config::under_root(dir.path()).expect("config");
        logsink::init_logging(&cfg, Verbosity::Quiet);
        let (tx, rx) = mpsc::channel();
        let opts = TuiOptions {
            dry_run: false,
            verbosity: Verbosity::Quiet,
            demo_step_delay: delay,
        };
        let app = App::new(cfg.clone(), opts, tx.clone());
        let term = Terminal::new(TestBackend::new(80, 24)).expect("terminal");
        Harness {
            dir,
            cfg,
            app,
            tx,
            rx,
            term,
            sent: 0,
        }
    }

    /// Sends the keys, then runs the event loop until they are handled and no job runs.
    fn keys(&mut self, s: &str) -> &mut Self {
        for k in parse(s) {
            self.tx.send(Event::Key(k)).expect("send");
            self.sent += 1;
        }
        let sent = self.sent;
        self.run_until(move |a| a.keys_seen >= sent && !a.job_running());
        self
    }

    /// Sends the keys and runs the loop until they are handled (a job may keep running).
    fn press(&mut self, s: &str) -> &mut Self {
        for k in parse(s) {
            self.tx.send(Event::Key(k)).expect("send");
            self.sent += 1;
        }
        let sent = self.sent;
        self.run_until(move |a| a.keys_seen >= sent);
        self
    }

    fn run_until(&mut self, mut f: impl FnMut(&App) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut timed_out = false;
        event_loop(&mut self.term, &mut self.app, &self.rx, |a| {
            timed_out = Instant::now() > deadline;
            f(a) || timed_out
        })
        .expect("event loop");
        assert!(!timed_out, "timed out; screen:\n{}", self.screen());
    }

    fn draw(&mut self, w: u16, h: u16) {
        self.term.backend_mut().resize(w, h);
        self.term.draw(|f| self.app.render(f)).expect("draw");
    }

    /// The screen with the store path and the elapsed time redacted (same lengths).
    fn screen(&self) -> String {
        let root = self.dir.path().display().to_string();
        let s = self
            .term
            .backend()
            .to_string()
            .replace(&root, "/tmp/dlsXXXXXX");
        redact_dates(&redact_elapsed(&s))
    }

    /// Snapshots the current state at both sizes.
    fn snap(&mut self, name: &str) {
        for (w, h) in SIZES {
            self.draw(w, h);
            insta::assert_snapshot!(format!("{name}@{w}x{h}"), self.screen());
        }
        self.draw(80, 24);
    }

    fn image_dir(&self, name: &str) -> std::path::PathBuf {
        self.cfg.image_dir(name)
    }
}

fn redact_elapsed(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("elapsed ") {
        let (a, b) = rest.split_at(i + "elapsed ".len());
        out.push_str(a);
        let n = b
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_digit() || *c == ':'))
            .map(|(i, _)| i)
            .unwrap_or(b.len());
        out.extend(b[..n].chars().map(|c| if c == ':' { ':' } else { 'X' }));
        rest = &b[n..];
    }
    out.push_str(rest);
    out
}

/// `2026-01-31` -> `YYYY-MM-DD` (creation dates).
fn redact_dates(s: &str) -> String {
    let b: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let pat = "dddd-dd-dd";
    while i < b.len() {
        let m = b.len() - i >= pat.len()
            && pat.chars().zip(&b[i..]).all(|(p, c)| {
                if p == 'd' {
                    c.is_ascii_digit()
                } else {
                    *c == p
                }
            });
        if m {
            out.push_str("YYYY-MM-DD");
            i += pat.len();
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

fn create_demo(h: &mut Harness, name: &str) {
    h.keys(&format!(
        "1<Enter>1<Enter>1<Enter>{name}<Enter><Enter><Enter>"
    ));
}

#[test]
fn main_menu_and_unavailable_entries() {
    let mut h = Harness::new();
    h.keys("");
    h.snap("menu_empty_store");
    // 1 then 0 selects 10; arrows move; Enter on Exit leaves with 0.
    h.keys("10<Up><Down>");
    h.keys("<Enter>");
    assert_eq!(h.app.exit_code(), Some(0));
}

#[test]
fn ctrl_c_returns_to_the_menu_then_exits() {
    let mut h = Harness::new();
    h.keys("1<Enter>1<Enter>1<Enter>ab");
    h.keys("<C-c>");
    h.snap("menu_after_ctrl_c");
    assert_eq!(h.app.exit_code(), None);
    h.keys("<C-c>");
    assert_eq!(h.app.exit_code(), Some(0));
}

#[test]
fn create_demo_image_through_the_menus_then_remove_it() {
    let mut h = Harness::new();
    h.keys("1<Enter>");
    h.snap("modules");
    h.keys("3<Enter>");
    h.snap("modules_nfs");
    h.keys("<Esc>1<Enter>");
    h.snap("demo_module");
    h.keys("1<Enter>");
    h.snap("demo_form_empty");
    h.keys("bad/name");
    h.snap("demo_form_invalid_name");
    h.keys("<C-u>demo1<Tab><C-u>hello TUI");
    h.snap("demo_form_filled");
    h.keys("<Enter>");
    h.snap("demo_recap");
    assert!(!h.image_dir("demo1").exists(), "nothing before the recap");
    h.keys("<Enter>");
    h.snap("demo_job_done");
    let txt = std::fs::read_to_string(h.image_dir("demo1").join("demo.txt")).expect("demo.txt");
    assert_eq!(txt, "hello TUI\n");
    assert!(h.image_dir("demo1").join("image_data.yml").is_file());
    h.keys("<Enter>");
    h.snap("images_after_create");
    h.keys("<Enter>");
    h.snap("image_details");
    h.keys("<Esc>r");
    h.snap("remove_confirm");
    h.keys("n");
    assert!(h.image_dir("demo1").exists(), "n keeps the image");
    h.keys("ry");
    h.snap("remove_job_done");
    assert!(!h.image_dir("demo1").exists());
    assert!(!h.cfg.image_workdir("demo1").exists());
    h.keys("<Enter>");
    h.snap("images_after_remove");
}

#[test]
fn remove_and_clone_from_the_main_menu() {
    let mut h = Harness::new();
    create_demo(&mut h, "src1");
    h.keys("<Enter><Esc>4<Enter>");
    h.snap("clone_pick_source");
    h.keys("<Enter>");
    h.snap("clone_form");
    h.keys("copy1<Enter><Enter>");
    h.snap("clone_recap");
    h.keys("<Enter>");
    assert_eq!(
        std::fs::read_to_string(h.image_dir("copy1").join("demo.txt")).expect("clone"),
        "hello from disklessset\n"
    );
    h.keys("<Enter>");
    h.snap("images_after_clone");
    h.keys("<Esc>3<Enter>");
    h.snap("remove_pick");
    h.keys("<Down><Enter>");
    h.snap("remove_confirm_from_menu");
    h.keys("y");
    h.keys("<Enter>");
    assert!(!h.image_dir("src1").exists());
    assert!(h.image_dir("copy1").exists());
}

#[test]
fn failures_show_the_core_error() {
    let mut h = Harness::new();
    create_demo(&mut h, "dup");
    h.keys("<Enter><C-c>");
    create_demo(&mut h, "dup");
    h.snap("demo_job_failed_exists");
    h.keys("<Enter>");
    h.snap("demo_form_after_failure");
}

#[test]
fn clear_a_corrupted_image_and_see_foreign_locks() {
    let mut h = Harness::new();
    create_demo(&mut h, "good");
    h.keys("<Enter><C-c>");
    // A corrupted image: a directory without its image_data.yml.
    std::fs::create_dir_all(h.image_dir("broken").join("sub")).expect("mkdir");
    std::fs::write(h.image_dir("broken").join("sub/f"), "x").expect("write");
    // An image in creation by another live process (pid 1), holding its lock.
    // Field 22 of /proc/1/stat: the start time the lock file records.
    let stat = std::fs::read_to_string("/proc/1/stat").expect("pid 1");
    let start: u64 = stat
        .rsplit(')')
        .next()
        .and_then(|r| r.split_whitespace().nth(19))
        .and_then(|v| v.parse().ok())
        .expect("start time of pid 1");
    let info = format!(r#"{{"pid":1,"start":{start},"operation":"livenet create","since":0}}"#);
    std::fs::create_dir_all(h.cfg.locks_dir()).expect("locks");
    std::fs::write(h.cfg.locks_dir().join("busy.lock"), &info).expect("lock");
    let creating = h.cfg.state_dir.join("creating");
    std::fs::create_dir_all(&creating).expect("creating");
    std::fs::write(creating.join("busy"), &info).expect("marker");
    h.keys("2<Enter>");
    h.snap("images_states");
    h.keys("<Esc>9<Enter>");
    h.snap("clear_pick");
    h.keys("<Enter>");
    h.snap("clear_confirm");
    h.keys("y");
    h.snap("clear_job_done");
    assert!(!h.image_dir("broken").exists());
    assert!(h.image_dir("good").exists());
}

#[test]
fn kernels_list() {
    let mut h = Harness::new();
    h.keys("7<Enter>");
    h.snap("kernels_none");
    h.keys("<Esc>");
    let k = &h.cfg.kernels_dir;
    std::fs::create_dir_all(k).expect("kernels dir");
    std::fs::write(k.join("vmlinuz-6.1.0-27-amd64"), "k").expect("k");
    std::fs::write(k.join("initramfs-kernel-6.1.0-27-amd64"), "i").expect("i");
    std::fs::write(k.join("vmlinuz-4.18.0-305.el8.x86_64"), "k").expect("k");
    h.keys("7<Enter>");
    h.snap("kernels");
}

#[test]
fn long_job_progress_and_cancel() {
    let mut h = Harness::with_delay(Duration::from_millis(1500));
    h.keys("1<Enter>1<Enter>1<Enter>slow<Enter><Enter>");
    h.press("<Enter>");
    // Step 1 mounts the tmpfs, then waits: a stable moment to look at (once the mount
    // exists; cancelling while mount(8) runs would kill it instead).
    let mnt = h
        .cfg
        .image_workdir("slow")
        .join("mnt")
        .display()
        .to_string();
    h.run_until(|a| {
        let mounted = std::fs::read_to_string("/proc/self/mountinfo")
            .map(|m| m.contains(&mnt))
            .unwrap_or(false);
        mounted
            && a.job()
                .map(|j| j.step.is_some() && j.log.iter().any(|l| l.contains("mount -t tmpfs")))
                .unwrap_or(false)
    });
    assert!(h.app.job_running());
    h.snap("job_running");
    h.press("<Esc>");
    h.snap("job_cancel_confirm");
    h.press("y");
    h.run_until(|a| a.job().map(|j| !j.running()).unwrap_or(false));
    h.snap("job_cancelled");
    // The core leaves a cancelled creation for `clear`; nothing stays mounted.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(!mounts.contains(&h.dir.path().display().to_string()));
    h.keys("<Enter><C-c>9<Enter><Enter>y");
    assert!(!h.image_dir("slow").exists());
}

#[test]
fn signal_while_a_job_runs_cancels_then_exits() {
    let mut h = Harness::with_delay(Duration::from_millis(500));
    h.keys("1<Enter>1<Enter>1<Enter>sig<Enter><Enter>");
    h.press("<Enter>");
    h.run_until(|a| a.job().and_then(|j| j.step.as_ref()).is_some());
    h.tx.send(Event::Signal(15)).expect("send");
    h.run_until(|a| a.exit_code().is_some());
    assert_eq!(h.app.exit_code(), Some(143));
    assert!(h.app.job().map(|j| !j.running()).unwrap_or(false));
}

#[test]
fn resizing_degrades_gracefully() {
    let mut h = Harness::new();
    create_demo(&mut h, "img");
    h.keys("<Enter>");
    for (w, h2) in [(60, 20), (30, 8), (10, 3), (1, 1), (120, 40), (80, 24)] {
        h.draw(w, h2);
    }
    h.draw(60, 20);
    insta::assert_snapshot!("images_60x20", h.screen());
    h.keys("r");
    h.draw(60, 20);
    insta::assert_snapshot!("remove_confirm_60x20", h.screen());
    for (w, h2) in [(20, 6), (1, 1), (80, 24)] {
        h.draw(w, h2);
    }
    h.keys("n<Esc><Esc>");
    h.draw(60, 20);
    insta::assert_snapshot!("menu_60x20", h.screen());
    h.keys("1<Enter>1<Enter>1<Enter>x");
    for (w, h2) in [(60, 20), (12, 4), (80, 24)] {
        h.draw(w, h2);
    }
    // And through the event loop: a resize event between keys.
    h.term.backend_mut().resize(60, 20);
    h.tx.send(Event::Resize).expect("send");
    h.keys("<Esc><Esc>");
    insta::assert_snapshot!("demo_module_60x20", h.screen());
}

#[test]
fn livenet_actions_call_the_core_and_show_its_answer() {
    let mut h = Harness::new();
    h.keys("1<Enter>2<Enter>");
    h.snap("livenet_module");
    h.keys("<Esc><Esc>");
    create_demo(&mut h, "d1");
    h.keys("<Enter>m");
    h.snap("mount_demo_refused");
    h.keys("<Enter>i");
    h.snap("initramfs_demo_refused");
    let k = h.cfg.kernels_dir.clone();
    std::fs::create_dir_all(&k).expect("kernels dir");
    std::fs::write(k.join("vmlinuz-6.1.0-27-amd64"), "k").expect("k");
    std::fs::write(k.join("initramfs-kernel-6.1.0-27-amd64"), "i").expect("i");
    std::fs::write(k.join("vmlinuz-6.12.0-1-amd64"), "k").expect("k");
    h.keys("<Enter><Esc>6<Enter>");
    h.snap("kernel_pick");
    h.keys("<Enter>");
    h.snap("kernel_form");
    h.keys("<Right><Enter><Enter>");
    h.snap("kernel_recap");
    h.keys("<Enter>");
    h.snap("kernel_set_demo_refused");
    h.keys("<Enter><C-c>2<Enter>s");
    h.snap("resize_form");
    h.keys("<C-u>20M");
    h.snap("resize_form_too_small");
}

#[test]
fn parameters_file_errors_show_line_and_column() {
    let mut h = Harness::new();
    let bad = h.dir.path().join("bad.yml");
    std::fs::write(
        &bad,
        "image_data:\n  name: ok1\n  image_class: LivenetImage\n  livenet_type: Type.HUGE\n",
    )
    .expect("write");
    h.keys("5<Enter>");
    h.snap("params_form_empty");
    h.keys(&format!("{}/nope.yml", h.dir.path().display()));
    h.snap("params_form_missing_file");
    h.keys(&format!("<C-u>{}", bad.display()));
    h.snap("params_form_invalid_file");
    h.keys("<Enter><Enter>");
    assert!(
        h.screen().contains("bad.yml:"),
        "submitting keeps the form with its error:\n{}",
        h.screen()
    );
}

#[test]
fn livenet_create_form_validates_and_recaps_and_cancelling_creates_nothing() {
    let mut h = Harness::new();
    h.keys("1<Enter>2<Enter>1<Enter>");
    h.snap("livenet_create_form_empty");
    // The name is checked as typed; submitting with errors focuses the first one.
    h.keys("bad/name<Tab><Right><Right><Tab>9<Tab><Left><Tab><Right><Tab>10M");
    h.snap("livenet_create_form_bad_name_and_size");
    h.keys("<C-u>auto<Tab>secret<Tab>secreT<Tab>/nonexistent.pub<Tab>vim, curl htop<Tab><C-u>");
    h.snap("livenet_create_form_errors");
    // Submitting with errors focuses the first one (the name).
    h.keys("<Enter>");
    h.snap("livenet_create_form_errors_on_submit");
    let key = h.dir.path().join("id.pub");
    std::fs::write(&key, "ssh-ed25519 AAAA test\n").expect("key");
    h.keys(&format!(
        "<C-u>lv1<Tab><Tab><Tab><Tab><Tab><Tab><Tab><C-u>secret<Tab><C-u>{}<Tab><C-u>vim, curl,htop<Tab><Tab><Right>",
        key.display()
    ));
    h.snap("livenet_create_form_valid");
    h.keys("<Enter>");
    h.snap("livenet_create_recap");
    assert!(
        !h.screen().contains("secret"),
        "the clear password is never shown"
    );
    // Cancelling at the recap goes back to the form; Esc leaves it: nothing was created.
    h.keys("<Esc>");
    h.snap("livenet_create_recap_cancelled");
    h.keys("<Esc>");
    assert!(h.app.job().is_none(), "no job was started");
    assert!(!h.image_dir("lv1").exists(), "nothing was created");
    h.keys("<Esc><Esc>");
    h.keys("2<Enter>");
    assert!(h.screen().contains("No images") || !h.screen().contains("lv1"));
}

#[test]
fn livenet_create_submit_carries_only_the_password_hash() {
    use super::action::Action;
    use super::form::{FormOutcome, FormState};
    use disklessset::ops::Request;
    let mut s = FormState::new(super::forms::livenet_create());
    let mut out = None;
    for k in parse(
        "lv1<Tab><Tab><Tab><Tab><Tab><Tab>secret<Tab>secret<Enter><Enter><Enter><Enter><Enter><Enter>",
    ) {
        if let FormOutcome::Submit(a) = s.on_key(k) {
            out = Some(a);
        }
    }
    let Some(Action::Run(Request::LivenetCreate(f))) = out else {
        panic!("no livenet create action");
    };
    let hash = f.build.password_hash.clone().expect("hashed");
    assert!(hash.starts_with("$6$"), "{hash}");
    assert!(!format!("{f:?}").contains("secret"));
    assert_eq!(
        (f.build.distro.as_str(), f.layout.as_str()),
        ("debian", "native")
    );
    assert_eq!(f.size, None);
    assert_eq!(f.initramfs, "own");
}

#[test]
fn bootset_status_and_images_nodes_column() {
    use disklessset::ops::{bootset_assign as assign, Assign, BootType, NetMode};
    let mut h = Harness::new();
    h.keys("b<Enter>");
    h.snap("bootset_no_nodes");
    h.keys("<Esc>");
    std::fs::write(
        &h.cfg.nodes_file,
        "c001: {mac: '52:54:00:aa:00:01', groups: [compute]}\n\
         c002: {groups: [compute]}\n\
         c003: {groups: [compute]}\n\
         c004: {groups: [compute]}\n\
         login1: {groups: [login]}\n",
    )
    .expect("nodes.yml");
    let ctx = disklessset::ops::Ctx::new(h.cfg.clone(), disklessset::ops::Runner::new(false));
    for (set, bt) in [("c[001-002]", BootType::Disk), ("@login", BootType::Next)] {
        assign(
            &ctx,
            &Assign {
                nodeset: set.into(),
                boot_type: bt,
                image: None,
                extra: None,
                net: NetMode::Default,
                wipe: false,
                once: false,
            },
        )
        .expect("bootset");
    }
    create_demo(&mut h, "d1");
    // A diskless assignment needs a bootable image; its script is what bootset writes
    // for one (the lines the status reads).
    std::fs::write(
        h.cfg.nodes_ipxe_dir.join("c003.ipxe"),
        "#!ipxe\nset dls-boot-type diskless\nset node-image d1\n",
    )
    .expect("c003.ipxe");
    h.keys("<Enter><C-c>b<Enter>");
    h.snap("bootset_status");
    h.keys("<Esc>2<Enter>");
    h.snap("images_nodes_column");
    assert!(h.screen().contains("c003"), "{}", h.screen());
    h.keys("<Enter>");
    h.snap("details_booted_by");
    h.keys("<Esc>");
    // A broken inventory: the status view shows the core's error.
    std::fs::write(&h.cfg.nodes_file, "c001: [oops\n").expect("nodes.yml");
    h.keys("<C-c>b<Enter>");
    h.snap("bootset_bad_inventory");
}

#[test]
fn livenet_create_job_shows_the_core_refusal() {
    // A size with the native layout: the core refuses it before building anything.
    let mut h = Harness::new();
    h.keys("1<Enter>2<Enter>1<Enter>lv2<Tab><Tab><Tab><Tab><Tab>1G<Tab>pw<Tab>pw<Tab><Tab><Tab><Tab><Enter>");
    h.snap("livenet_create_recap_native_with_size");
    h.keys("<Enter>");
    h.snap("livenet_create_refused_by_the_core");
    assert!(h.screen().contains("compat layout only"), "{}", h.screen());
    assert!(!h.image_dir("lv2").exists(), "nothing was created");
}

#[test]
fn nfs_staging_create_form_validates_and_recaps_and_cancelling_creates_nothing() {
    let mut h = Harness::new();
    h.keys("1<Enter>3<Enter>1<Enter>");
    h.snap("nfs_staging_create_form_empty");
    h.keys("bad/name<Tab><Right><Tab>noble<Tab><Right><Tab>secret<Tab>secreT<Tab>/nonexistent.pub<Tab>vim htop");
    h.snap("nfs_staging_create_form_errors");
    let key = h.dir.path().join("id.pub");
    std::fs::write(&key, "ssh-ed25519 AAAA test\n").expect("key");
    h.keys(&format!(
        "<Tab><C-u>st1<Tab><Tab><Tab><Tab><Tab><C-u>secret<Tab><C-u>{}<Tab><C-u>vim,htop",
        key.display()
    ));
    h.snap("nfs_staging_create_form_valid");
    h.keys("<Enter><Enter>");
    h.snap("nfs_staging_create_recap");
    assert!(
        !h.screen().contains("secret"),
        "the clear password is never shown"
    );
    h.keys("<Esc><Esc>");
    assert!(h.app.job().is_none(), "no job was started");
    assert!(!h.image_dir("st1").exists(), "nothing was created");
}

#[test]
fn nfs_golden_create_without_staging_images_says_so() {
    let mut h = Harness::new();
    h.keys("1<Enter>3<Enter>2<Enter>");
    h.snap("nfs_golden_create_no_staging");
}

#[test]
fn nfs_golden_create_form_chooses_among_staging_images_and_recaps() {
    let mut h = Harness::new();
    for n in ["st1", "st2"] {
        record(&h, n, "NfsStagingImage", "");
    }
    h.keys("1<Enter>3<Enter>2<Enter>");
    h.snap("nfs_golden_create_form_empty");
    h.keys("bad/name<Tab><Right>");
    h.snap("nfs_golden_create_form_errors");
    h.keys("<Tab><C-u>gold1<Tab><Enter>");
    h.snap("nfs_golden_create_recap");
    h.keys("<Esc><Esc>");
    assert!(h.app.job().is_none(), "no job was started");
    assert!(!h.image_dir("gold1").exists(), "nothing was created");
}

/// An image record as the store keeps it (`image_data.yml`), written as text: a fixture
/// needs no core function.
fn record(h: &Harness, name: &str, class: &str, extra: &str) {
    let dir = h.image_dir(name);
    std::fs::create_dir_all(&dir).expect("image dir");
    std::fs::write(
        dir.join("image_data.yml"),
        format!(
            "image_data:\n  name: {name}\n  image_class: {class}\n  is_mounted: False\n{extra}"
        ),
    )
    .expect("record");
}

fn golden_record(h: &Harness, name: &str) {
    record(h, name, "NfsGoldenImage", "  nodes: c[01-03]\n");
}

#[test]
fn nfs_nodes_add_validates_the_node_set_as_typed_and_recaps() {
    let mut h = Harness::new();
    h.keys("1<Enter>3<Enter>3<Enter>");
    h.snap("nfs_nodes_add_no_golden");
    golden_record(&h, "g1");
    h.keys("<Esc>3<Enter>3<Enter>");
    h.snap("nfs_nodes_add_form_empty");
    h.keys("<Tab>c[01-");
    h.snap("nfs_nodes_add_form_bad_set");
    h.keys("<C-u>@nogroup");
    h.snap("nfs_nodes_add_form_unknown_group");
    h.keys("<C-u>c[04-05],login1<Enter>");
    h.snap("nfs_nodes_add_recap");
    h.keys("<Esc><Esc>");
    assert!(h.app.job().is_none(), "no job was started");
}

#[test]
fn nfs_nodes_remove_asks_naming_the_node_dirs() {
    let mut h = Harness::new();
    golden_record(&h, "g1");
    h.keys("1<Enter>3<Enter>4<Enter>");
    h.snap("nfs_nodes_remove_form_empty");
    h.keys("<Tab>c[02-03]<Enter><Enter>");
    h.snap("nfs_nodes_remove_confirm");
    assert!(h.screen().contains("nodes/g1/c02") && h.screen().contains("nodes/g1/c03"));
    h.keys("n");
    assert!(h.app.job().is_none(), "no job was started");
}

#[test]
fn power_view_reads_the_status_and_confirms_naming_the_nodes() {
    let mut h = Harness::new();
    // Port 1 of the loopback refuses at once: a dead BMC without waiting.
    std::fs::write(
        &h.cfg.nodes_file,
        "c001: {groups: [rf]}\n\
         c002: {groups: [rf]}\n\
         c003: {}\n\
         groups:\n  rf: {bmc: {driver: redfish, address: 'http://127.0.0.1:1'}}\n",
    )
    .expect("nodes.yml");
    h.keys("p<Enter>");
    h.snap("power_view");
    assert!(h.screen().contains("Nodes: c[001-002]"), "{}", h.screen());
    h.keys("f");
    h.snap("power_off_confirm");
    assert!(
        h.screen().contains("Power off nodes c[001-002]?"),
        "{}",
        h.screen()
    );
    assert!(
        h.screen().contains("c002  (redfish http://127.0.0.1:1)"),
        "{}",
        h.screen()
    );
    h.keys("n");
    h.keys("s");
    h.run_until(|a| !a.power_loading());
    h.keys("");
    h.snap("power_status_dead_bmc");
    h.draw(120, 40);
    assert!(
        h.screen()
            .contains("unknown: BMC http://127.0.0.1:1 refused"),
        "{}",
        h.screen()
    );
    // A confirmed action runs the CLI's request as a job; the dead BMC is its error.
    h.keys("x");
    assert!(
        h.screen().contains("Next boot of nodes c[001-002]: pxe?"),
        "{}",
        h.screen()
    );
    h.keys("y");
    assert!(h.screen().contains("2 of 2 nodes failed"), "{}", h.screen());
    // A node set with a node outside the inventory's BMCs is refused as typed.
    h.keys("<Enter>e<BS><BS><BS><BS><BS><BS><BS><BS><BS><BS>c003<Enter>x");
    assert!(
        h.screen().contains("│  c003  (no BMC in the inventory)"),
        "{}",
        h.screen()
    );
    // Assign and reboot (bootset --reboot): a form for the view's node set.
    h.keys("na");
    h.snap("power_reboot_form");
    assert!(
        h.screen().contains("Assign and reboot nodes"),
        "{}",
        h.screen()
    );
}

/// Four nodes in the four states (registered, assigned, booted, discovered with facts),
/// discovery on with one machine named and one pending.
fn seed_nodes(h: &Harness) {
    use disklessset::ops::{bootset_assign as assign, Assign, BootType, NetMode};
    std::fs::write(
        &h.cfg.nodes_file,
        "c01: {mac: '52:54:00:00:00:01', ip: 10.0.0.1, groups: [compute]}\n\
         c02: {mac: '52:54:00:00:00:02', ip: 10.0.0.2, groups: [compute, gpu]}\n\
         c03: {groups: [compute]}\n\
         d01: {mac: '52:54:00:aa:00:01', vars: {rack: r12}}\n",
    )
    .expect("nodes.yml");
    let ctx = disklessset::ops::Ctx::new(h.cfg.clone(), disklessset::ops::Runner::new(false));
    for (set, bt) in [("c01", BootType::Next), ("c02", BootType::Disk)] {
        assign(
            &ctx,
            &Assign {
                nodeset: set.into(),
                boot_type: bt,
                image: None,
                extra: None,
                net: NetMode::Default,
                wipe: false,
                once: false,
            },
        )
        .expect("bootset");
    }
    let state = &h.cfg.state_dir;
    std::fs::create_dir_all(state.join("nodes")).expect("seen dir");
    std::fs::write(
        state.join("nodes/c02.json"),
        r#"{"script_at": 1764700000, "script_boot_type": "disk", "booted_at": 1764700060}"#,
    )
    .expect("seen");
    let facts = r#"{"reported_at": 1764690000, "macs": ["52:54:00:aa:00:01", "52:54:00:aa:00:11"],
        "arch": "x86_64", "cpu_model": "QEMU Virtual CPU version 2.5+", "cpus": 4,
        "memory_mib": 4096, "disks": [{"name": "vda", "size_bytes": 8589934592, "model": "QEMU HARDDISK"}],
        "vendor": "QEMU", "product": "Standard PC (Q35 + ICH9, 2009)", "serial": "S123",
        "uuid": "0f8a1c2e-0000-4000-8000-000000000001"}"#;
    std::fs::create_dir_all(state.join("facts")).expect("facts dir");
    std::fs::write(state.join("facts/d01.json"), facts).expect("facts");
    let discovery = format!(
        r#"{{"on": true, "pool": "d[01-04]", "policy": "manual", "started_at": 1764680000,
        "machines": [
          {{"mac": "52:54:00:aa:00:01", "facts": {facts}, "reported_at": 1764690000, "name": "d01"}},
          {{"mac": "52:54:00:aa:00:02", "facts": {{"macs": ["52:54:00:aa:00:02"], "arch": "x86_64",
            "cpus": 2, "memory_mib": 2048, "disks": [{{"name": "vda", "size_bytes": 4294967296}}]}},
            "reported_at": 1764690100, "name": null}}
        ]}}"#
    );
    std::fs::write(state.join("discovery.json"), discovery).expect("discovery.json");
}

#[test]
fn nodes_screen_lists_states_shows_facts_and_edits_through_the_core() {
    let mut h = Harness::new();
    h.keys("n<Enter>");
    h.snap("nodes_empty");
    h.keys("<Esc>");
    seed_nodes(&h);
    h.keys("n<Enter>");
    h.snap("nodes_list");
    // d01: its variables and hardware facts.
    h.keys("<Down><Down><Down><Enter>");
    h.snap("nodes_facts");
    // A small terminal scrolls the popup down to the last facts.
    h.keys("<Down><Down><Down><Down><Down><Down><Down><Down><Down>");
    h.draw(80, 24);
    insta::assert_snapshot!("nodes_facts_scrolled@80x24", h.screen());
    h.keys("<Esc><Tab><Down>");
    h.snap("nodes_discovery_focus");
    // Accept the pending machine as d02 (`discovery accept`).
    h.keys("<Enter><Down>d02<Enter>");
    h.snap("nodes_accept_recap");
    h.keys("<Enter>");
    assert!(!h.app.job_running());
    h.keys("<Enter>");
    let inv = disklessset::ops::query::inventory(&h.cfg).expect("inventory");
    assert_eq!(
        inv.nodes.get("d02").and_then(|n| n.mac.clone()).as_deref(),
        Some("52:54:00:aa:00:02")
    );
    // Remove c03 (asks first, naming the file).
    h.keys("<Tab><Up>r");
    h.snap("nodes_remove_confirm");
    h.keys("y");
    h.keys("<Enter>");
    let inv = disklessset::ops::query::inventory(&h.cfg).expect("inventory");
    assert!(!inv.nodes.contains_key("c03"), "{:?}", inv.nodes.keys());
    // Add e01 with a MAC, an IP and groups (`nodes add`); a bad MAC is refused as typed.
    h.keys("ae01<Tab>52:54:00:zz<Tab>");
    h.snap("nodes_add_bad_mac");
    h.keys("<S-Tab><C-u>52:54:00:00:00:99<Tab>10.0.0.99<Tab>compute,test<Tab><Enter><Enter>");
    h.keys("<Enter>");
    let inv = disklessset::ops::query::inventory(&h.cfg).expect("inventory");
    let e01 = inv.nodes.get("e01").expect("e01 added");
    assert_eq!(e01.mac.as_deref(), Some("52:54:00:00:00:99"));
    assert_eq!(e01.groups, vec!["compute".to_string(), "test".to_string()]);
    h.snap("nodes_after_add");
}

#[test]
fn nodes_bootset_and_set_forms_run_the_cli_requests() {
    let mut h = Harness::new();
    seed_nodes(&h);
    // c03 (third row): bootset disk, assign only (`Request::BootsetAssign`).
    h.keys("n<Enter><Down><Down>b<Tab><Right>");
    h.snap("nodes_bootset_form");
    h.keys("<Enter><Enter><Enter><Enter>");
    h.snap("nodes_bootset_recap");
    h.keys("<Enter>");
    h.keys("<Enter>");
    let ctx = disklessset::ops::Ctx::new(h.cfg.clone(), disklessset::ops::Runner::new(false));
    let rows = disklessset::ops::nodes::list(&ctx, Some("c03")).expect("nodes list");
    assert_eq!(rows[0].boot_type.as_deref(), Some("disk"), "{rows:?}");
    assert_eq!(rows[0].state.as_str(), "assigned");
    // Set c03's groups and a variable (`nodes set`); empty fields stay as they are.
    h.keys("s<Tab><Tab><Tab>compute,big<Tab>rack=r7<Enter>");
    h.snap("nodes_set_recap");
    h.keys("<Enter>");
    h.keys("<Enter>");
    let inv = disklessset::ops::query::inventory(&h.cfg).expect("inventory");
    let c03 = inv.nodes.get("c03").expect("c03");
    assert_eq!(c03.groups, vec!["compute".to_string(), "big".to_string()]);
    assert_eq!(c03.vars.get("rack").map(String::as_str), Some("r7"));
    assert_eq!(c03.mac, None, "an empty MAC field leaves it unset");
    h.snap("nodes_after_set");
}

#[test]
fn exec_and_ansible_forms_hand_the_terminal_over_with_the_request() {
    use super::action::Foreground;
    use std::sync::{Arc, Mutex};
    let mut h = Harness::new();
    record(&h, "lv", "LivenetImage", "");
    let ran: Arc<Mutex<Vec<Foreground>>> = Arc::default();
    let seen = ran.clone();
    h.app.suspender = Box::new(move |fg| {
        seen.lock().expect("lock").push(fg.clone());
        Ok(format!("ran in {}", fg.image()))
    });
    // h: the shell at once.
    h.keys("2<Enter>h");
    h.snap("images_after_shell");
    // e: the command, split like a shell would (quotes), run by none.
    h.keys("esh -c 'echo a b'<Enter><Enter>");
    h.snap("exec_recap");
    h.keys("<Enter>");
    // a: the playbook must exist.
    let pb = h.dir.path().join("site.yml");
    h.keys(&format!("a{}<Tab>", pb.display()));
    h.snap("ansible_form_missing_playbook");
    std::fs::write(&pb, "- hosts: all\n  tasks: []\n").expect("playbook");
    h.keys("<S-Tab><BS>l<Tab>-e x=1<Tab><Right><Enter><Enter>");
    h.snap("ansible_recap");
    h.keys("<Enter>");
    let ran = ran.lock().expect("lock").clone();
    assert_eq!(
        ran,
        vec![
            Foreground::Shell { name: "lv".into() },
            Foreground::Exec {
                name: "lv".into(),
                cmd: vec!["sh".into(), "-c".into(), "echo a b".into()],
            },
            Foreground::Ansible {
                name: "lv".into(),
                playbook: pb,
                keep_on_failure: true,
                args: vec!["-e".into(), "x=1".into()],
            },
        ]
    );
    h.snap("images_after_ansible");
}

#[test]
fn the_discovery_list_is_live_while_discovery_is_on() {
    let mut h = Harness::new();
    seed_nodes(&h);
    h.keys("n<Enter>");
    assert!(!h.screen().contains("52:54:00:aa:00:03"));
    // A third machine reports (the server rewrites the state file).
    let p = h.cfg.state_dir.join("discovery.json");
    let mut st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&p).expect("state")).expect("json");
    st["machines"].as_array_mut().expect("machines").push(
        serde_json::json!({"mac": "52:54:00:aa:00:03", "facts": {"cpus": 8},
            "reported_at": 1764690200, "name": null}),
    );
    std::fs::write(&p, st.to_string()).expect("write state");
    std::thread::sleep(super::nodes::RELOAD_EVERY + Duration::from_millis(100));
    h.tx.send(Event::Tick).expect("tick");
    h.keys("<Up>");
    let s = h.screen();
    assert!(s.contains("52:54:00:aa:00:03"), "{s}");
    assert!(s.contains("2 pending"), "{s}");
}

// ---------------------------------------------------------------- round 2: the verbs
// the CLI had and the TUI lacked (gc, rebuild, diff, replicate, nfs exports, recover,
// secrets, nodes import, create --transient).

/// The CLI's request for these arguments, as `args.rs` makes it.
fn cli_request(args: &[&str]) -> disklessset::ops::Request {
    use clap::Parser;
    let cli = crate::args::Cli::try_parse_from(
        std::iter::once("disklessset").chain(args.iter().copied()),
    )
    .expect("CLI arguments");
    cli.command
        .expect("a subcommand")
        .request(&cli.global)
        .expect("request")
        .expect("a mutating command")
}

/// Types the keys into a form and returns what its submission asks for.
fn submit(spec: super::form::FormSpec, keys: &str) -> super::action::Action {
    use super::form::{FormOutcome, FormState};
    let mut s = FormState::new(spec);
    for k in parse(keys) {
        if let FormOutcome::Submit(a) = s.on_key(k) {
            return a;
        }
    }
    panic!("the form was not submitted by {keys:?}");
}

#[test]
fn maintenance_forms_make_the_cli_requests() {
    use super::action::Action;
    use super::{forms, maint, nodeforms};
    use disklessset::ops::Request;
    let ask = |request: Request, preview: bool| Action::Ask { request, preview };
    // gc [--older-than AGE]: asks, with its dry-run list first.
    assert_eq!(
        submit(forms::gc(), "3d<Enter><Enter>"),
        ask(cli_request(&["gc", "--older-than", "3d"]), true)
    );
    assert_eq!(
        submit(forms::gc(), "<Enter><Enter>"),
        ask(cli_request(&["gc"]), true)
    );
    // rebuild NAME [--as NEW] [--source-date-epoch N]
    assert_eq!(
        submit(forms::rebuild("a"), "<Enter><Enter><Enter><Enter>"),
        Action::Run(cli_request(&["rebuild", "a"]))
    );
    assert_eq!(
        submit(
            forms::rebuild("a"),
            "b2<Tab>1700000000<Enter><Enter><Enter>"
        ),
        Action::Run(cli_request(&[
            "rebuild",
            "a",
            "--as",
            "b2",
            "--source-date-epoch",
            "1700000000"
        ]))
    );
    // diff A B is a query: the same two arguments.
    let parsed = {
        use clap::Parser;
        crate::args::Cli::try_parse_from(["disklessset", "diff", "a@3", "a@4"])
            .expect("diff")
            .command
    };
    let Some(crate::args::Command::Diff { a, b }) = parsed else {
        panic!("not diff");
    };
    assert_eq!(
        submit(forms::diff("a@3"), "<Tab>a@4<Enter><Enter>"),
        Action::Diff { a, b }
    );
    // replicate [NAME...]
    let known = vec!["r1".to_string(), "r2".to_string()];
    assert_eq!(
        submit(forms::replicate(&known), "r1, r2<Enter><Enter><Enter>"),
        Action::Run(cli_request(&["replicate", "r1", "r2"]))
    );
    assert_eq!(
        submit(forms::replicate(&known), "<Enter><Enter><Enter>"),
        Action::Run(cli_request(&["replicate"]))
    );
    // nfs exports --for REPLICA [--output FILE]
    assert_eq!(
        submit(
            forms::nfs_exports_for(known.clone()),
            "<Right><Tab>/tmp/r2.exports<Enter><Enter>"
        ),
        Action::Run(cli_request(&[
            "nfs",
            "exports",
            "--for",
            "r2",
            "--output",
            "/tmp/r2.exports"
        ]))
    );
    assert_eq!(
        submit(forms::nfs_exports_for(known), "<Enter><Enter><Enter>"),
        Action::Run(cli_request(&["nfs", "exports", "--for", "r1"]))
    );
    // nfs exports, recover: at once, like the CLI.
    assert_eq!(
        maint::immediate(maint::Entry::Exports),
        Some(cli_request(&["nfs", "exports"]))
    );
    assert_eq!(
        maint::immediate(maint::Entry::Recover),
        Some(cli_request(&["recover"]))
    );
    assert_eq!(maint::immediate(maint::Entry::Gc), None);
    // secrets show|rotate NODESET (rotate asks first).
    assert_eq!(
        submit(nodeforms::host_keys("c01", None), "<Enter><Enter><Enter>"),
        Action::Run(cli_request(&["secrets", "show", "c01"]))
    );
    assert_eq!(
        submit(
            nodeforms::host_keys("c01", None),
            "<C-u>c[01-02]<Tab><Right><Enter><Enter>"
        ),
        ask(cli_request(&["secrets", "rotate", "c[01-02]"]), false)
    );
    // nodes import FILE
    let csv = tempfile::NamedTempFile::new().expect("csv");
    let path = csv.path().display().to_string();
    assert_eq!(
        submit(nodeforms::nodes_import(), &format!("{path}<Enter><Enter>")),
        Action::Run(cli_request(&["nodes", "import", &path]))
    );
}

#[test]
fn create_forms_set_transient_like_the_cli_flag() {
    use super::action::Action;
    use super::forms;
    use disklessset::ops::Request;
    // livenet: name, distro, release, type, layout, size, password x2, key, packages,
    // transient, initramfs.
    let a = submit(
        forms::livenet_create(),
        "lv1<Tab><Tab><Tab><Tab><Tab><Tab>pw<Tab>pw<Tab><Tab><Tab><Right><Enter><Enter><Enter>",
    );
    let Action::Run(Request::LivenetCreate(mut f)) = a else {
        panic!("not a livenet create: {a:?}");
    };
    assert!(f.build.transient);
    assert!(f.build.password_hash.take().is_some());
    assert_eq!(
        Request::LivenetCreate(f),
        cli_request(&[
            "livenet",
            "create",
            "lv1",
            "--type",
            "standard",
            "--transient"
        ])
    );
    // nfs staging: name, distro, release, type, password x2, key, packages, transient.
    let a = submit(
        forms::nfs_staging_create(),
        "s1<Tab><Tab><Tab><Tab>pw<Tab>pw<Tab><Tab><Tab><Right><Enter><Enter>",
    );
    let Action::Run(Request::NfsStagingCreate(mut o)) = a else {
        panic!("not an nfs staging create: {a:?}");
    };
    assert!(o.build.transient);
    o.build.password_hash = None;
    assert_eq!(
        Request::NfsStagingCreate(o),
        cli_request(&["nfs", "staging", "create", "s1", "--transient"])
    );
    // Left at no: not transient, as without the flag.
    let a = submit(
        forms::nfs_staging_create(),
        "s1<Tab><Tab><Tab><Tab>pw<Tab>pw<Tab><Tab><Tab><Enter><Enter>",
    );
    let Action::Run(Request::NfsStagingCreate(o)) = a else {
        panic!("not an nfs staging create: {a:?}");
    };
    assert!(!o.build.transient);
}

#[test]
fn maintenance_screen_gc_asks_with_its_dry_run_then_removes() {
    let mut h = Harness::new();
    record(&h, "keep", "LivenetImage", "");
    record(&h, "t1", "LivenetImage", "  transient: true\n");
    h.keys("m<Enter>");
    h.snap("maintenance");
    h.keys("g");
    h.snap("gc_form");
    h.keys("7x");
    h.snap("gc_form_bad_age");
    h.keys("<BS><BS>0<Enter>");
    h.snap("gc_recap");
    // The popup: the dry run's lines, then the CLI's question.
    h.keys("<Enter>");
    h.snap("gc_confirm");
    assert!(h.image_dir("t1").exists(), "nothing removed before y");
    h.keys("y");
    h.snap("gc_job_done");
    assert!(!h.image_dir("t1").exists(), "the transient image went");
    assert!(h.image_dir("keep").exists(), "a non-transient image stays");
    // Back on the maintenance screen; again: nothing to collect, no question asked.
    h.keys("<Enter>");
    assert!(h.screen().contains("Maintenance"), "{}", h.screen());
    h.keys("g0<Enter><Enter>");
    assert!(h.app.popup.is_none());
    assert!(h.screen().contains("nothing to collect"), "{}", h.screen());
}

#[test]
fn maintenance_rebuild_diff_replicate_exports_and_recover() {
    let mut h = Harness::new();
    record(&h, "lv", "LivenetImage", "");
    // r: the images picker, then the rebuild form of the picked image.
    h.keys("m<Enter>r");
    h.snap("rebuild_pick");
    h.keys("<Enter>");
    h.snap("rebuild_form");
    h.keys("lv-again<Tab>1700000000<Enter><Enter>");
    h.snap("rebuild_recap");
    // The core refuses (no build record) and says why.
    h.keys("<Enter>");
    let s = h.screen();
    assert!(s.contains("failed"), "{s}");
    h.keys("<Enter><Esc><Esc>");
    // d: pick the first image, type the second; the core's answer in the job.
    h.keys("d<Enter>");
    h.snap("diff_form");
    h.keys("<Tab>lv@7<Enter>");
    h.snap("diff_recap");
    h.keys("<Enter>");
    let s = h.screen();
    assert!(
        s.contains("Compare lv with lv@7") && s.contains("failed"),
        "{s}"
    );
    h.keys("<Enter><Esc><Esc>");
    // e: replicate, the configured replicas shown (none here: the core says so).
    h.keys("e");
    h.snap("replicate_form");
    h.keys("<Esc>");
    // f: no replicas configured.
    h.keys("f");
    assert!(
        h.screen().contains("no replicas in the configuration"),
        "{}",
        h.screen()
    );
    // v: recover runs at once (the CLI asks nothing either).
    h.keys("v");
    h.snap("recover_job_done");
    assert!(h
        .app
        .job()
        .is_some_and(|j| matches!(j.outcome, Some(Ok(_)))));
}

#[test]
fn nodes_screen_host_keys_and_import() {
    let mut h = Harness::new();
    seed_nodes(&h);
    // k: the host keys form for the selected node; show lists each node's line in the
    // job's output pane.
    h.keys("n<Enter>k");
    h.snap("host_keys_form");
    h.keys("<C-u>c[01-02]<Enter><Enter>");
    h.keys("<Enter>");
    h.snap("host_keys_shown");
    let s = h.screen();
    assert!(
        s.contains("c01: no host keys yet") && s.contains("c02: no host keys yet"),
        "{s}"
    );
    // Rotate asks first, with the CLI's sentence.
    h.keys("<Enter>k<Tab><Right><Enter><Enter>");
    h.snap("host_keys_rotate_confirm");
    h.keys("y");
    assert!(
        h.screen().contains("no host keys to rotate"),
        "{}",
        h.screen()
    );
    h.keys("<Enter>");
    // i: import a CSV file (`nodes import`).
    let csv = h.dir.path().join("more.csv");
    std::fs::write(
        &csv,
        "node,mac,ip,groups,bmc\nf01,52:54:00:00:0f:01,10.0.0.51,compute,\n",
    )
    .expect("csv");
    h.keys("i");
    h.snap("nodes_import_form");
    h.keys(&format!("{}<Enter><Enter>", csv.display()));
    h.keys("<Enter>");
    let inv = disklessset::ops::query::inventory(&h.cfg).expect("inventory");
    assert_eq!(
        inv.nodes.get("f01").and_then(|n| n.mac.clone()).as_deref(),
        Some("52:54:00:00:0f:01")
    );
    assert!(h.screen().contains("f01"), "{}", h.screen());
}
