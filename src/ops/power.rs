//! Power and boot-device control (`power`, `bootdev`, `bootset --reboot`): the read
//! queries here, the mutating verbs as `Request::{Power, Bootdev, BootsetReboot}`.
use std::time::Duration;

use crate::boot::bootset::{self, Assign, AssignReport};
use crate::ctx::Ctx;
use crate::error::Result;
use crate::power::{self, BmcOptions, BootRequest, PowerAction, Report, Staging};

/// `power status NODESET`: every node's state (`on`, `off`, `unknown` + its error).
pub fn power_status(ctx: &Ctx, set: &str, opts: &BmcOptions) -> Result<Report> {
    power::status(ctx, set, opts)
}

/// `bootdev status NODESET`: the boot override each BMC reports.
pub fn bootdev_status(ctx: &Ctx, set: &str, opts: &BmcOptions) -> Result<Report> {
    power::bootdev_status(ctx, set, opts)
}

pub(super) fn power(
    ctx: &Ctx,
    set: &str,
    action: PowerAction,
    opts: &BmcOptions,
    wait: Option<Duration>,
) -> Result<Report> {
    power::power(ctx, set, action, opts, wait)
}

pub(super) fn bootdev(
    ctx: &Ctx,
    set: &str,
    req: &BootRequest,
    opts: &BmcOptions,
) -> Result<Report> {
    power::set_bootdev(ctx, set, req, opts)
}

/// What `bootset ... --reboot` did: the assignment, then each node's reboot.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RebootReport {
    pub assign: AssignReport,
    pub reboot: Report,
}

/// `bootset -n NODESET -b TYPE ... --reboot`: assign (nothing is rebooted if that is
/// refused), then next boot PXE once and a power cycle (power on when off), staged.
pub(super) fn bootset_reboot(
    ctx: &Ctx,
    a: &Assign,
    staging: &Staging,
    opts: &BmcOptions,
) -> Result<RebootReport> {
    let assign = bootset::assign(ctx, a)?;
    let reboot = power::pxe_reboot(ctx, &a.nodeset, staging, opts)?;
    Ok(RebootReport { assign, reboot })
}
