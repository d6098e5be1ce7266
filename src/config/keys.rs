//! The one table of configuration keys. Parsing (the key-file and the options that set
//! the same keys), `-D`, the example config the packages ship and the CONFIGURATION
//! section of qemu-ga(8) are all derived from [`KEYS`] and [`GROUPS`]; a unit test checks
//! that the shipped files are what this table generates.

use std::path::PathBuf;

use super::{
    parse_bool, parse_list, Config, DiskStatusFormat, BC, DEFAULT_FSFREEZE_HOOK, GENERAL,
    USER_CHECKS,
};

/// One key of the key-file.
pub struct Key {
    pub group: &'static str,
    pub name: &'static str,
    /// Older names read as this key (never written).
    pub aliases: &'static [&'static str],
    /// The value when the key is unset, as the example config writes it; "" for none.
    pub default: &'static str,
    /// One or two sentences for the example config and the man page.
    pub doc: &'static str,
    /// Sets the key from its text; lists accumulate, as in qemu-ga.
    pub set: fn(&mut Config, &str) -> Result<(), String>,
    /// The value `-D` writes; `None` leaves the key out.
    pub get: fn(&Config) -> Option<String>,
}

/// A key-file group, in the order the example config and the man page show them.
pub struct Group {
    pub name: &'static str,
    pub doc: &'static str,
}

pub static GROUPS: &[Group] = &[
    Group {
        name: GENERAL,
        doc: "The keys of upstream qemu-ga, each also a command-line option (the option \
              wins; lists from both accumulate). qemu-ga ignores keys it does not know, and \
              so does qga-bc, with a warning in the log.",
    },
    Group {
        name: BC,
        doc: "qga-bc's BC-Linux monitoring settings (upstream qemu-ga ignores this group).",
    },
    Group {
        name: USER_CHECKS,
        doc: "Named checks for guest-user-check: each key is a check name, its value a \
              shell command run with /bin/sh -c as root. The host asks for a check by \
              name; the command's exit status and output are the reply. Example:\n\
              check-root-fs=findmnt -n /",
    },
];

fn path(p: &Option<PathBuf>) -> Option<String> {
    p.as_ref().map(|p| p.to_string_lossy().into_owned())
}

/// Writes lists as qemu-ga 7.2 reads and dumps them: comma-separated. (qemu-ga 7.2 reads
/// `block-rpcs=a;b` as one command name "a;b" and blocks nothing; both are read here.)
fn list(items: &[String]) -> Option<String> {
    (!items.is_empty()).then(|| items.join(","))
}

fn positive<T: std::str::FromStr + PartialOrd + Default>(
    key: &str,
    value: &str,
    what: &str,
) -> Result<T, String> {
    value
        .parse()
        .ok()
        .filter(|n| *n > T::default())
        .ok_or_else(|| format!("invalid value '{value}' for {key} ({what}, > 0)"))
}

pub static KEYS: &[Key] = &[
    Key {
        group: GENERAL,
        name: "daemon",
        aliases: &[],
        default: "false",
        doc: "Become a daemon: fork, write the pidfile, detach (-d).",
        set: |c, v| {
            c.daemon = parse_bool("daemon", v)?;
            Ok(())
        },
        get: |c| Some(c.daemon.to_string()),
    },
    Key {
        group: GENERAL,
        name: "method",
        aliases: &[],
        default: "virtio-serial",
        doc: "Transport: virtio-serial, isa-serial, unix-listen or vsock-listen (-m).",
        set: |c, v| {
            c.method = v.parse()?;
            Ok(())
        },
        get: |c| Some(c.method.to_string()),
    },
    Key {
        group: GENERAL,
        name: "path",
        aliases: &[],
        default: "/dev/virtio-ports/org.qemu.guest_agent.0",
        doc: "Device or socket path (-p); for isa-serial the default is /dev/ttyS0, \
              vsock-listen takes <cid>:<port>. Without it, virtio-serial also finds the \
              port org.qemu.guest_agent.0 through /sys/class/virtio-ports.",
        set: |c, v| {
            c.path = Some(v.to_string());
            Ok(())
        },
        get: |c| c.path.clone(),
    },
    Key {
        group: GENERAL,
        name: "logfile",
        aliases: &[],
        default: "",
        doc: "Log file (-l); unset, the agent logs to stderr.",
        set: |c, v| {
            c.logfile = Some(PathBuf::from(v));
            Ok(())
        },
        get: |c| path(&c.logfile),
    },
    Key {
        group: GENERAL,
        name: "pidfile",
        aliases: &[],
        default: "/var/run/qemu-ga.pid",
        doc: "Pidfile (-f); the default is used when daemonized.",
        set: |c, v| {
            c.pidfile = Some(PathBuf::from(v));
            Ok(())
        },
        get: |c| path(&c.pidfile),
    },
    Key {
        group: GENERAL,
        name: "fsfreeze-hook",
        aliases: &[],
        default: "",
        doc: "Enables the fsfreeze hook, run with 'freeze' before and 'thaw' after \
              guest-fsfreeze-freeze/thaw (-F). An empty value means /etc/qemu/fsfreeze-hook; \
              unset, no hook runs.",
        set: |c, v| {
            let hook = if v.is_empty() {
                DEFAULT_FSFREEZE_HOOK
            } else {
                v
            };
            c.fsfreeze_hook = Some(PathBuf::from(hook));
            Ok(())
        },
        get: |c| path(&c.fsfreeze_hook),
    },
    Key {
        group: GENERAL,
        name: "statedir",
        aliases: &[],
        default: "/var/run",
        doc: "Directory for state that must survive a restart, such as the frozen flag \
              (-t, absolute).",
        set: |c, v| {
            if !v.starts_with('/') {
                return Err(format!("statedir '{v}' must be an absolute path"));
            }
            c.statedir = PathBuf::from(v);
            Ok(())
        },
        get: |c| Some(c.statedir.to_string_lossy().into_owned()),
    },
    Key {
        group: GENERAL,
        name: "verbose",
        aliases: &[],
        default: "false",
        doc: "Log debugging detail (-v).",
        set: |c, v| {
            c.verbose = parse_bool("verbose", v)?;
            Ok(())
        },
        get: |c| Some(c.verbose.to_string()),
    },
    Key {
        group: GENERAL,
        name: "retry-path",
        aliases: &[],
        default: "false",
        doc: "Reopen the channel when it is missing or fails instead of exiting (-r).",
        set: |c, v| {
            c.retry_path = parse_bool("retry-path", v)?;
            Ok(())
        },
        get: |c| Some(c.retry_path.to_string()),
    },
    Key {
        group: GENERAL,
        name: "block-rpcs",
        // The pre-7.2 name, which CentOS 7's sysconfig still uses.
        aliases: &["blacklist"],
        default: "",
        doc: "Commands to disable, comma-separated (-b; 'blacklist' is read too).",
        set: |c, v| {
            c.block_rpcs.extend(parse_list(v));
            Ok(())
        },
        get: |c| list(&c.block_rpcs),
    },
    Key {
        group: GENERAL,
        name: "allow-rpcs",
        aliases: &[],
        default: "",
        doc: "Only these commands are enabled, comma-separated (-a); block-rpcs then \
              disables from what is left.",
        set: |c, v| {
            c.allow_rpcs.extend(parse_list(v));
            Ok(())
        },
        get: |c| list(&c.allow_rpcs),
    },
    Key {
        group: GENERAL,
        name: "user-check-timeout",
        aliases: &[],
        default: "10",
        doc: "Seconds a guest-user-check command may run before it is killed (qga-bc).",
        set: |c, v| {
            c.user_check_timeout = positive("user-check-timeout", v, "seconds")?;
            Ok(())
        },
        get: |c| Some(c.user_check_timeout.to_string()),
    },
    Key {
        group: GENERAL,
        name: "user-check-adhoc",
        aliases: &[],
        default: "true",
        doc: "Whether guest-user-check may run a command the host sends, rather than \
              only the named checks of [user-checks] (qga-bc).",
        set: |c, v| {
            c.user_check_adhoc = parse_bool("user-check-adhoc", v)?;
            Ok(())
        },
        get: |c| Some(c.user_check_adhoc.to_string()),
    },
    Key {
        group: GENERAL,
        name: "vsock-allow-cids",
        aliases: &[],
        default: "2",
        doc: "vsock-listen accepts peers with these CIDs only, comma-separated; replaces \
              the default (2, the host) rather than adding to it (qga-bc).",
        set: |c, v| {
            let cids: Result<Vec<u32>, _> = parse_list(v).map(|c| c.parse()).collect();
            c.vsock_allow_cids = cids.ok().filter(|c| !c.is_empty()).ok_or_else(|| {
                format!("invalid value '{v}' for vsock-allow-cids (CIDs, e.g. 2,3)")
            })?;
            Ok(())
        },
        get: |c| {
            let cids: Vec<String> = c.vsock_allow_cids.iter().map(u32::to_string).collect();
            Some(cids.join(","))
        },
    },
    Key {
        group: GENERAL,
        name: "max-file-handles",
        aliases: &[],
        default: "1024",
        doc: "At most this many guest-file-open handles at once (qga-bc).",
        set: |c, v| {
            c.max_file_handles = positive("max-file-handles", v, "a count")?;
            Ok(())
        },
        get: |c| Some(c.max_file_handles.to_string()),
    },
    Key {
        group: GENERAL,
        name: "fsfreeze-timeout",
        aliases: &[],
        default: "600",
        doc: "Seconds after which a freeze the host never thaws is thawed by the agent; \
              0 = never (qga-bc).",
        set: |c, v| {
            c.fsfreeze_timeout = v.parse().map_err(|_| {
                format!("invalid value '{v}' for fsfreeze-timeout (seconds, 0 for never)")
            })?;
            Ok(())
        },
        get: |c| Some(c.fsfreeze_timeout.to_string()),
    },
    Key {
        group: GENERAL,
        name: "fsfreeze-hook-timeout",
        aliases: &[],
        default: "60",
        doc: "Seconds the fsfreeze hook may run before it is killed and the freeze fails \
              (qga-bc).",
        set: |c, v| {
            c.fsfreeze_hook_timeout = positive("fsfreeze-hook-timeout", v, "seconds")?;
            Ok(())
        },
        get: |c| Some(c.fsfreeze_hook_timeout.to_string()),
    },
    Key {
        group: BC,
        name: "disk-status-format",
        aliases: &[],
        default: "map",
        doc: "Shape of guest-get-disk-status: 'map' ({\"/\": {\"total\": MiB, …}}, the BC \
              README's) or 'list' (the old fork's [{\"mount-place\", \"mount-info\"}]).",
        set: |c, v| {
            c.disk_status_format = match v {
                "map" => DiskStatusFormat::Map,
                "list" => DiskStatusFormat::List,
                _ => {
                    return Err(format!(
                        "invalid value '{v}' for disk-status-format (map or list)"
                    ))
                }
            };
            Ok(())
        },
        get: |c| (c.disk_status_format == DiskStatusFormat::List).then(|| "list".to_string()),
    },
];

/// The key `name` (or an alias of it) of `group`.
pub fn find(group: &str, name: &str) -> Option<&'static Key> {
    KEYS.iter()
        .find(|k| k.group == group && (k.name == name || k.aliases.contains(&name)))
}

/// Wraps `text` into `#`-comment lines of at most 88 columns.
fn comment(text: &str) -> String {
    let mut out = String::new();
    for para in text.split('\n') {
        let mut line = String::from("#");
        for word in para.split(' ') {
            if line.len() + 1 + word.len() > 88 && line.len() > 1 {
                out.push_str(&line);
                out.push('\n');
                line = String::from("#");
            }
            line.push(' ');
            line.push_str(word);
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The commands of the read-only preset in the shipped config, those the registry marks
/// `read_only`: they read the guest's state and nothing else, and run no program the
/// host chose (guest-user-check, which does, is left out; so are guest-file-*, which
/// could read any file as root). The statvfs of a network or FUSE mount runs in a
/// child, which changes nothing.
pub fn read_only_rpcs() -> Vec<&'static str> {
    crate::registry::read_only_names()
}

/// The commented example config the packages install (every key, commented out, with its
/// default), as `make` would write it: see `shipped_files_match_the_table`.
pub fn example_config() -> String {
    let mut out = comment(
        "qemu-ga configuration (qga-bc). Read from /etc/qemu/qemu-ga.conf (Debian, upstream) \
         or /etc/qemu-ga/qemu-ga.conf (RHEL), whichever exists, or from -c / $QGA_CONF. \
         A GLib key-file: [group], key=value. Every key below is commented out at its \
         default; qemu-ga -D prints the configuration in effect.",
    );
    for group in GROUPS {
        out.push('\n');
        out.push_str(&comment(group.doc));
        out.push_str(&format!("[{}]\n", group.name));
        for key in KEYS.iter().filter(|k| k.group == group.name) {
            out.push_str(&comment(key.doc));
            out.push_str(&format!("#{}={}\n", key.name, key.default));
        }
        if group.name == "general" {
            out.push_str(&read_only_preset());
        }
    }
    out
}

/// The commented read-only preset at the end of [general] in the example config.
pub fn read_only_preset() -> String {
    let mut out = comment(
        "Read-only preset: to let the host read the guest's state but change nothing and \
         run nothing, uncomment these two lines (README.md, \"Security model\").",
    );
    out.push_str(&format!("#allow-rpcs={}\n", read_only_rpcs().join(",")));
    out.push_str("#user-check-adhoc=false\n");
    out
}

fn roff(text: &str) -> String {
    text.replace('\\', "\\e").replace('-', "\\-")
}

/// The CONFIGURATION section of qemu-ga(8), in roff.
pub fn man_section() -> String {
    let mut out = String::from(".SH CONFIGURATION\n");
    out.push_str(&roff(
        "qemu-ga reads /etc/qemu/qemu-ga.conf or, when that does not exist, \
         /etc/qemu-ga/qemu-ga.conf (or the file of -c or $QGA_CONF), a GLib key-file. \
         Command-line options override it. Unknown keys are ignored with a warning.",
    ));
    out.push('\n');
    for group in GROUPS {
        out.push_str(&format!(".SS [{}]\n{}\n", group.name, roff(group.doc)));
        for key in KEYS.iter().filter(|k| k.group == group.name) {
            let default = if key.default.is_empty() {
                String::from("unset")
            } else {
                roff(key.default)
            };
            out.push_str(&format!(
                ".TP\n.B {}\n{} (default: {})\n",
                roff(key.name),
                roff(key.doc),
                default
            ));
        }
    }
    out
}
