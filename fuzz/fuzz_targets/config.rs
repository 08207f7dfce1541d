//! The config file: TOML text into `FileConfig` (unknown keys refused),
//! merged into `Settings` as the binary does (no flags, no environment),
//! then what the server derives from them: the engine config and backend
//! URLs, the backup repository, the schedules, the DICOM nodes and the
//! virtual-host domains. Key files are not read.

#![no_main]

use fulcrum::config::{FileConfig, Flags, Settings};
use fulcrum_api::Domains;
use fulcrum_dicom::dimse::Node;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(mut file) = FileConfig::parse(text) else {
        return;
    };
    file.encryption_key_file = None;
    if let Some(b) = file.backup.as_mut() {
        b.key_file = None;
    }
    let Ok(s) = Settings::resolve(file, Flags::default(), &|_| None) else {
        return;
    };
    let _ = s.engine_config();
    let _ = s.backup.target();
    let _ = s.backup.period();
    let _ = s.scrub_period();
    for n in &s.dicom.nodes {
        let _ = n.parse::<Node>();
    }
    let _ = Domains::new(s.s3_domains.clone());
});
