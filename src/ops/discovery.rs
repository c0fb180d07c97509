//! `discovery start|stop|accept` (the mutating verbs) and `discovery list` (a query, in
//! [`super::query::discovery_list`]): the state and policies are in `boot::discovery`.
use crate::boot::discovery::{self, DiscoveryState, Policy};
use crate::ctx::Ctx;
use crate::error::{Error, Result};

use super::{Outcome, Request};

fn outcome(json: serde_json::Value, line: String) -> Outcome {
    Outcome {
        json,
        lines: vec![line],
        in_dry_run: true,
        failure: None,
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<serde_json::Value> {
    serde_json::to_value(v).map_err(|e| Error::invalid(format!("report: {e}")))
}

fn state_line(s: &DiscoveryState) -> String {
    let pending = s.machines.iter().filter(|m| m.name.is_none()).count();
    format!(
        "discovery {}: policy {}, pool {}; {} machines reported, {pending} pending",
        if s.on { "on" } else { "off" },
        s.policy.as_str(),
        s.pool.as_deref().unwrap_or("none"),
        s.machines.len()
    )
}

pub(super) fn run(ctx: &Ctx, req: &Request) -> Result<Outcome> {
    let cfg = &ctx.cfg;
    let dry = ctx.runner.dry_run();
    match req {
        Request::DiscoveryStart { pool, policy } => {
            let policy = Policy::parse(policy)?;
            if dry {
                if let Some(p) = pool {
                    crate::cluster::expand_nodes(cfg, p)?;
                }
                ctx.runner
                    .note(format!("write {}", discovery::path(cfg).display()));
                return Ok(outcome(
                    serde_json::json!({"ok": true, "dry_run": true}),
                    format!("would start discovery (policy {})", policy.as_str()),
                ));
            }
            let s = discovery::start(cfg, pool.as_deref(), policy)?;
            // Say now when the server has nothing to boot unknown machines into.
            let mut line = state_line(&s);
            if let Err(e) = discovery::kernel(cfg) {
                line.push_str(&format!("; WARNING: {e}"));
            }
            Ok(outcome(to_json(&s)?, line))
        }
        Request::DiscoveryStop => {
            if dry {
                ctx.runner
                    .note(format!("write {}", discovery::path(cfg).display()));
                return Ok(outcome(
                    serde_json::json!({"ok": true, "dry_run": true}),
                    "would stop discovery".into(),
                ));
            }
            let s = discovery::stop(cfg)?;
            Ok(outcome(to_json(&s)?, state_line(&s)))
        }
        Request::DiscoveryAccept { mac, node } => {
            if dry {
                ctx.runner.note(format!(
                    "add {node} with MAC {mac} to {}",
                    cfg.nodes_file.display()
                ));
                return Ok(outcome(
                    serde_json::json!({"ok": true, "dry_run": true}),
                    format!("would accept {mac} as {node}"),
                ));
            }
            let d = discovery::accept(cfg, mac, node)?;
            let line = format!(
                "machine {} accepted as {node} (in {}, facts recorded)",
                d.mac,
                cfg.nodes_file.display()
            );
            Ok(outcome(to_json(&d)?, line))
        }
        _ => Err(Error::invalid("internal: not a discovery request")),
    }
}
