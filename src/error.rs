//! The one error type of the agent; its `Display` is the qemu-ga `desc`.

use std::fmt;
use std::io;

#[derive(Debug)]
pub enum Error {
    /// Unknown command.
    NotFound(String),
    /// Command blocked by the allow/block lists or by the frozen state; carries the reason.
    Disabled { name: String, reason: &'static str },
    /// Argument error, already in qemu-ga's wording.
    Args(String),
    /// An I/O failure with what was being done ("open /proc/meminfo").
    Io { what: String, source: io::Error },
    /// Anything else, already phrased for the host.
    Failed(String),
}

impl Error {
    /// The qemu-ga error class (QEMU >= 4.2: disabled commands are CommandNotFound too).
    pub fn class(&self) -> &'static str {
        match self {
            Error::NotFound(_) | Error::Disabled { .. } => "CommandNotFound",
            _ => "GenericError",
        }
    }

    pub fn io(what: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotFound(name) => write!(f, "The command {name} has not been found"),
            Error::Disabled { name, reason } => {
                write!(f, "Command {name} has been disabled: {reason}")
            }
            Error::Args(msg) | Error::Failed(msg) => f.write_str(msg),
            Error::Io { what, source } => write!(f, "{what}: {}", strerror(source)),
        }
    }
}

/// The bare strerror text, as qemu-ga prints it (std adds " (os error N)").
pub fn strerror(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

impl std::error::Error for Error {}
