//! The one table of commands. Dispatch, guest-info, `-b help`, the allow/block lists and
//! the frozen-state gate all read it; no other list of command names exists.

use std::collections::BTreeSet;

use serde_json::value::RawValue;

use crate::commands::{
    bc_admin, bc_apps, bc_check, bc_disk, bc_monitor, bc_oom, cpu, disks, exec, file, fs, fsfreeze,
    host, memory, net, power, session, ssh, time, users,
};
use crate::ctx::{Ctx, Session};
use crate::error::Error;
use crate::job::Step;
use crate::protocol::args::{call, call_job, call_job_mut, call_mut, Encoded};

/// Parses the arguments, runs the handler and encodes its answer, now or after the
/// program it waits for.
pub type Handler = fn(&Ctx, &mut Session, &RawValue) -> Result<Step<Encoded>, Error>;

pub struct Command {
    pub name: &'static str,
    pub handler: Handler,
    /// False for commands whose success sends no reply (shutdown, suspend).
    pub success_response: bool,
    /// May run while filesystems are frozen.
    pub while_frozen: bool,
    /// Reads the guest's state and nothing else, and runs no program the host chose:
    /// the shipped config's read-only preset (`allow-rpcs`) lists these.
    pub read_only: bool,
}

impl Command {
    pub const fn new(name: &'static str, handler: Handler) -> Command {
        Command {
            name,
            handler,
            success_response: true,
            while_frozen: false,
            read_only: false,
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

    pub const fn read_only(mut self) -> Command {
        self.read_only = true;
        self
    }
}

pub static COMMANDS: &[Command] = &[
    Command::new("guest-sync-delimited", |c, s, a| {
        call_mut(c, s, a, session::sync_delimited)
    })
    .read_only()
    .while_frozen(),
    Command::new("guest-sync", |c, s, a| call(c, s, a, session::sync))
        .read_only()
        .while_frozen(),
    Command::new("guest-ping", |c, s, a| call(c, s, a, session::ping))
        .read_only()
        .while_frozen(),
    Command::new("guest-info", |c, s, a| call_mut(c, s, a, session::info))
        .read_only()
        .while_frozen(),
    // BC-Linux monitoring and management (issue #3)
    Command::new("guest-get-memory-status", |c, s, a| {
        call(c, s, a, bc_monitor::get_memory_status)
    })
    .read_only(),
    Command::new("guest-get-system-info", |c, s, a| {
        call(c, s, a, bc_monitor::get_system_info)
    })
    .read_only(),
    Command::new("guest-get-oom-status", |c, s, a| {
        call_mut(c, s, a, bc_oom::get_oom_status)
    })
    .read_only(),
    Command::new("guest-get-app-status", |c, s, a| {
        call_mut(c, s, a, bc_apps::get_app_status)
    })
    .read_only(),
    Command::new("guest-get-disk-status", |c, s, a| {
        call_job(c, s, a, bc_disk::get_disk_status)
    })
    .read_only(),
    Command::new("guest-user-check", |c, s, a| {
        call_job(c, s, a, bc_check::user_check)
    }),
    Command::new("change-hostname", |c, s, a| {
        call(c, s, a, bc_admin::change_hostname)
    }),
    Command::new("change-password", |c, s, a| {
        call_job(c, s, a, bc_admin::change_password)
    }),
    Command::new("guest-get-monitoring-items", |c, s, a| {
        call_job_mut(c, s, a, bc_monitor::get_monitoring_items)
    })
    .read_only(),
    // BC-Linux commands VMAnalyzer polls (issue #5)
    Command::new("bc-guest-get-tcp-snmp", |c, s, a| {
        call(c, s, a, crate::commands::tcp::get_tcp_snmp)
    })
    .read_only(),
    Command::new("guest-get-tcp-conn-state", |c, s, a| {
        call(c, s, a, crate::commands::tcp::get_tcp_conn_state)
    })
    .read_only(),
    Command::new("guest-get-tcp-conn", |c, s, a| {
        call(c, s, a, crate::commands::tcp::get_tcp_conn)
    })
    .read_only(),
    Command::new("guest-get-cpustinfo", |c, s, a| {
        call(c, s, a, crate::commands::cpu_info::get_cpustinfo)
    })
    .read_only(),
    Command::new("bc-guest-get-diskstats", |c, s, a| {
        call(c, s, a, crate::commands::disk_io::get_diskstats)
    })
    .read_only(),
    Command::new("guest-get-load-average", |c, s, a| {
        call(c, s, a, crate::commands::sysload::get_load_average)
    })
    .read_only(),
    Command::new("guest-get-lastboot-time", |c, s, a| {
        call(c, s, a, crate::commands::sysload::get_lastboot_time)
    })
    .read_only(),
    Command::new("guest-get-cpu-utilization", |c, s, a| {
        call_mut(c, s, a, crate::commands::sysload::get_cpu_utilization)
    })
    .read_only(),
    Command::new("guest-get-cputopn-status", |c, s, a| {
        call_mut(c, s, a, crate::commands::topn::get_cputopn_status)
    })
    .read_only(),
    Command::new("guest-get-memtopn-status", |c, s, a| {
        call_mut(c, s, a, crate::commands::topn::get_memtopn_status)
    })
    .read_only(),
    // Upstream parity I: host, time, network, CPUs, memory blocks, power, users (issue #4)
    Command::new("guest-get-host-name", |c, s, a| {
        call(c, s, a, host::get_host_name)
    })
    .read_only(),
    Command::new("guest-get-time", |c, s, a| call(c, s, a, time::get_time)).read_only(),
    Command::new("guest-set-time", |c, s, a| {
        call_job(c, s, a, time::set_time)
    }),
    Command::new("guest-get-vcpus", |c, s, a| call(c, s, a, cpu::get_vcpus)).read_only(),
    Command::new("guest-set-vcpus", |c, s, a| call(c, s, a, cpu::set_vcpus)),
    Command::new("guest-get-memory-blocks", |c, s, a| {
        call(c, s, a, memory::get_memory_blocks)
    })
    .read_only(),
    Command::new("guest-set-memory-blocks", |c, s, a| {
        call(c, s, a, memory::set_memory_blocks)
    }),
    Command::new("guest-get-memory-block-info", |c, s, a| {
        call(c, s, a, memory::get_memory_block_info)
    })
    .read_only(),
    Command::new("guest-network-get-interfaces", |c, s, a| {
        call(c, s, a, net::get_interfaces)
    })
    .read_only(),
    Command::new("guest-network-get-route", |c, s, a| {
        call(c, s, a, net::get_route)
    })
    .read_only(),
    Command::new("guest-shutdown", |c, s, a| {
        call_job(c, s, a, power::shutdown)
    })
    .no_success_response(),
    Command::new("guest-suspend-disk", |c, s, a| {
        call_job(c, s, a, power::suspend_disk)
    })
    .no_success_response(),
    Command::new("guest-suspend-ram", |c, s, a| {
        call_job(c, s, a, power::suspend_ram)
    })
    .no_success_response(),
    Command::new("guest-suspend-hybrid", |c, s, a| {
        call_job(c, s, a, power::suspend_hybrid)
    })
    .no_success_response(),
    // Upstream parity II: programs (issue #9)
    Command::new("guest-exec", |c, s, a| call_mut(c, s, a, exec::exec)),
    Command::new("guest-exec-status", |c, s, a| {
        call_mut(c, s, a, exec::exec_status)
    }),
    Command::new("guest-get-osinfo", |c, s, a| {
        call(c, s, a, host::get_osinfo)
    })
    .read_only(),
    Command::new("guest-get-users", |c, s, a| call(c, s, a, users::get_users)).read_only(),
    Command::new("guest-get-timezone", |c, s, a| {
        call(c, s, a, time::get_timezone)
    })
    .read_only(),
    Command::new("guest-get-load", |c, s, a| call(c, s, a, cpu::get_load)).read_only(),
    Command::new("guest-get-cpustats", |c, s, a| {
        call(c, s, a, cpu::get_cpustats)
    })
    .read_only(),
    Command::new("guest-set-user-password", |c, s, a| {
        call_job(c, s, a, users::set_user_password)
    }),
    Command::new("guest-ssh-get-authorized-keys", |c, s, a| {
        call_job(c, s, a, ssh::get_authorized_keys)
    }),
    Command::new("guest-ssh-add-authorized-keys", |c, s, a| {
        call_job(c, s, a, ssh::add_authorized_keys)
    }),
    Command::new("guest-ssh-remove-authorized-keys", |c, s, a| {
        call_job(c, s, a, ssh::remove_authorized_keys)
    }),
    // Upstream parity III: trim, filesystems, disks, disk statistics (issue #10)
    Command::new("guest-fstrim", |c, s, a| call(c, s, a, fs::fstrim)),
    Command::new("guest-get-fsinfo", |c, s, a| {
        call_job(c, s, a, fs::get_fsinfo)
    })
    .read_only(),
    Command::new("guest-get-disks", |c, s, a| call(c, s, a, disks::get_disks)).read_only(),
    Command::new("guest-get-diskstats", |c, s, a| {
        call(c, s, a, disks::get_diskstats)
    })
    .read_only(),
    // Upstream parity II: files (issue #9)
    Command::new("guest-file-open", |c, s, a| call_mut(c, s, a, file::open)),
    Command::new("guest-file-close", |c, s, a| call_mut(c, s, a, file::close)),
    Command::new("guest-file-read", |c, s, a| call_mut(c, s, a, file::read)),
    Command::new("guest-file-write", |c, s, a| call_mut(c, s, a, file::write)),
    Command::new("guest-file-seek", |c, s, a| call_mut(c, s, a, file::seek)),
    Command::new("guest-file-flush", |c, s, a| call_mut(c, s, a, file::flush)),
    // Upstream parity III: freeze and thaw (issue #10)
    Command::new("guest-fsfreeze-status", |c, s, a| {
        call_mut(c, s, a, fsfreeze::status)
    })
    .read_only()
    .while_frozen(),
    Command::new("guest-fsfreeze-freeze", |c, s, a| {
        call_job_mut(c, s, a, fsfreeze::freeze_all)
    }),
    Command::new("guest-fsfreeze-freeze-list", |c, s, a| {
        call_job_mut(c, s, a, fsfreeze::freeze_list)
    }),
    Command::new("guest-fsfreeze-thaw", |c, s, a| {
        call_job_mut(c, s, a, fsfreeze::thaw)
    })
    .while_frozen(),
];

/// The read-only commands, in table order (the read-only preset).
pub fn read_only_names() -> Vec<&'static str> {
    COMMANDS
        .iter()
        .filter(|c| c.read_only)
        .map(|c| c.name)
        .collect()
}

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
