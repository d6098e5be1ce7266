//! /proc/cpuinfo: one block of `key : value` lines per logical CPU. Pure parser; the
//! keys and the layout differ by architecture, so accessors try each known spelling:
//! - x86, arm64, ppc64, mips, and ARM since 3.8: `processor : N` starts each block;
//! - ARM before 3.8 (c_show in arch/arm/kernel/setup.c): the model (`Processor :`)
//!   before the blocks, which hold only BogoMIPS, and `Features`, `CPU implementer` …
//!   after them; a uniprocessor kernel prints no `processor :` line at all;
//! - s390x: a header (`vendor_id`, `# processors : N`, `features`, one
//!   `processor N: version = …` line per CPU), then since 4.7 `cpu number : N` blocks.

/// The parsed file: per-processor blocks and the lines outside them (ARM's `Hardware`,
/// s390's header).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuInfo {
    pub processors: Vec<Processor>,
    pub other: Vec<(String, String)>,
}

/// One `processor : N` (s390: `cpu number : N`) block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Processor {
    pub index: u32,
    pub fields: Vec<(String, String)>,
}

/// The value of the first of `keys` that `fields` has.
fn first_of<'a>(fields: &'a [(String, String)], keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|k| {
        fields
            .iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.as_str())
    })
}

impl Processor {
    /// The value of the first of `keys` present.
    pub fn get(&self, keys: &[&str]) -> Option<&str> {
        first_of(&self.fields, keys)
    }

    /// x86 `model name`; ARM64 has none (its `CPU part` is a number); ppc `cpu`.
    pub fn model_name(&self) -> Option<&str> {
        self.get(&["model name", "Processor", "cpu", "cpu model"])
    }

    pub fn vendor(&self) -> Option<&str> {
        self.get(&["vendor_id", "CPU implementer"])
    }

    /// As printed ("2394.454"); x86 only.
    pub fn mhz(&self) -> Option<&str> {
        self.get(&["cpu MHz"])
    }

    /// As printed ("16384 KB"); x86 only.
    pub fn cache_size(&self) -> Option<&str> {
        self.get(&["cache size"])
    }

    /// x86 `flags`, ARM `Features`.
    pub fn flags(&self) -> Vec<&str> {
        self.get(&["flags", "Features"])
            .map(|f| f.split_whitespace().collect())
            .unwrap_or_default()
    }

    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags().contains(&flag)
    }

    pub fn physical_id(&self) -> Option<u32> {
        self.get(&["physical id"])?.parse().ok()
    }

    pub fn core_id(&self) -> Option<u32> {
        self.get(&["core id"])?.parse().ok()
    }
}

impl CpuInfo {
    /// The value of the first of `keys` among the lines outside the blocks.
    pub fn global(&self, keys: &[&str]) -> Option<&str> {
        first_of(&self.other, keys)
    }

    fn first_or_global<'a>(
        &'a self,
        own: impl Fn(&'a Processor) -> Option<&'a str>,
        keys: &[&str],
    ) -> Option<&'a str> {
        self.processors
            .first()
            .and_then(own)
            .or_else(|| self.global(keys))
    }

    /// The first CPU's model, else old ARM's `Processor :` header line.
    pub fn model_name(&self) -> Option<&str> {
        self.first_or_global(Processor::model_name, &["Processor", "model name", "cpu"])
    }

    /// x86 `vendor_id`, ARM `CPU implementer`, s390's header `vendor_id`.
    pub fn vendor(&self) -> Option<&str> {
        self.first_or_global(Processor::vendor, &["vendor_id", "CPU implementer"])
    }

    /// The first CPU's flags, else the ones printed once for all (old ARM's
    /// `Features` after the blocks, s390's `features` in the header).
    pub fn flags(&self) -> Vec<&str> {
        let own = self
            .processors
            .first()
            .map(Processor::flags)
            .unwrap_or_default();
        if !own.is_empty() {
            return own;
        }
        self.global(&["flags", "Features", "features"])
            .map(|f| f.split_whitespace().collect())
            .unwrap_or_default()
    }

    /// How many CPUs the header says there are when there are no blocks: s390's
    /// `# processors`, else its `processor N: …` lines.
    pub fn declared_count(&self) -> Option<usize> {
        if let Some(n) = self.global(&["# processors"]).and_then(|v| v.parse().ok()) {
            return Some(n);
        }
        let lines = self
            .other
            .iter()
            .filter(|(k, _)| {
                k.strip_prefix("processor ")
                    .is_some_and(|n| n.parse::<u32>().is_ok())
            })
            .count();
        (lines > 0).then_some(lines)
    }
}

pub fn parse_cpuinfo(text: &str) -> CpuInfo {
    let mut info = CpuInfo::default();
    let mut current: Option<Processor> = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            if line.trim().is_empty() {
                info.processors.extend(current.take());
            }
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        if key == "processor" || key == "cpu number" {
            info.processors.extend(current.take());
            if let Ok(index) = value.parse() {
                current = Some(Processor {
                    index,
                    fields: Vec::new(),
                });
                continue;
            }
        }
        let pair = (key.to_string(), value.to_string());
        match current.as_mut() {
            Some(p) => p.fields.push(pair),
            None => info.other.push(pair),
        }
    }
    info.processors.extend(current);
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x86_blocks() {
        let text = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel Xeon\n\
                    cpu MHz\t\t: 2394.454\ncache size\t: 16384 KB\nphysical id\t: 0\ncore id\t\t: 1\n\
                    flags\t\t: fpu vme hypervisor\n\nprocessor\t: 1\nmodel name\t: Intel Xeon\n\n";
        let c = parse_cpuinfo(text);
        assert_eq!(c.processors.len(), 2);
        let p = &c.processors[0];
        assert_eq!(p.model_name(), Some("Intel Xeon"));
        assert_eq!(p.mhz(), Some("2394.454"));
        assert_eq!(p.cache_size(), Some("16384 KB"));
        assert_eq!((p.physical_id(), p.core_id()), (Some(0), Some(1)));
        assert!(p.has_flag("hypervisor"));
        assert!(!c.processors[1].has_flag("hypervisor"));
        assert_eq!(c.processors[1].index, 1);
    }

    #[test]
    fn s390_header_and_cpu_number_blocks() {
        let text = "vendor_id       : IBM/S390\n# processors    : 2\nfeatures\t: esan3 zarch\n\
                    processor 0: version = FF,  identification = 1633E8,  machine = 2964\n\
                    processor 1: version = FF,  identification = 1633E8,  machine = 2964\n\n\
                    cpu number      : 0\ncpu MHz dynamic : 5000\n\ncpu number      : 1\n";
        let c = parse_cpuinfo(text);
        assert_eq!(c.processors.len(), 2);
        assert_eq!(c.processors[1].index, 1);
        assert_eq!(c.vendor(), Some("IBM/S390"));
        assert_eq!(c.flags(), ["esan3", "zarch"]);
        assert_eq!(c.declared_count(), Some(2));
        // Before 4.7 there are no blocks; the `processor N:` lines still count.
        let old = parse_cpuinfo(&text.replace("# processors    : 2\n", ""));
        assert_eq!(old.declared_count(), Some(2));
    }

    #[test]
    fn arm_header_and_trailer_lines_are_kept_apart() {
        let text = "Processor\t: ARMv7 Processor rev 4 (v7l)\nprocessor\t: 0\nBogoMIPS\t: 38.40\n\n\
                    processor\t: 1\nBogoMIPS\t: 38.40\n\nFeatures\t: half thumb\nHardware\t: BCM2835\n";
        let c = parse_cpuinfo(text);
        assert_eq!(c.processors.len(), 2);
        assert_eq!(c.processors[1].get(&["BogoMIPS"]), Some("38.40"));
        assert!(c
            .other
            .iter()
            .any(|(k, v)| k == "Hardware" && v == "BCM2835"));
        assert_eq!(c.model_name(), Some("ARMv7 Processor rev 4 (v7l)"));
        assert_eq!(c.flags(), ["half", "thumb"]);
    }
}
