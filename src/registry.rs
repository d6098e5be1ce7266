//! The one table of commands. Dispatch, guest-info, `-b help`, the allow/block lists and
//! the frozen-state gate all read it; no other list of command names exists.

use std::collections::BTreeSet;

use serde_json::value::RawValue;

use crate::commands::{
    bc_admin, bc_apps, bc_check, bc_disk, bc_monitor, bc_oom, cpu, host, memory, net, power,
    session, ssh, time, users,
};
use crate::ctx::Ctx;
use crate::error::Error;
use crate::protocol::args::{call, call_mut, Encoded};

pub type Handler = fn(&mut Ctx, &RawValue) -> Result<Encoded, Error>;

pub struct Command {
    pub name: &'static str,
    pub handler: Handler,
    /// False for commands whose success sends no reply (shutdown, suspend).
    pub success_response: bool,
    /// May run while filesystems are frozen.
    pub while_frozen: bool,
}

impl Command {
    pub const fn new(name: &'static str, handler: Handler) -> Command {
        Command {
            name,
            handler,
            success_response: true,
            while_frozen: false,
        }
    }

    pub const fn no_success_response(mut self) -> Command {
        self.success_response = false;
        self
    }

    pub const fn while_frozen(mut self) -> Command {
        self.while_frozen = true;
        self
    }
}

pub static COMMANDS: &[Command] = &[
    Command::new("guest-sync-delimited", |c, a| {
        call_mut(c, a, session::sync_delimited)
    })
    .while_frozen(),
    Command::new("guest-sync", |c, a| call(c, a, session::sync)).while_frozen(),
    Command::new("guest-ping", |c, a| call(c, a, session::ping)).while_frozen(),
    Command::new("guest-info", |c, a| call(c, a, session::info)).while_frozen(),
    // BC-Linux monitoring and management (issue #3)
    Command::new("guest-get-memory-status", |c, a| {
        call(c, a, bc_monitor::get_memory_status)
    }),
    Command::new("guest-get-system-info", |c, a| {
        call(c, a, bc_monitor::get_system_info)
    }),
    Command::new("guest-get-oom-status", |c, a| {
        call(c, a, bc_oom::get_oom_status)
    }),
    Command::new("guest-get-app-status", |c, a| {
        call_mut(c, a, bc_apps::get_app_status)
    }),
    Command::new("guest-get-disk-status", |c, a| {
        call(c, a, bc_disk::get_disk_status)
    }),
    Command::new("guest-user-check", |c, a| call(c, a, bc_check::user_check)),
    Command::new("change-hostname", |c, a| {
        call(c, a, bc_admin::change_hostname)
    }),
    Command::new("change-password", |c, a| {
        call(c, a, bc_admin::change_password)
    }),
    Command::new("guest-get-monitoring-items", |c, a| {
        call(c, a, bc_monitor::get_monitoring_items)
    }),
    // BC-Linux commands VMAnalyzer polls (issue #5)
    Command::new("bc-guest-get-tcp-snmp", |c, a| {
        call(c, a, crate::commands::tcp::get_tcp_snmp)
    }),
    Command::new("guest-get-tcp-conn-state", |c, a| {
        call(c, a, crate::commands::tcp::get_tcp_conn_state)
    }),
    Command::new("guest-get-tcp-conn", |c, a| {
        call(c, a, crate::commands::tcp::get_tcp_conn)
    }),
    Command::new("guest-get-cpustinfo", |c, a| {
        call(c, a, crate::commands::cpu_info::get_cpustinfo)
    }),
    Command::new("bc-guest-get-diskstats", |c, a| {
        call(c, a, crate::commands::disk_io::get_diskstats)
    }),
    Command::new("guest-get-load-average", |c, a| {
        call(c, a, crate::commands::sysload::get_load_average)
    }),
    Command::new("guest-get-lastboot-time", |c, a| {
        call(c, a, crate::commands::sysload::get_lastboot_time)
    }),
    Command::new("guest-get-cpu-utilization", |c, a| {
        call_mut(c, a, crate::commands::sysload::get_cpu_utilization)
    }),
    Command::new("guest-get-cputopn-status", |c, a| {
        call_mut(c, a, crate::commands::topn::get_cputopn_status)
    }),
    Command::new("guest-get-memtopn-status", |c, a| {
        call_mut(c, a, crate::commands::topn::get_memtopn_status)
    }),
    // Upstream parity I: host, time, network, CPUs, memory blocks, power, users (issue #4)
    Command::new("guest-get-host-name", |c, a| {
        call(c, a, host::get_host_name)
    }),
    Command::new("guest-get-time", |c, a| call(c, a, time::get_time)),
    Command::new("guest-set-time", |c, a| call(c, a, time::set_time)),
    Command::new("guest-get-vcpus", |c, a| call(c, a, cpu::get_vcpus)),
    Command::new("guest-set-vcpus", |c, a| call(c, a, cpu::set_vcpus)),
    Command::new("guest-get-memory-blocks", |c, a| {
        call(c, a, memory::get_memory_blocks)
    }),
    Command::new("guest-set-memory-blocks", |c, a| {
        call(c, a, memory::set_memory_blocks)
    }),
    Command::new("guest-get-memory-block-info", |c, a| {
        call(c, a, memory::get_memory_block_info)
    }),
    Command::new("guest-network-get-interfaces", |c, a| {
        call(c, a, net::get_interfaces)
    }),
    Command::new("guest-network-get-route", |c, a| call(c, a, net::get_route)),
    Command::new("guest-shutdown", |c, a| call(c, a, power::shutdown)).no_success_response(),
    Command::new("guest-suspend-disk", |c, a| call(c, a, power::suspend_disk))
        .no_success_response(),
    Command::new("guest-suspend-ram", |c, a| call(c, a, power::suspend_ram)).no_success_response(),
    Command::new("guest-suspend-hybrid", |c, a| {
        call(c, a, power::suspend_hybrid)
    })
    .no_success_response(),
    Command::new("guest-get-osinfo", |c, a| call(c, a, host::get_osinfo)),
    Command::new("guest-get-users", |c, a| call(c, a, users::get_users)),
    Command::new("guest-get-timezone", |c, a| call(c, a, time::get_timezone)),
    Command::new("guest-get-load", |c, a| call(c, a, cpu::get_load)),
    Command::new("guest-get-cpustats", |c, a| call(c, a, cpu::get_cpustats)),
    Command::new("guest-set-user-password", |c, a| {
        call(c, a, users::set_user_password)
    }),
    Command::new("guest-ssh-get-authorized-keys", |c, a| {
        call(c, a, ssh::get_authorized_keys)
    }),
    Command::new("guest-ssh-add-authorized-keys", |c, a| {
        call(c, a, ssh::add_authorized_keys)
    }),
    Command::new("guest-ssh-remove-authorized-keys", |c, a| {
        call(c, a, ssh::remove_authorized_keys)
    }),
];

pub fn find(name: &str) -> Option<&'static Command> {
    COMMANDS.iter().find(|c| c.name == name)
}

/// The allow/block lists: an allow-list, when given, denies everything else; the
/// block-list wins over it (qemu-ga `ga_command_is_allowed`).
#[derive(Debug, Default, Clone)]
pub struct Filter {
    allow: Option<BTreeSet<String>>,
    block: BTreeSet<String>,
}

impl Filter {
    pub fn new(allow: &[String], block: &[String]) -> Filter {
        Filter {
            allow: (!allow.is_empty()).then(|| allow.iter().cloned().collect()),
            block: block.iter().cloned().collect(),
        }
    }

    pub fn allows(&self, name: &str) -> bool {
        let allowed = self.allow.as_ref().is_none_or(|a| a.contains(name));
        allowed && !self.block.contains(name)
    }

    /// Names in the lists that no command has (kept, but worth a log line).
    pub fn unknown_names(&self) -> Vec<String> {
        let listed = self.allow.iter().flatten().chain(self.block.iter());
        listed.filter(|n| find(n).is_none()).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_well_formed() {
        let mut seen = BTreeSet::new();
        for c in COMMANDS {
            assert!(seen.insert(c.name), "duplicate {}", c.name);
            assert!(
                !c.name.is_empty()
                    && c.name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "malformed {}",
                c.name
            );
        }
    }

    #[test]
    fn block_wins_over_allow() {
        let f = Filter::new(
            &["guest-ping".into(), "guest-info".into()],
            &["guest-info".into()],
        );
        assert!(f.allows("guest-ping"));
        assert!(!f.allows("guest-info"));
        assert!(!f.allows("guest-sync"));
    }

    #[test]
    fn no_lists_allow_everything() {
        assert!(COMMANDS.iter().all(|c| Filter::default().allows(c.name)));
    }
}
