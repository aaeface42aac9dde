//! Which [`Flavour`] a VM type gets: the one place that names them all.

use cvmem_model::VmType;

use crate::args::Config;
use crate::flavour::plain::Plain;
use crate::flavour::Flavour;
use crate::snp::SnpFirmware;
use crate::tdx::TdxModule;

/// The flavour of `config`'s VM type, for `max_vcpus` vCPUs.
pub fn for_config(config: &Config, max_vcpus: u32) -> Box<dyn Flavour> {
    match config.vm_type {
        VmType::Default | VmType::SwProtected => Box::new(Plain),
        VmType::Tdx => Box::new(TdxModule::new(
            max_vcpus,
            config.accept,
            config.map_gpa_chunk,
        )),
        VmType::Snp => Box::new(SnpFirmware::new(
            max_vcpus,
            config.accept,
            config.map_gpa_chunk,
        )),
    }
}
