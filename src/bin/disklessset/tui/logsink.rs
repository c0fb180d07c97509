//! Tracing into the log pane: while the full-screen UI runs nothing may write to the
//! terminal, so the core's log lines of a job's thread become `Event::Log` on the channel.
//! Lines from other threads go to the log file only (see the core's logging).
use std::cell::RefCell;
use std::io;
use std::sync::mpsc::Sender;

use tracing_subscriber::fmt::MakeWriter;

use disklessset::ops::{self, Config, Verbosity};

use super::Event;

thread_local! {
    static SINK: RefCell<Option<(Sender<Event>, u64)>> = const { RefCell::new(None) };
}

/// Routes this thread's log lines to job `job`'s pane (called by job worker threads).
pub fn attach(tx: Sender<Event>, job: u64) {
    SINK.with(|s| *s.borrow_mut() = Some((tx, job)));
}

/// Installs the global subscriber with the channel writer: the pane shows info lines
/// (debug with `-d`), the log file keeps what it always keeps.
pub fn init_logging(cfg: &Config, verbosity: Verbosity) {
    let v = match verbosity {
        Verbosity::Debug => Verbosity::Debug,
        _ => Verbosity::Info,
    };
    ops::init_logging(cfg, v, Some(ChannelWriter));
}

/// `MakeWriter` that buffers one formatted event and sends its lines on drop.
pub struct ChannelWriter;

impl<'a> MakeWriter<'a> for ChannelWriter {
    type Writer = LineWriter;
    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            buf: Vec::new(),
            sink: SINK.with(|s| s.borrow().clone()),
        }
    }
}

pub struct LineWriter {
    buf: Vec<u8>,
    sink: Option<(Sender<Event>, u64)>,
}

impl io::Write for LineWriter {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        if self.sink.is_some() {
            self.buf.extend_from_slice(b);
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        let Some((tx, job)) = &self.sink else {
            return;
        };
        let text = String::from_utf8_lossy(&self.buf);
        for line in strip_ansi(&text).lines() {
            let line = line.trim_end();
            if !line.is_empty() {
                let _ = tx.send(Event::Log {
                    job: *job,
                    line: line.to_string(),
                });
            }
        }
    }
}

/// Removes ANSI escape sequences (the formatter colours when stderr is a terminal).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\u{1b}' {
            if it.peek() == Some(&'[') {
                it.next();
                for c in it.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn strips_colours() {
        assert_eq!(
            super::strip_ansi("\u{1b}[32m INFO\u{1b}[0m step"),
            " INFO step"
        );
    }
}
