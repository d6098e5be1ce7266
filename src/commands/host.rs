//! The guest's identity: guest-get-host-name (the kernel's node name, as gethostname(2)
//! gives it; not resolved through DNS).

use serde::Serialize;

use super::NoArgs;
use crate::ctx::Ctx;
use crate::error::Error;
use crate::sys::uname;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct HostName {
    pub host_name: String,
}

pub fn get_host_name(_: &Ctx, _: NoArgs) -> Result<HostName, Error> {
    let uts = uname::uname().map_err(|e| Error::io("uname failed", e))?;
    Ok(HostName {
        host_name: uts.nodename,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_name_is_the_node_name() {
        let h = get_host_name(&Ctx::with_root("/"), NoArgs {}).unwrap();
        let kernel = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(h.host_name, kernel.trim_end());
    }
}
