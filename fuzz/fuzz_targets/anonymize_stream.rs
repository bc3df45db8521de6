//! Data sets from a peer through the strict profile's streaming anonymizer, as an
//! ultrasound image in one of the uncompressed transfer syntaxes: any input must end
//! in a copy or an error, never a panic, a hang or unbounded memory.
#![no_main]

use std::sync::{Arc, OnceLock};

use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use libfuzzer_sys::fuzz_target;
use uplink::anonymize::{Anonymizer, DeviceKey, PasswordBook};
use uplink::config::{Profile, StrictValues};
use uplink::pipeline::stream::{self, Output};

const SYNTAXES: [&str; 4] = [
    "1.2.840.10008.1.2.1",    // explicit VR little endian
    "1.2.840.10008.1.2",      // implicit VR little endian
    "1.2.840.10008.1.2.2",    // explicit VR big endian
    "1.2.840.10008.1.2.1.99", // deflated explicit VR little endian
];
const US_IMAGE: &str = "1.2.840.10008.5.1.4.1.1.6.1";

fn anonymizer() -> &'static Anonymizer {
    static ANONYMIZER: OnceLock<(tempfile::TempDir, Anonymizer)> = OnceLock::new();
    &ANONYMIZER
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let key = DeviceKey::load_or_create(dir.path()).unwrap();
            let book = PasswordBook::new(dir.path());
            let anonymizer = Anonymizer::new(
                Arc::new(key),
                StrictValues::default(),
                Default::default(),
                book,
            );
            (dir, anonymizer)
        })
        .1
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, data)) = data.split_first() else {
        return;
    };
    let ts = TransferSyntaxRegistry
        .get(SYNTAXES[usize::from(choice) % SYNTAXES.len()])
        .unwrap();
    let Ok(mut transform) = anonymizer().transform(Profile::Strict, US_IMAGE, ts) else {
        return;
    };
    let outputs = vec![Output {
        writer: std::io::sink(),
        transform: transform.as_mut(),
    }];
    let _ = stream::copy(data, ts, outputs);
});
