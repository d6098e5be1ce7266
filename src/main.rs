//! qemu-ga: parse the command line, set up the process, run the loop; nothing else.

use std::path::PathBuf;

use qga::agent::Agent;
use qga::cli::{self, Action};
use qga::commands::fsfreeze;
use qga::config::{Config, DEFAULT_PIDFILE};
use qga::ctx::Ctx;
use qga::daemon::{self, PidFile};
use qga::{log, sys};

#[global_allocator]
static ALLOC: sys::alloc::Global = sys::alloc::Global;

fn main() {
    let code = match cli::parse(std::env::args_os().skip(1)) {
        Ok(Action::Print(text)) => {
            print!("{text}");
            0
        }
        Ok(Action::Run {
            config,
            sysroot,
            source,
            warnings,
        }) => match serve(*config, sysroot, &source, &warnings) {
            Ok(()) => 0,
            Err(msg) => {
                log::error(&msg);
                1
            }
        },
        Err(msg) => {
            eprintln!("qemu-ga: {msg}");
            1
        }
    };
    std::process::exit(code);
}

fn serve(
    mut config: Config,
    sysroot: PathBuf,
    source: &str,
    warnings: &[String],
) -> Result<(), String> {
    // No core file: one could hold a password on its way to chpasswd.
    sys::process::set_not_dumpable().map_err(|e| format!("cannot disable core dumps: {e}"))?;
    if let Ok(cwd) = std::env::current_dir() {
        config.anchor_paths(&cwd);
    }
    // A panicking handler is answered with an error reply; log where, never what.
    std::panic::set_hook(Box::new(|info| {
        let at = info.location().map(|l| l.to_string()).unwrap_or_default();
        log::error(&format!("internal error at {at}"));
    }));
    let readiness = if config.daemon {
        Some(daemon::daemonize().map_err(|e| format!("cannot daemonize: {e}"))?)
    } else {
        None
    };
    if let Some(path) = &config.logfile {
        if fsfreeze::is_marked_frozen(&config.statedir) {
            // Opening a file for writing on a frozen filesystem blocks: after the thaw.
            log::hold();
            log::open_at_release(path, config.verbose);
        } else {
            log::open(path, config.verbose)
                .map_err(|e| format!("cannot open logfile '{}': {e}", path.display()))?;
        }
    }
    log::set_verbose(config.verbose);
    log::info(&format!("configuration: {source}"));
    for w in warnings {
        log::warn(w);
    }
    if !config.statedir.is_dir() {
        // qemu-ga refuses to start; this agent serves everything that needs no state.
        log::warn(&format!(
            "statedir '{}' is not a directory: guest-file-open cannot keep its handle \
             counter and fails, the OOM record is not kept",
            config.statedir.display()
        ));
    }
    let pidfile = match (&config.pidfile, config.daemon) {
        (Some(p), _) => Some(PidFile::create(p)?),
        (None, true) => Some(PidFile::create(std::path::Path::new(DEFAULT_PIDFILE))?),
        (None, false) => None,
    };
    sys::signal::install().map_err(|e| format!("cannot install signal handlers: {e}"))?;

    let method = config.method;
    let path = config.channel_path().unwrap_or_default();
    let ctx = Ctx::new(sysroot, config);
    for name in ctx.filter.unknown_names() {
        log::warn(&format!("allow/block list names unknown command '{name}'"));
    }
    let mut agent = Agent::new(ctx, method, path.clone())
        .map_err(|e| format!("failed to open channel {method} '{path}': {e}"))?;
    if let Some(r) = readiness {
        r.done().map_err(|e| format!("cannot detach: {e}"))?;
    }
    log::info(&format!("serving on {method} '{}'", agent.channel_path()));
    let result = agent
        .run()
        .map_err(|e| format!("channel {method} '{path}' failed: {e}"));
    drop(agent);
    drop(pidfile);
    result
}
