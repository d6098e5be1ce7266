//! The wire protocol: framing bytes into requests, validating and dispatching them,
//! and writing replies.

pub mod argpath;
pub mod args;
pub mod dispatch;
pub mod framer;
pub mod reply;
