//! Command-line parsing (lexopt), compatible with qemu-ga's options, merged over the
//! configuration file: the file is read first, then each option sets the same key.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::config::{Config, CONFIG_FILES};
use crate::registry::COMMANDS;

/// What `main` should do.
pub enum Action {
    Run {
        config: Box<Config>,
        sysroot: PathBuf,
        /// Which config file was read, for the log.
        source: String,
        /// Unknown keys and the like, for the log once it is open.
        warnings: Vec<String>,
    },
    /// Print this to stdout and exit 0 (help, version, -D, -b help).
    Print(String),
}

pub const USAGE: &str = "\
Usage: qemu-ga [-m <method> -p <path>] [<options>]
QEMU Guest Agent (qga-bc)

  -m, --method      transport method: one of unix-listen, virtio-serial,
                    isa-serial, or vsock-listen (virtio-serial is the default)
  -p, --path        device/socket path (the default for virtio-serial is:
                    /dev/virtio-ports/org.qemu.guest_agent.0,
                    the default for isa-serial is: /dev/ttyS0).
                    Socket addresses for vsock-listen are written as <cid>:<port>.
  -l, --logfile     set logfile path, logs to stderr by default
  -f, --pidfile     specify pidfile (default is /var/run/qemu-ga.pid when
                    daemonized)
  -F, --fsfreeze-hook
                    enable fsfreeze hook. Accepts an optional argument that
                    specifies script to run on freeze/thaw (default is
                    /etc/qemu/fsfreeze-hook). Do not follow -F with a space:
                    -F/var/run/fsfreezehook.sh
  -t, --statedir    specify dir to store state information (absolute paths
                    only, default is /var/run)
  -v, --verbose     log extra debugging information
  -V, --version     print version information and exit
  -d, --daemonize   become a daemon
  -b, --block-rpcs  comma-separated list of RPCs to disable (no spaces,
                    use \"help\" to list available RPCs); --blacklist is an alias
  -a, --allow-rpcs  comma-separated list of RPCs to enable (no spaces,
                    use \"help\" to list available RPCs)
  -D, --dump-conf   dump a qemu-ga config file based on current config
                    options / command-line parameters to stdout
  -r, --retry-path  attempt re-opening path if it's unavailable or closed
                    due to an error which may be recoverable in the future
  -c, --config      configuration file (default /etc/qemu/qemu-ga.conf, or
                    /etc/qemu-ga/qemu-ga.conf when only that one exists)
  -h, --help        display this help and exit
";

/// Parses `args` (without the program name). Errors are one line naming the culprit.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Action, String> {
    use lexopt::prelude::*;

    let mut parser = lexopt::Parser::from_args(args);
    let mut settings: Vec<(&'static str, String)> = Vec::new();
    let mut config_path: Option<PathBuf> = None;
    let mut dump = false;
    let mut sysroot = PathBuf::from("/");

    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        let key = match arg {
            Short('h') | Long("help") => return Ok(Action::Print(USAGE.to_string())),
            Short('V') | Long("version") => {
                return Ok(Action::Print(crate::commands::session::version_line()))
            }
            Short('D') | Long("dump-conf") => {
                dump = true;
                continue;
            }
            Short('c') | Long("config") => {
                config_path = Some(PathBuf::from(parser.value().map_err(|e| e.to_string())?));
                continue;
            }
            // Not a qemu-ga option: lets tests point the handlers at a fixture tree.
            Long("sysroot") => {
                sysroot = PathBuf::from(parser.value().map_err(|e| e.to_string())?);
                continue;
            }
            Short('F') | Long("fsfreeze-hook") => {
                let hook = parser.optional_value().unwrap_or_default();
                settings.push(("fsfreeze-hook", text(hook, "fsfreeze-hook")?));
                continue;
            }
            Short('d') | Long("daemonize") => {
                settings.push(("daemon", "true".into()));
                continue;
            }
            Short('v') | Long("verbose") => {
                settings.push(("verbose", "true".into()));
                continue;
            }
            Short('r') | Long("retry-path") => {
                settings.push(("retry-path", "true".into()));
                continue;
            }
            Short('m') | Long("method") => "method",
            Short('p') | Long("path") => "path",
            Short('l') | Long("logfile") => "logfile",
            Short('f') | Long("pidfile") => "pidfile",
            Short('t') | Long("statedir") => "statedir",
            Short('b') | Long("block-rpcs") | Long("blacklist") => "block-rpcs",
            Short('a') | Long("allow-rpcs") => "allow-rpcs",
            other => return Err(other.unexpected().to_string()),
        };
        let value = text(parser.value().map_err(|e| e.to_string())?, key)?;
        if matches!(key, "block-rpcs" | "allow-rpcs") && (value == "help" || value == "?") {
            let names: String = COMMANDS.iter().map(|c| format!("{}\n", c.name)).collect();
            return Ok(Action::Print(names));
        }
        settings.push((key, value));
    }

    let mut config = Config::default();
    let (source, warnings) = load_config_file(&mut config, config_path)?;
    for (key, value) in settings {
        config
            .set(key, &value)
            .map_err(|e| format!("option --{key}: {e}"))?;
    }
    check(&config)?;
    if dump {
        for w in &warnings {
            eprintln!("qemu-ga: warning: {w}");
        }
        return Ok(Action::Print(format!("# {source}\n{}", config.dump())));
    }
    Ok(Action::Run {
        config: Box::new(config),
        sysroot,
        source,
        warnings,
    })
}

fn text(value: OsString, key: &str) -> Result<String, String> {
    value
        .into_string()
        .map_err(|_| format!("option --{key}: value is not valid UTF-8"))
}

/// The file read when neither `-c` nor `$QGA_CONF` names one: the first of
/// [`CONFIG_FILES`] that exists (and the other, when it exists too and is ignored).
fn default_config_file(exists: impl Fn(&str) -> bool) -> (&'static str, Option<&'static str>) {
    let [upstream, rhel] = CONFIG_FILES;
    match (exists(upstream), exists(rhel)) {
        (false, true) => (rhel, None),
        (true, true) => (upstream, Some(rhel)),
        _ => (upstream, None),
    }
}

/// Reads the config file into `config`; returns which file that was (in words, for `-D`
/// and the log) and the warnings. The default file (or $QGA_CONF) may be missing; an
/// explicit `-c` file may not.
fn load_config_file(
    config: &mut Config,
    explicit: Option<PathBuf>,
) -> Result<(String, Vec<String>), String> {
    let mut warnings = Vec::new();
    let (path, required) = match explicit {
        Some(p) => (p, true),
        None => match std::env::var_os("QGA_CONF") {
            Some(p) => (PathBuf::from(p), false),
            None => {
                let (path, ignored) = default_config_file(|p| std::path::Path::new(p).exists());
                if let Some(other) = ignored {
                    warnings.push(format!("config file '{other}' ignored: '{path}' is read"));
                }
                (PathBuf::from(path), false)
            }
        },
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
            return Ok((
                format!("no config file ('{}' missing)", path.display()),
                warnings,
            ))
        }
        Err(e) => return Err(format!("cannot read config file '{}': {e}", path.display())),
    };
    let found = config
        .load_keyfile(&text)
        .map_err(|e| format!("config file '{}': {e}", path.display()))?;
    warnings.extend(
        found
            .into_iter()
            .map(|w| format!("config file '{}': {w}", path.display())),
    );
    Ok((format!("config file '{}'", path.display()), warnings))
}

fn check(config: &Config) -> Result<(), String> {
    if config.channel_path().is_none() {
        return Err(format!("method {} needs a path (-p)", config.method));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Method;

    fn run(args: &[&str]) -> Result<Config, String> {
        std::env::set_var("QGA_CONF", "/nonexistent/qga-test.conf");
        match parse(args.iter().map(OsString::from))? {
            Action::Run { config, .. } => Ok(*config),
            Action::Print(p) => Err(format!("printed {p}")),
        }
    }

    #[test]
    fn short_and_long_options() {
        let c = run(&[
            "-m",
            "unix-listen",
            "--path=/s",
            "-t",
            "/st",
            "-v",
            "-r",
            "-b",
            "a,b",
            "--blacklist=c",
            "-a",
            "x",
            "-F/hook",
            "-f",
            "/p",
            "-l",
            "/l",
            "-d",
        ])
        .unwrap();
        assert_eq!(c.method, Method::UnixListen);
        assert_eq!(c.path.as_deref(), Some("/s"));
        assert_eq!(c.block_rpcs, ["a", "b", "c"]);
        assert_eq!(c.allow_rpcs, ["x"]);
        assert_eq!(c.fsfreeze_hook, Some(PathBuf::from("/hook")));
        assert!(c.verbose && c.retry_path && c.daemon);
    }

    #[test]
    fn bare_hook_option_uses_the_default() {
        let c = run(&["-F"]).unwrap();
        assert_eq!(
            c.fsfreeze_hook,
            Some(PathBuf::from("/etc/qemu/fsfreeze-hook"))
        );
    }

    #[test]
    fn config_file_is_debians_or_else_rhels() {
        let only = |which: &'static str| move |p: &str| p == which;
        assert_eq!(
            default_config_file(|_| false),
            ("/etc/qemu/qemu-ga.conf", None)
        );
        assert_eq!(
            default_config_file(only("/etc/qemu-ga/qemu-ga.conf")),
            ("/etc/qemu-ga/qemu-ga.conf", None)
        );
        assert_eq!(
            default_config_file(only("/etc/qemu/qemu-ga.conf")),
            ("/etc/qemu/qemu-ga.conf", None)
        );
        assert_eq!(
            default_config_file(|_| true),
            ("/etc/qemu/qemu-ga.conf", Some("/etc/qemu-ga/qemu-ga.conf"))
        );
    }

    #[test]
    fn errors_name_the_option() {
        assert!(run(&["-x"]).unwrap_err().contains("-x"));
        assert!(run(&["-m", "tcp"]).unwrap_err().contains("tcp"));
        assert!(run(&["-m", "unix-listen"]).unwrap_err().contains("path"));
        assert!(run(&["-c", "/nonexistent/x.conf"])
            .unwrap_err()
            .contains("/nonexistent/x.conf"));
    }
}
