//! The one command runner. Every external program the tool starts goes through here:
//! argv only (never a shell string), the command line logged, the exit status checked,
//! the output tail in the error, and `--dry-run` records the plan instead of running.
use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Error, Result};

const TAIL_LINES: usize = 25;
const MAX_STDOUT: usize = 64 << 20;

/// A command to run: program, arguments, environment, working directory, stdin.
#[derive(Debug, Clone)]
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    /// Environment variables whose values are secrets (a BMC password for `ipmitool -E`):
    /// passed to the child, shown as `***` in the log, the plan and errors.
    secret_envs: Vec<(OsString, Masked)>,
    cwd: Option<PathBuf>,
    stdin: Option<Vec<u8>>,
    /// Runs even under --dry-run (inspection only).
    read_only: bool,
    /// The Debian package that provides the program, for the "not found" error.
    package: Option<String>,
    /// Inherit the terminal (interactive shell); no capture.
    interactive: bool,
}

impl Cmd {
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Cmd {
            program: program.as_ref().to_os_string(),
            args: Vec::new(),
            envs: Vec::new(),
            secret_envs: Vec::new(),
            cwd: None,
            stdin: None,
            read_only: false,
            package: None,
            interactive: false,
        }
    }
    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Self {
        self.args.push(a.as_ref().to_os_string());
        self
    }
    pub fn args<I, S>(mut self, it: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(it.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }
    pub fn env(mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> Self {
        self.envs
            .push((k.as_ref().to_os_string(), v.as_ref().to_os_string()));
        self
    }
    /// An environment variable holding a secret: the child gets it, every display of
    /// the command (log, `--dry-run` plan, error message) shows `NAME=***`. Secrets go
    /// through the environment (readable by the owner and root only, `/proc/PID/environ`)
    /// or stdin, never argv (world-readable in `/proc/PID/cmdline`).
    pub fn secret_env(mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> Self {
        self.secret_envs
            .push((k.as_ref().to_os_string(), Masked(v.as_ref().to_os_string())));
        self
    }
    pub fn cwd(mut self, dir: impl AsRef<Path>) -> Self {
        self.cwd = Some(dir.as_ref().to_path_buf());
        self
    }
    pub fn stdin_bytes(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(data.into());
        self
    }
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }
    pub fn package(mut self, p: &str) -> Self {
        self.package = Some(p.to_string());
        self
    }
    pub fn interactive(mut self) -> Self {
        self.interactive = true;
        self
    }
    pub fn program(&self) -> &OsStr {
        &self.program
    }
    pub fn get_args(&self) -> &[OsString] {
        &self.args
    }

    /// The command line, shell-quoted for display and logs only (never executed as such).
    pub fn display(&self) -> String {
        let mut parts: Vec<String> = self
            .envs
            .iter()
            .map(|(k, v)| format!("{}={}", k.to_string_lossy(), quote(&v.to_string_lossy())))
            .chain(
                self.secret_envs
                    .iter()
                    .map(|(k, _)| format!("{}=***", k.to_string_lossy())),
            )
            .collect();
        parts.push(quote(&self.program.to_string_lossy()));
        parts.extend(self.args.iter().map(|a| quote(&a.to_string_lossy())));
        parts.join(" ")
    }
}

/// A secret value: `Debug` prints `***`, so no `{:?}` of a command leaks it.
#[derive(Clone)]
struct Masked(OsString);

impl std::fmt::Debug for Masked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Quotes a word for display the way a POSIX shell would need it.
pub fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%^".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// What a finished command produced.
#[derive(Debug, Clone, Default)]
pub struct Output {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    /// The last lines of stderr and stdout interleaved, for errors.
    pub tail: String,
}

impl Output {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Receives each output line of running commands (the TUI's live log, progress parsing).
pub type LineSink = Arc<dyn Fn(&str) + Send + Sync>;

/// The runner: shared by all operations of one invocation.
#[derive(Clone, Default)]
pub struct Runner {
    dry_run: bool,
    plan: Arc<Mutex<Vec<String>>>,
    cancel: Arc<AtomicBool>,
    sink: Option<LineSink>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("dry_run", &self.dry_run)
            .finish()
    }
}

impl Runner {
    pub fn new(dry_run: bool) -> Self {
        Runner {
            dry_run,
            ..Default::default()
        }
    }

    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    pub fn with_sink(mut self, sink: LineSink) -> Self {
        self.sink = Some(sink);
        self
    }

    /// A runner (same plan, same cancel flag) whose command output lines also go to
    /// `sink`, after the current sink if there is one: a log file for one command.
    pub fn tee(&self, sink: LineSink) -> Runner {
        let mut r = self.clone();
        r.sink = Some(match self.sink.clone() {
            Some(prev) => Arc::new(move |l: &str| {
                prev(l);
                sink(l);
            }),
            None => sink,
        });
        r
    }

    /// The flag that, once set, kills the running command and makes the next one fail.
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }

    /// Records a step of the plan (under --dry-run nothing else happens).
    pub fn note(&self, step: impl Into<String>) {
        let step = step.into();
        tracing::info!(target: "plan", "{step}");
        if let Ok(mut p) = self.plan.lock() {
            p.push(step);
        }
    }

    /// The steps recorded so far (commands as `+ cmdline`, other actions as text).
    pub fn plan(&self) -> Vec<String> {
        self.plan.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// Runs the command and fails unless it exits 0.
    pub fn run(&self, cmd: &Cmd) -> Result<Output> {
        let out = self.run_unchecked(cmd)?;
        if out.success {
            Ok(out)
        } else {
            Err(command_error(cmd, &out))
        }
    }

    /// Runs the command and returns its output whatever the exit status.
    pub fn run_unchecked(&self, cmd: &Cmd) -> Result<Output> {
        let line = cmd.display();
        if self.dry_run && !cmd.read_only {
            self.note(format!("+ {line}"));
            return Ok(Output {
                success: true,
                code: Some(0),
                ..Default::default()
            });
        }
        if self.cancel.load(Ordering::SeqCst) {
            return Err(Error::Cancelled);
        }
        tracing::info!(target: "run", "+ {line}");
        let mut c = Command::new(&cmd.program);
        c.args(&cmd.args);
        for (k, v) in &cmd.envs {
            c.env(k, v);
        }
        for (k, v) in &cmd.secret_envs {
            c.env(k, &v.0);
        }
        if let Some(d) = &cmd.cwd {
            c.current_dir(d);
        }
        if cmd.interactive {
            let status = c.status().map_err(|e| spawn_error(cmd, e))?;
            return Ok(Output {
                success: status.success(),
                code: status.code(),
                ..Default::default()
            });
        }
        c.stdin(if cmd.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        // own process group, killed with the tool, grandchildren by the watchdog
        super::reaper::prepare(&mut c);
        let mut child = c.spawn().map_err(|e| spawn_error(cmd, e))?;
        let pid = child.id();
        super::reaper::started(pid);
        if let (Some(data), Some(mut stdin)) = (cmd.stdin.clone(), child.stdin.take()) {
            std::thread::spawn(move || {
                let _ = stdin.write_all(&data);
            });
        }
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL_LINES)));
        let prog = Path::new(&cmd.program)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let err_thread = child.stderr.take().map(|s| {
            let tail = tail.clone();
            let sink = self.sink.clone();
            let prog = prog.clone();
            std::thread::spawn(move || pump_lines(s, &prog, &tail, sink.as_ref(), None))
        });
        let out_thread = child.stdout.take().map(|s| {
            let tail = tail.clone();
            let sink = self.sink.clone();
            let prog = prog.clone();
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                pump_lines(s, &prog, &tail, sink.as_ref(), Some(&mut buf));
                buf
            })
        });
        let status = loop {
            match child.try_wait() {
                Ok(Some(st)) => break st,
                Ok(None) => {}
                Err(e) => {
                    super::reaper::ended(pid, true);
                    return Err(spawn_error(cmd, e));
                }
            }
            if self.cancel.load(Ordering::SeqCst) {
                super::reaper::ended(pid, true);
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::Cancelled);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        super::reaper::ended(pid, false);
        if let Some(t) = err_thread {
            let _ = t.join();
        }
        let stdout = out_thread.and_then(|t| t.join().ok()).unwrap_or_default();
        let tail = tail
            .lock()
            .map(|t| t.iter().cloned().collect::<Vec<String>>().join("\n"))
            .unwrap_or_default();
        if !status.success() {
            // Info, not warn: the caller's error carries the command line and status;
            // a warn line on the terminal would break the one-line error contract.
            tracing::info!(target: "run", "{line}: {status}");
        }
        Ok(Output {
            success: status.success(),
            code: status.code(),
            stdout,
            tail,
        })
    }
}

fn pump_lines(
    src: impl Read,
    prog: &str,
    tail: &Mutex<VecDeque<String>>,
    sink: Option<&LineSink>,
    mut keep: Option<&mut Vec<u8>>,
) {
    let mut r = BufReader::new(src);
    let mut raw = Vec::new();
    loop {
        raw.clear();
        match r.read_until(b'\n', &mut raw) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if let Some(buf) = keep.as_deref_mut() {
            if buf.len() + raw.len() <= MAX_STDOUT {
                buf.extend_from_slice(&raw);
            }
        }
        let text = String::from_utf8_lossy(&raw);
        for line in text.split('\r') {
            let line = line.trim_end();
            if line.is_empty() {
                continue;
            }
            tracing::debug!(target: "run", "{prog}: {line}");
            if let Some(s) = sink {
                s(line);
            }
            if let Ok(mut t) = tail.lock() {
                if t.len() == TAIL_LINES {
                    t.pop_front();
                }
                t.push_back(line.to_string());
            }
        }
    }
}

fn spawn_error(cmd: &Cmd, e: std::io::Error) -> Error {
    let program = cmd.program.to_string_lossy().into_owned();
    let package = cmd.package.clone().unwrap_or_else(|| {
        Path::new(&program)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    Error::Spawn {
        program,
        package,
        source: e,
    }
}

pub fn command_error(cmd: &Cmd, out: &Output) -> Error {
    let status = match out.code {
        Some(c) => format!("exit status {c}"),
        None => "killed by a signal".to_string(),
    };
    let tail = if out.tail.is_empty() {
        String::new()
    } else {
        let lines: Vec<&str> = out.tail.lines().collect();
        let last = &lines[lines.len().saturating_sub(8)..];
        format!("; output ends with: {}", last.join(" | "))
    };
    Error::Command {
        cmdline: cmd.display(),
        status,
        tail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_argv_without_shell() {
        let r = Runner::new(false);
        let out = r
            .run(&Cmd::new("printf").arg("%s\\n").arg("a b; echo pwned"))
            .unwrap();
        assert_eq!(out.stdout_str(), "a b; echo pwned\n");
    }

    #[test]
    fn failure_carries_cmdline_and_tail() {
        let r = Runner::new(false);
        let e = r
            .run(&Cmd::new("ls").arg("/definitely/not/here"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("ls /definitely/not/here"), "{e}");
        assert!(e.contains("exit status 2"), "{e}");
        assert!(e.contains("No such file"), "{e}");
    }

    #[test]
    fn missing_program_names_it() {
        let r = Runner::new(false);
        let e = r
            .run(&Cmd::new("no-such-prog-xyz").package("xyz-tools"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no-such-prog-xyz") && e.contains("xyz-tools"),
            "{e}"
        );
    }

    #[test]
    fn dry_run_records_and_runs_nothing() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("made");
        let r = Runner::new(true);
        r.run(&Cmd::new("touch").arg(&target)).unwrap();
        assert!(!target.exists());
        assert_eq!(r.plan(), vec![format!("+ touch {}", target.display())]);
        // read-only commands still run
        let out = r.run(&Cmd::new("echo").arg("hi").read_only()).unwrap();
        assert_eq!(out.stdout_str(), "hi\n");
    }

    #[test]
    fn stdin_is_fed() {
        let r = Runner::new(false);
        let out = r.run(&Cmd::new("cat").stdin_bytes("x\ny\n")).unwrap();
        assert_eq!(out.stdout_str(), "x\ny\n");
    }

    #[test]
    fn secret_envs_reach_the_child_and_never_the_display() {
        let r = Runner::new(false);
        let cmd = Cmd::new("sh")
            .arg("-c")
            .arg("printf %s \"$DLS_SECRET\"")
            .secret_env("DLS_SECRET", "hunter2");
        assert_eq!(r.run(&cmd).unwrap().stdout_str(), "hunter2");
        assert!(!cmd.display().contains("hunter2"), "{}", cmd.display());
        assert!(
            cmd.display().starts_with("DLS_SECRET=*** sh"),
            "{}",
            cmd.display()
        );
        assert!(!format!("{cmd:?}").contains("hunter2"));
        let dry = Runner::new(true);
        dry.run(&cmd).unwrap();
        assert!(dry.plan().iter().all(|p| !p.contains("hunter2")));
        let fail = Cmd::new("false").secret_env("DLS_SECRET", "hunter2");
        let e = r.run(&fail).unwrap_err().to_string();
        assert!(
            !e.contains("hunter2") && e.contains("DLS_SECRET=***"),
            "{e}"
        );
    }

    #[test]
    fn quoting_for_display() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote("/x/y"), "/x/y");
    }
}
