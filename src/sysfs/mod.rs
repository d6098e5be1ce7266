//! Readers of /sys below the context's root, shared by the command domains. Each
//! submodule owns one part of the tree.

pub mod block;
