//! What handlers receive: the environment ([`Ctx`]: the root they read the system
//! through, so tests can point it at a fixture tree, the configuration and the
//! allow/block filter), read-only; and the loop's session state ([`Session`]), handed
//! only to the handlers that change it.

use std::path::{Path, PathBuf};

use crate::child::Children;
use crate::commands::bc_oom::KernelLogCache;
use crate::commands::exec::Execs;
use crate::config::Config;
use crate::error::Error;
use crate::files::FileHandles;
use crate::proc::CpuSampler;
use crate::registry::Filter;
use crate::whole_file;

pub struct Ctx {
    /// "/" on a real guest; a fixture tree in tests.
    pub root: PathBuf,
    pub config: Config,
    pub filter: Filter,
}

/// State that outlives a request and belongs to the loop, not to the environment.
#[derive(Default)]
pub struct Session {
    /// Every program the agent runs; the loop polls their pipes and reaps them.
    pub children: Children,
    /// guest-exec children, running or exited, by pid.
    pub execs: Execs,
    /// Set by guest-fsfreeze-freeze; only commands marked `while_frozen` run.
    pub frozen: bool,
    /// When the loop thaws a freeze nobody thawed (`fsfreeze-timeout`); each freeze
    /// sets its own, each thaw clears it, so an old freeze's timer never ends a new one.
    pub freeze_deadline: Option<std::time::Instant>,
    /// One-shot: the next reply is preceded by 0xFF (guest-sync-delimited).
    pub delimit_next_reply: bool,
    /// The previous CPU sample, so %CPU covers the interval between requests.
    pub cpu_sampler: CpuSampler,
    /// guest-get-cpu-utilization's own previous /proc/stat sample, so its interval is
    /// between its own calls whatever else samples the CPU.
    pub cpu_utilization_sampler: CpuSampler,
    /// The files guest-file-open opened, by handle; they outlive a client's connection.
    pub files: FileHandles,
    /// guest-get-oom-status's last reading of the kernel log, reused while it is unchanged.
    pub kernel_log: KernelLogCache,
}

impl Ctx {
    pub fn new(root: impl Into<PathBuf>, config: Config) -> Ctx {
        let filter = Filter::new(&config.allow_rpcs, &config.block_rpcs);
        Ctx {
            root: root.into(),
            config,
            filter,
        }
    }

    /// A context reading the system below `root`, with the default configuration.
    pub fn with_root(root: impl Into<PathBuf>) -> Ctx {
        Ctx::new(root, Config::default())
    }

    /// True when handlers see the running system (root "/"), not a fixture tree. Steps
    /// that act on the kernel rather than on files (sethostname, klogctl) run only then;
    /// under another root they use files there instead, so tests never touch the machine.
    pub fn is_live(&self) -> bool {
        self.root == Path::new("/")
    }

    /// `rel` ("proc/meminfo") below the root.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel.trim_start_matches('/'))
    }

    /// Reads a text file below the root; the error names the file.
    pub fn read(&self, rel: &str) -> Result<String, Error> {
        let path = self.path(rel);
        read_text(&path)
    }

    pub fn statedir(&self) -> &Path {
        &self.config.statedir
    }
}

fn read_text(path: &Path) -> Result<String, Error> {
    let mut bytes = Vec::new();
    whole_file::read_into(path, &mut bytes)
        .map_err(|e| Error::io(format!("failed to read '{}'", path.display()), e))?;
    Ok(whole_file::lossy_text(bytes))
}
