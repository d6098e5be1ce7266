//! qga-bc: a QEMU guest agent, wire-compatible with qemu-ga, with the BC-Linux
//! monitoring commands. The binary `qemu-ga` is a thin `main` over this library.
#![deny(unsafe_code)]

pub mod accounts;
pub mod agent;
pub mod base64;
pub mod channel;
pub mod child;
pub mod cli;
pub mod commands;
pub mod config;
pub mod ctx;
pub mod daemon;
pub mod distro;
pub mod error;
pub mod files;
pub mod job;
pub mod localtime;
pub mod log;
pub mod proc;
pub mod protocol;
pub mod registry;
pub mod rewrite;
pub mod sys;
pub mod sysfs;
pub mod untrusted;
pub mod utmp;
pub mod whole_file;
