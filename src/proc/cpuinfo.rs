//! /proc/cpuinfo: one block of `key : value` lines per logical CPU. Pure parser; the
//! keys differ by architecture, so accessors try each known spelling.

/// The parsed file: per-processor blocks and the lines outside them (ARM's `Hardware`,
/// s390's header).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuInfo {
    pub processors: Vec<Processor>,
    pub other: Vec<(String, String)>,
}

/// One `processor : N` block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Processor {
    pub index: u32,
    pub fields: Vec<(String, String)>,
}

impl Processor {
    /// The value of the first of `keys` present.
    pub fn get(&self, keys: &[&str]) -> Option<&str> {
        keys.iter().find_map(|k| {
            self.fields
                .iter()
                .find(|(name, _)| name == k)
                .map(|(_, v)| v.as_str())
        })
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
        if key == "processor" {
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
    }
}
