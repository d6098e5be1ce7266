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
        version: env!("CARGO_PKG_VERSION"),
        supported_commands,
    })
}
