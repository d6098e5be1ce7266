//! Parsers of procfs files, shared by the command domains. Pure functions over text;
//! the handlers read the files through `Ctx`.

pub mod cpuinfo;
pub mod diskstats;
pub mod tcp;
