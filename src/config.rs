//! The agent's configuration: defaults, the qemu-ga key-file (`[general]` group) and the
//! command line all set the same keys through the one table of [`keys::KEYS`], and
//! [`Config::dump`] writes them back in the same format, so a dump read back gives the
//! same configuration. Which file is read: [`default_config_file`].

pub mod keys;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Debian's and upstream's qemu-ga read the first, RHEL's the second.
pub const CONFIG_FILES: [&str; 2] = ["/etc/qemu/qemu-ga.conf", "/etc/qemu-ga/qemu-ga.conf"];
pub const DEFAULT_PIDFILE: &str = "/var/run/qemu-ga.pid";
pub const DEFAULT_STATEDIR: &str = "/var/run";
pub const DEFAULT_FSFREEZE_HOOK: &str = "/etc/qemu/fsfreeze-hook";
/// qemu-ga has no limit but the fd table; 1024 open files is far beyond any host's use.
pub const DEFAULT_MAX_FILE_HANDLES: usize = 1024;
/// Ten minutes, as Proxmox waits for a freeze.
pub const DEFAULT_FSFREEZE_TIMEOUT: u64 = 600;
/// qemu-ga waits for the hook without a limit; a minute is far beyond a database flush.
pub const DEFAULT_FSFREEZE_HOOK_TIMEOUT: u64 = 60;
pub const VIRTIO_PORT_NAME: &str = "org.qemu.guest_agent.0";
/// VMADDR_CID_HOST: the hypervisor side of vsock.
pub const VSOCK_HOST_CID: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    VirtioSerial,
    IsaSerial,
    UnixListen,
    VsockListen,
}

impl Method {
    const ALL: [(Method, &'static str); 4] = [
        (Method::VirtioSerial, "virtio-serial"),
        (Method::IsaSerial, "isa-serial"),
        (Method::UnixListen, "unix-listen"),
        (Method::VsockListen, "vsock-listen"),
    ];

    /// The device used when `path` is not given; the listeners have none.
    pub fn default_path(self) -> Option<&'static str> {
        match self {
            Method::VirtioSerial => Some("/dev/virtio-ports/org.qemu.guest_agent.0"),
            Method::IsaSerial => Some("/dev/ttyS0"),
            Method::UnixListen | Method::VsockListen => None,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = Method::ALL.iter().find(|(m, _)| m == self).map(|(_, n)| *n);
        f.write_str(name.unwrap_or("?"))
    }
}

impl FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Method::ALL
            .iter()
            .find(|(_, n)| *n == s)
            .map(|(m, _)| *m)
            .ok_or_else(|| {
                format!("invalid method '{s}' (one of virtio-serial, isa-serial, unix-listen, vsock-listen)")
            })
    }
}

/// The wire shape of guest-get-disk-status (`[bc] disk-status-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DiskStatusFormat {
    /// `{"/": {"total": MiB, "used": MiB, "writable": bool}}`, the BC README's shape.
    #[default]
    Map,
    /// The old fork's `[{"mount-place", "mount-info": {"total": "20G", …}}]`.
    List,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub daemon: bool,
    pub method: Method,
    pub path: Option<String>,
    pub logfile: Option<PathBuf>,
    /// Set explicitly (file or `-f`); the default is used only when daemonizing.
    pub pidfile: Option<PathBuf>,
    pub fsfreeze_hook: Option<PathBuf>,
    pub statedir: PathBuf,
    pub verbose: bool,
    pub retry_path: bool,
    pub block_rpcs: Vec<String>,
    pub allow_rpcs: Vec<String>,
    /// Seconds a user check may run (BC `guest-user-check`).
    pub user_check_timeout: u64,
    /// Whether `guest-user-check` may run a command the host sends.
    pub user_check_adhoc: bool,
    /// The `[user-checks]` group: check name -> shell command.
    pub user_checks: BTreeMap<String, String>,
    /// `[bc] disk-status-format`.
    pub disk_status_format: DiskStatusFormat,
    /// vsock-listen accepts peers with these CIDs only (default: the host, CID 2).
    pub vsock_allow_cids: Vec<u32>,
    /// At most this many guest-file-open handles at once (`max-file-handles`).
    pub max_file_handles: usize,
    /// Seconds after which a freeze the host never thawed is thawed (`fsfreeze-timeout`;
    /// 0: never).
    pub fsfreeze_timeout: u64,
    /// Seconds the fsfreeze hook may run before it is killed (`fsfreeze-hook-timeout`).
    pub fsfreeze_hook_timeout: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            daemon: false,
            method: Method::VirtioSerial,
            path: None,
            logfile: None,
            pidfile: None,
            fsfreeze_hook: None,
            statedir: PathBuf::from(DEFAULT_STATEDIR),
            verbose: false,
            retry_path: false,
            block_rpcs: Vec::new(),
            allow_rpcs: Vec::new(),
            user_check_timeout: 10,
            user_check_adhoc: true,
            user_checks: BTreeMap::new(),
            disk_status_format: DiskStatusFormat::Map,
            vsock_allow_cids: vec![VSOCK_HOST_CID],
            max_file_handles: DEFAULT_MAX_FILE_HANDLES,
            fsfreeze_timeout: DEFAULT_FSFREEZE_TIMEOUT,
            fsfreeze_hook_timeout: DEFAULT_FSFREEZE_HOOK_TIMEOUT,
        }
    }
}

/// The group every qemu-ga key lives in.
pub const GENERAL: &str = "general";
/// The BC group of named checks.
pub const USER_CHECKS: &str = "user-checks";
/// The group of BC-Linux monitoring settings.
pub const BC: &str = "bc";

impl Config {
    /// Sets one `[general]` key from its text form (the command line's way in).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let k = keys::find(GENERAL, key)
            .ok_or_else(|| format!("unknown key '{key}' in group [{GENERAL}]"))?;
        (k.set)(self, value)
    }

    /// Applies a key-file. A bad value is an error; a key this agent does not know is
    /// not: qemu-ga ignores it (a config written for a newer qemu-ga must not stop the
    /// agent), so it comes back as a warning. Groups other than ours are ignored, as
    /// GLib-based qemu-ga ignores them.
    pub fn load_keyfile(&mut self, text: &str) -> Result<Vec<String>, String> {
        let mut warnings = Vec::new();
        let mut group = String::new();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                group = name.to_string();
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| format!("line {}: expected 'key=value'", n + 1))?;
            let (key, value) = (key.trim(), unescape(value.trim()));
            match group.as_str() {
                USER_CHECKS => {
                    self.user_checks.insert(key.to_string(), value);
                }
                "" => return Err(format!("line {}: key outside of a [group]", n + 1)),
                GENERAL | BC => match keys::find(&group, key) {
                    Some(k) => (k.set)(self, &value).map_err(|e| format!("line {}: {e}", n + 1))?,
                    None => warnings.push(format!(
                        "line {}: unknown key '{key}' in group [{group}] ignored",
                        n + 1
                    )),
                },
                _ => {}
            }
        }
        Ok(warnings)
    }

    /// The configuration as a key-file (`-D`): every key of the table that has a value.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for group in keys::GROUPS.iter().filter(|g| g.name != USER_CHECKS) {
            let lines: String = keys::KEYS
                .iter()
                .filter(|k| k.group == group.name)
                .filter_map(|k| (k.get)(self).map(|v| format!("{}={}\n", k.name, escape(&v))))
                .collect();
            if !lines.is_empty() {
                let sep = if out.is_empty() { "" } else { "\n" };
                out.push_str(&format!("{sep}[{}]\n{lines}", group.name));
            }
        }
        if !self.user_checks.is_empty() {
            out.push_str(&format!("\n[{USER_CHECKS}]\n"));
            for (k, v) in &self.user_checks {
                out.push_str(&format!("{k}={}\n", escape(v)));
            }
        }
        out
    }

    /// Makes relative file paths absolute against `cwd`: a daemon changes to "/" before
    /// it opens them. vsock addresses are not paths and stay as they are.
    pub fn anchor_paths(&mut self, cwd: &std::path::Path) {
        let anchor = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = cwd.join(&*p);
            }
        };
        for p in [
            &mut self.logfile,
            &mut self.pidfile,
            &mut self.fsfreeze_hook,
        ]
        .into_iter()
        .flatten()
        {
            anchor(p);
        }
        if self.method != Method::VsockListen {
            if let Some(path) = &mut self.path {
                if !path.starts_with('/') {
                    *path = cwd.join(&*path).to_string_lossy().into_owned();
                }
            }
        }
    }

    /// The channel path after defaults.
    pub fn channel_path(&self) -> Option<String> {
        self.path
            .clone()
            .or_else(|| self.method.default_path().map(str::to_string))
    }
}

fn parse_bool(key: &str, value: &str) -> Result<bool, String> {
    match value {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format!("invalid value '{value}' for {key} (true or false)")),
    }
}

/// qemu-ga splits RPC lists on ','; GLib key-file lists use ';'. Both are accepted.
fn parse_list(value: &str) -> impl Iterator<Item = String> + '_ {
    value
        .split([',', ';'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// GLib key-file escapes: \s \n \t \r \\.
fn unescape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('s') => out.push(' '),
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for (i, c) in v.chars().enumerate() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            // Leading blanks would be trimmed on reading.
            ' ' if i == 0 => out.push_str("\\s"),
            _ => out.push(c),
        }
    }
    if out.ends_with(' ') {
        out.pop();
        out.push_str("\\s");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyfile_sets_every_key_and_dump_round_trips() {
        let text = "# comment\n[general]\ndaemon=1\nmethod=unix-listen\npath=/tmp/s\n\
                    logfile=/tmp/l\npidfile=/tmp/p\nfsfreeze-hook=/h\nstatedir=/st\n\
                    verbose=true\nretry-path=true\nblacklist=a;b\nblock-rpcs=c\nallow-rpcs=x,y\n\
                    user-check-timeout=3\nuser-check-adhoc=false\nvsock-allow-cids=2;3\n\
                    max-file-handles=7\nfsfreeze-timeout=2\n\
                    [bc]\ndisk-status-format=list\n\
                    [user-checks]\ncheck-fs=mount | grep ' / '\n[other]\nz=1\n";
        let mut c = Config::default();
        c.load_keyfile(text).unwrap();
        assert!(c.daemon && c.verbose && c.retry_path && !c.user_check_adhoc);
        assert_eq!(c.method, Method::UnixListen);
        assert_eq!(c.block_rpcs, ["a", "b", "c"]);
        assert_eq!(c.allow_rpcs, ["x", "y"]);
        assert_eq!(c.vsock_allow_cids, [2, 3]);
        assert_eq!(c.user_checks["check-fs"], "mount | grep ' / '");
        assert_eq!(c.disk_status_format, DiskStatusFormat::List);
        assert_eq!(c.max_file_handles, 7);
        assert_eq!(c.fsfreeze_timeout, 2);
        let mut again = Config::default();
        again.load_keyfile(&c.dump()).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn unknown_keys_are_warnings_bad_values_errors() {
        let mut c = Config::default();
        let text = "[general]\nverbose=1\nfrom-a-newer-qemu-ga=x\n[bc]\nlater=1\n[other]\nz=1\n";
        let warnings = c.load_keyfile(text).unwrap();
        assert!(c.verbose);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("line 3") && warnings[0].contains("from-a-newer-qemu-ga"));
        assert!(warnings[1].contains("[bc]"));
        assert!(c
            .load_keyfile("[general]\nverbose=yes\n")
            .unwrap_err()
            .contains("line 2"));
    }

    #[test]
    fn lists_are_dumped_with_commas_and_read_with_either() {
        let mut c = Config::default();
        c.load_keyfile("[general]\nblock-rpcs=a;b;\nallow-rpcs=x,y\n")
            .unwrap();
        assert_eq!(c.block_rpcs, ["a", "b"]);
        let dump = c.dump();
        assert!(dump.contains("\nblock-rpcs=a,b\n"), "{dump}");
        assert!(dump.contains("\nallow-rpcs=x,y\n"), "{dump}");
    }

    #[test]
    fn every_key_has_a_unique_name_a_doc_and_a_default_that_parses() {
        let mut seen = std::collections::BTreeSet::new();
        for k in keys::KEYS {
            for name in std::iter::once(&k.name).chain(k.aliases) {
                assert!(seen.insert((k.group, *name)), "{name} twice");
            }
            assert!(!k.doc.is_empty(), "{}", k.name);
            if !k.default.is_empty() {
                let mut c = Config::default();
                (k.set)(&mut c, k.default).unwrap();
            }
            assert!(keys::GROUPS.iter().any(|g| g.name == k.group));
        }
    }

    /// The example config and the man page the packages ship are generated from the table;
    /// `QGA_BLESS=1 cargo test shipped_files` rewrites them after a change to it.
    #[test]
    fn shipped_files_match_the_table() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let conf = root.join("rpm/qemu-ga.conf");
        let man = root.join("rpm/qemu-ga.8");
        let man_text = std::fs::read_to_string(&man).unwrap();
        let (begin, end) = (".\\\" BEGIN CONFIGURATION\n", ".\\\" END CONFIGURATION\n");
        let head =
            &man_text[..man_text.find(begin).expect("man page has the BEGIN mark") + begin.len()];
        let tail = &man_text[man_text.find(end).expect("man page has the END mark")..];
        let want_man = format!("{head}{}{tail}", keys::man_section());
        let want_conf = keys::example_config();
        if std::env::var_os("QGA_BLESS").is_some() {
            std::fs::write(&conf, &want_conf).unwrap();
            std::fs::write(&man, &want_man).unwrap();
        }
        assert_eq!(
            std::fs::read_to_string(&conf).unwrap(),
            want_conf,
            "rerun with QGA_BLESS=1"
        );
        assert_eq!(man_text, want_man, "rerun with QGA_BLESS=1");
    }

    /// The shipped read-only preset, uncommented, enables registered commands that only
    /// read, and no ad-hoc user checks (README.md, "Security model").
    #[test]
    fn read_only_preset_enables_only_commands_that_read() {
        let preset = keys::read_only_preset();
        let text = preset.replace("\n#allow-rpcs=", "\nallow-rpcs=");
        let text = text.replace("\n#user-check-adhoc=", "\nuser-check-adhoc=");
        let mut c = Config::default();
        assert_eq!(
            c.load_keyfile(&format!("[general]\n{text}")).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(c.allow_rpcs, keys::read_only_rpcs());
        assert!(!c.user_check_adhoc);
        let general = keys::example_config();
        let general = &general[general.find("[general]").unwrap()..general.find("[bc]").unwrap()];
        assert!(general.contains(&preset), "the preset sits in [general]");
        let changers = [
            "exec\"",
            "-set-",
            "set-",
            "file-",
            "shutdown",
            "suspend",
            "freeze\"",
            "freeze-list",
            "thaw",
            "fstrim",
            "change-",
            "user-check",
            "ssh-add",
            "ssh-remove",
            "password",
        ];
        for name in keys::read_only_rpcs() {
            assert!(
                crate::registry::find(name).is_some(),
                "{name} is not registered"
            );
            let quoted = format!("{name}\"");
            for bad in changers {
                assert!(!quoted.contains(bad), "{name} changes the machine");
            }
        }
    }

    #[test]
    fn blanks_at_the_ends_survive_a_dump() {
        let mut c = Config::default();
        c.user_checks.insert("x".into(), " a b ".into());
        let mut again = Config::default();
        again.load_keyfile(&c.dump()).unwrap();
        assert_eq!(again.user_checks["x"], " a b ");
    }

    #[test]
    fn relative_paths_are_anchored_but_vsock_addresses_are_not() {
        let mut c = Config::default();
        c.set("method", "unix-listen").unwrap();
        c.set("path", "run/qga.sock").unwrap();
        c.set("logfile", "qga.log").unwrap();
        c.set("pidfile", "/abs/qga.pid").unwrap();
        c.anchor_paths(std::path::Path::new("/home/u"));
        assert_eq!(c.path.as_deref(), Some("/home/u/run/qga.sock"));
        assert_eq!(c.logfile, Some(PathBuf::from("/home/u/qga.log")));
        assert_eq!(c.pidfile, Some(PathBuf::from("/abs/qga.pid")));
        let mut v = Config::default();
        v.set("method", "vsock-listen").unwrap();
        v.set("path", "3:1234").unwrap();
        v.anchor_paths(std::path::Path::new("/home/u"));
        assert_eq!(v.path.as_deref(), Some("3:1234"));
    }

    #[test]
    fn bad_values_name_the_key() {
        let mut c = Config::default();
        assert!(c.set("daemon", "yes").unwrap_err().contains("daemon"));
        assert!(c.set("method", "tcp").unwrap_err().contains("tcp"));
        assert!(c.set("statedir", "rel").unwrap_err().contains("absolute"));
        assert!(c
            .set("max-file-handles", "0")
            .unwrap_err()
            .contains("max-file-handles"));
        // An unknown option is the command line's error; in a file it is a warning.
        assert!(c.set("nonsense", "1").unwrap_err().contains("nonsense"));
        assert!(c
            .set("vsock-allow-cids", "2,x")
            .unwrap_err()
            .contains("CIDs"));
        assert!(c.set("vsock-allow-cids", "").is_err());
        assert!(c
            .load_keyfile("[bc]\ndisk-status-format=csv\n")
            .unwrap_err()
            .contains("csv"));
    }
}
