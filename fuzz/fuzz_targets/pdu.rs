//! Bytes from a peer into the PDU reader: PDUs decoded, P-DATA payloads streamed
//! through the data set reader. Any input must end in a value or a fault, never a
//! panic, a hang or an allocation the size of a claimed length.
#![no_main]

use std::io::{self, Read, Write};

use libfuzzer_sys::fuzz_target;
use uplink::receive::pdu::{DataSetReader, Next, PduStream};

/// The peer's side of the socket: reads from the input, swallows our answers.
struct Wire<'a>(&'a [u8]);

impl Read for Wire<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Wire<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let mut pdus = PduStream::new(Wire(data), 16 * 1024);
    let mut buf = [0u8; 4096];
    for _ in 0..1000 {
        match pdus.next_pdu() {
            Ok(Next::Pdv(header)) => {
                // The rest of this data set as the store path reads it.
                let mut reader = DataSetReader::new(&mut pdus, header.context_id);
                while let Ok(n) = reader.read(&mut buf[..]) {
                    if n == 0 {
                        break;
                    }
                }
                return;
            }
            Ok(Next::Control(_)) => {}
            Err(_) => return,
        }
    }
});
