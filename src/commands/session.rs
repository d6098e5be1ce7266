//! The commands of the host–agent session itself: guest-sync(-delimited), guest-ping,
//! guest-info. They touch no files and stay available while filesystems are frozen.

use serde::{Deserialize, Serialize};

use super::{Empty, NoArgs};
use crate::ctx::{Ctx, Session};
use crate::error::Error;
use crate::registry::COMMANDS;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncArgs {
    pub id: i64,
}

pub fn sync(_: &Ctx, args: SyncArgs) -> Result<i64, Error> {
    Ok(args.id)
}

/// As guest-sync, but the reply is preceded by 0xFF so the host can find it in a stream
/// that may still hold a previous client's replies.
pub fn sync_delimited(_: &Ctx, session: &mut Session, args: SyncArgs) -> Result<i64, Error> {
    session.delimit_next_reply = true;
    Ok(args.id)
}

pub fn ping(_: &Ctx, _: NoArgs) -> Result<Empty, Error> {
    Ok(Empty {})
}

/// The qemu-ga release whose behaviour (commands, replies, errors) this agent implements:
/// guest-info reports it, as qemu-ga reports its QEMU_VERSION, so that tools comparing
/// versions numerically (feature gates, inventories such as VMAnalyzer's agent_version)
/// see what they would see from upstream. Our own release is `CARGO_PKG_VERSION`, shown
/// next to it by `-V`.
pub const QEMU_GA_VERSION: &str = "7.2.0";

/// The `-V` line: qemu-ga prints "QEMU Guest Agent 7.2.0 (Debian 1:7.2+dfsg-7)", the
/// package version in parentheses; ours names the qga-bc release there.
pub fn version_line() -> String {
    format!(
        "QEMU Guest Agent {QEMU_GA_VERSION} (qga-bc {})\n",
        env!("CARGO_PKG_VERSION")
    )
}

#[derive(Debug, Serialize)]
pub struct AgentInfo {
    pub version: &'static str,
    pub supported_commands: Vec<CommandInfo>,
}

#[derive(Debug, Serialize)]
pub struct CommandInfo {
    pub name: &'static str,
    pub enabled: bool,
    #[serde(rename = "success-response")]
    pub success_response: bool,
}

pub fn info(ctx: &Ctx, session: &mut Session, _: NoArgs) -> Result<AgentInfo, Error> {
    let supported_commands = COMMANDS
        .iter()
        .map(|c| CommandInfo {
            name: c.name,
            enabled: ctx.filter.allows(c.name) && (!session.frozen || c.while_frozen),
            success_response: c.success_response,
        })
        .collect();
    Ok(AgentInfo {
        version: QEMU_GA_VERSION,
        supported_commands,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_qemu_ga_first_then_ours() {
        // issue 14 item 1: "0.1.0" compared as a number below every qemu-ga release.
        let parts: Vec<u32> = QEMU_GA_VERSION
            .split('.')
            .map(|p| p.parse().unwrap())
            .collect();
        assert_eq!(parts.len(), 3);
        assert!(parts >= vec![7, 2, 0]);
        assert_eq!(
            version_line(),
            format!(
                "QEMU Guest Agent 7.2.0 (qga-bc {})\n",
                env!("CARGO_PKG_VERSION")
            )
        );
    }
}
