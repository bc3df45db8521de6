//! PDU framing on an association, with our own P-DATA reader.
//!
//! dicom-ul reads whole PDUs into memory and will buffer any length a peer announces.
//! Here P-DATA PDUs are checked against the maximum we negotiated before a byte of
//! their body is read, and PDV payloads stream straight from the socket's buffer to
//! whoever consumes them: no PDU is ever held whole. The rare control PDUs
//! (association request, release, abort) are small and go through dicom-ul's codec.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::time::{Duration, Instant};

use dicom_ul::pdu::{AbortRQServiceProviderReason, PDataValue, PDataValueType, Pdu};

use super::dimse;
use super::tls::Wire;

/// Control PDUs (A-ASSOCIATE-RQ with many presentation contexts) may exceed the P-DATA
/// maximum; they are still bounded so that a lying length cannot make us allocate.
const CONTROL_PDU_LIMIT: u32 = 256 * 1024;

const PDU_TYPE_PDATA: u8 = 0x04;

/// Why an association cannot go on. Each one ends it with an A-ABORT (or silence, when
/// the connection is already gone); none of them harms what is already queued.
#[derive(Debug)]
pub enum Fault {
    /// The connection failed or stayed silent past the idle timeout.
    Io(io::Error),
    /// The peer closed the connection between PDUs.
    Closed,
    /// The peer sent a PDU longer than it may.
    TooLarge { length: u32, max: u32 },
    /// The bytes do not follow the upper layer protocol.
    Malformed(String),
    /// A PDU that has no place at this point of the association.
    Unexpected(&'static str),
    /// A PDV for a presentation context we did not accept, or of the wrong kind.
    BadContext(u8),
    /// The peer aborted the association.
    PeerAborted,
    /// The association request did not arrive whole in time (ARTIM, PS3.8 9.1.5):
    /// a peer trickling bytes to hold a slot.
    TooSlow,
}

impl Fault {
    /// The A-ABORT reason that tells the peer what went wrong, if one is to be sent.
    pub fn abort_reason(&self) -> Option<AbortRQServiceProviderReason> {
        match self {
            Fault::Io(_) | Fault::Closed | Fault::PeerAborted | Fault::TooSlow => None,
            Fault::TooLarge { .. } | Fault::Malformed(_) => {
                Some(AbortRQServiceProviderReason::InvalidPduParameter)
            }
            Fault::Unexpected(_) => Some(AbortRQServiceProviderReason::UnexpectedPdu),
            Fault::BadContext(_) => Some(AbortRQServiceProviderReason::UnexpectedPduParameter),
        }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Io(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                f.write_str("peer silent past the idle timeout")
            }
            Fault::Io(e) => write!(f, "connection failed: {e}"),
            Fault::Closed => f.write_str("connection closed by peer"),
            Fault::TooLarge { length, max } => {
                write!(
                    f,
                    "PDU of {length} bytes exceeds the negotiated maximum of {max}"
                )
            }
            Fault::Malformed(what) => write!(f, "malformed PDU: {what}"),
            Fault::Unexpected(what) => write!(f, "unexpected {what}"),
            Fault::BadContext(id) => write!(
                f,
                "P-DATA for presentation context {id}, which is not the one in use"
            ),
            Fault::PeerAborted => f.write_str("peer aborted the association"),
            Fault::TooSlow => f.write_str("association request not complete in time"),
        }
    }
}

/// The header of one presentation data value (PS3.8 9.3.5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PdvHeader {
    pub context_id: u8,
    pub is_command: bool,
    pub is_last: bool,
}

/// What arrives next on an association.
#[derive(Debug)]
pub enum Next {
    /// A PDV, whose payload is then read with [`PduStream::read_pdv`].
    Pdv(PdvHeader),
    /// Any PDU other than P-DATA, decoded.
    Control(Pdu),
}

/// Reads and writes the PDUs of one association.
pub struct PduStream<S> {
    stream: BufReader<S>,
    max_pdu: u32,
    /// Bytes of the current P-DATA PDU not yet consumed.
    pdata_left: u32,
    /// Bytes of the current PDV payload not yet consumed.
    pdv_left: u32,
    /// While set, PDU headers and control PDUs must arrive whole before it.
    deadline: Option<Instant>,
}

impl<S: Read + Write> PduStream<S> {
    pub fn new(stream: S, max_pdu: u32) -> Self {
        PduStream {
            stream: BufReader::with_capacity(64 * 1024, stream),
            max_pdu,
            pdata_left: 0,
            pdv_left: 0,
            deadline: None,
        }
    }

    /// Sets (or clears) the time by which headers and control PDUs must have arrived.
    pub fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }

    /// Reads until `buf` is full or the peer closes; returns the bytes read.
    /// Checks the deadline between reads, since a trickle never trips a read timeout.
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, Fault> {
        let mut n = 0;
        while n < buf.len() {
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Fault::TooSlow);
            }
            match self.stream.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Fault::Io(e)),
            }
        }
        Ok(n)
    }

    /// The underlying connection (for socket options and shutdown).
    pub fn get_mut(&mut self) -> &mut S {
        self.stream.get_mut()
    }

    /// Reads the next PDV header or control PDU. The previous PDV must be consumed.
    pub fn next_pdu(&mut self) -> Result<Next, Fault> {
        debug_assert_eq!(self.pdv_left, 0, "previous PDV not consumed");
        if self.pdata_left == 0 {
            let mut header = [0u8; 6];
            match self.fill(&mut header)? {
                0 => return Err(Fault::Closed),
                6 => {}
                _ => return Err(Fault::Malformed("connection closed inside a PDU".into())),
            }
            let pdu_type = header[0];
            let length = u32::from_be_bytes([header[2], header[3], header[4], header[5]]);
            if pdu_type == PDU_TYPE_PDATA {
                if length > self.max_pdu {
                    return Err(Fault::TooLarge {
                        length,
                        max: self.max_pdu,
                    });
                }
                if length < 6 {
                    return Err(Fault::Malformed(format!(
                        "P-DATA PDU of {length} bytes holds no PDV"
                    )));
                }
                self.pdata_left = length;
            } else {
                return self.read_control(header, length).map(Next::Control);
            }
        }
        if self.pdata_left < 6 {
            return Err(Fault::Malformed(
                "PDV item header cut short by the PDU's end".into(),
            ));
        }
        let mut item = [0u8; 6];
        if self.fill(&mut item)? < 6 {
            return Err(Fault::Malformed("connection closed inside a PDU".into()));
        }
        let item_length = u32::from_be_bytes([item[0], item[1], item[2], item[3]]);
        if item_length < 2 || item_length > self.pdata_left - 4 {
            return Err(Fault::Malformed(format!(
                "PDV item length {item_length} does not fit its PDU ({} bytes left)",
                self.pdata_left - 4
            )));
        }
        self.pdata_left -= 4 + item_length;
        self.pdv_left = item_length - 2;
        Ok(Next::Pdv(PdvHeader {
            context_id: item[4],
            is_command: item[5] & 0x01 != 0,
            is_last: item[5] & 0x02 != 0,
        }))
    }

    /// Reads payload bytes of the current PDV; 0 when it is consumed.
    pub fn read_pdv(&mut self, buf: &mut [u8]) -> Result<usize, Fault> {
        let want = buf.len().min(self.pdv_left as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = self.stream.read(&mut buf[..want]).map_err(Fault::Io)?;
        if n == 0 {
            return Err(Fault::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        self.pdv_left -= n as u32;
        Ok(n)
    }

    /// Bytes of the current PDV payload not yet read.
    pub fn pdv_left(&self) -> u32 {
        self.pdv_left
    }

    fn read_control(&mut self, header: [u8; 6], length: u32) -> Result<Pdu, Fault> {
        if length > CONTROL_PDU_LIMIT {
            return Err(Fault::TooLarge {
                length,
                max: CONTROL_PDU_LIMIT,
            });
        }
        let mut bytes = vec![0u8; 6 + length as usize];
        bytes[..6].copy_from_slice(&header);
        if self.fill(&mut bytes[6..])? != length as usize {
            return Err(Fault::Malformed("connection closed inside a PDU".into()));
        }
        match dicom_ul::pdu::read_pdu(&bytes[..], CONTROL_PDU_LIMIT, true) {
            Ok(Some(Pdu::Unknown { pdu_type, .. })) => Err(Fault::Malformed(format!(
                "unknown PDU type {pdu_type:#04x}"
            ))),
            Ok(Some(pdu)) => Ok(pdu),
            Ok(None) => Err(Fault::Malformed("PDU cut short".into())),
            Err(e) => Err(Fault::Malformed(e.to_string())),
        }
    }

    /// Sends one control PDU.
    pub fn send(&mut self, pdu: &Pdu) -> io::Result<()> {
        let mut bytes = Vec::with_capacity(256);
        dicom_ul::pdu::write_pdu(&mut bytes, pdu).map_err(|e| io::Error::other(e.to_string()))?;
        let stream = self.stream.get_mut();
        stream.write_all(&bytes)?;
        stream.flush()
    }

    /// Sends a DIMSE command set as one P-DATA PDU.
    pub fn send_command(&mut self, context_id: u8, command: Vec<u8>) -> io::Result<()> {
        self.send(&Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: context_id,
                value_type: PDataValueType::Command,
                is_last: true,
                data: command,
            }],
        })
    }

    /// Sends a command set and its data set, the data set in as many P-DATA PDUs
    /// as the peer's maximum length (`peer_max`, 0 for none) asks.
    pub fn send_message(
        &mut self,
        context_id: u8,
        command: Vec<u8>,
        data: &[u8],
        peer_max: u32,
    ) -> io::Result<()> {
        self.send_command(context_id, command)?;
        // A PDV item's own header (length, context, flags) counts in the PDU's length.
        let room = match peer_max {
            0 => 64 * 1024,
            max => (max as usize).saturating_sub(6).max(1),
        };
        let mut chunks = data.chunks(room).peekable();
        while let Some(chunk) = chunks.next() {
            self.send(&Pdu::PData {
                data: vec![PDataValue {
                    presentation_context_id: context_id,
                    value_type: PDataValueType::Data,
                    is_last: chunks.peek().is_none(),
                    data: chunk.to_vec(),
                }],
            })?;
        }
        Ok(())
    }

    /// Collects the fragments of a command set that began with `first`; they must
    /// be contiguous on one context.
    pub fn read_command(&mut self, first: PdvHeader) -> Result<Vec<u8>, Fault> {
        let mut bytes = Vec::new();
        let mut last = first.is_last;
        loop {
            let mut chunk = [0u8; 4096];
            loop {
                let n = self.read_pdv(&mut chunk)?;
                if n == 0 {
                    break;
                }
                if bytes.len() + n > dimse::MAX_COMMAND_LENGTH {
                    return Err(Fault::Malformed("command set larger than 64 KiB".into()));
                }
                bytes.extend_from_slice(&chunk[..n]);
            }
            if last {
                return Ok(bytes);
            }
            match self.next_pdu()? {
                Next::Pdv(pdv) if pdv.is_command && pdv.context_id == first.context_id => {
                    last = pdv.is_last
                }
                Next::Pdv(pdv) => return Err(Fault::BadContext(pdv.context_id)),
                Next::Control(Pdu::AbortRQ { .. }) => return Err(Fault::PeerAborted),
                Next::Control(_) => return Err(Fault::Unexpected("control PDU inside a command")),
            }
        }
    }
}

impl<S: Wire> PduStream<S> {
    /// Whether the peer sends something within `wait`, reading nothing: between
    /// messages only, so a quiet peer leaves the stream as it was. `restore` is
    /// the read timeout to go back to.
    pub fn readable(&mut self, wait: Duration, restore: Option<Duration>) -> Result<bool, Fault> {
        debug_assert_eq!(self.pdata_left, 0, "inside a PDU");
        if !self.stream.buffer().is_empty() {
            return Ok(true);
        }
        self.stream
            .get_ref()
            .set_read_timeout(Some(wait))
            .map_err(Fault::Io)?;
        let filled = self.stream.fill_buf().map(|_| ());
        self.stream
            .get_ref()
            .set_read_timeout(restore)
            .map_err(Fault::Io)?;
        match filled {
            // Bytes, or the end of the stream, which the next read reports.
            Ok(()) => Ok(true),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(false)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(false),
            Err(e) => Err(Fault::Io(e)),
        }
    }
}

/// An `io::Read` over the data set fragments of one DIMSE message: the payloads of
/// consecutive data PDVs on one presentation context, up to the one marked last.
///
/// Anything else arriving in between (a command PDV, another context, an abort) is a
/// [`Fault`]: the read fails, and the fault is kept for the caller to act on, so a
/// broken association is never mistaken for a malformed data set.
pub struct DataSetReader<'a, S> {
    pdus: &'a mut PduStream<S>,
    context_id: u8,
    last_seen: bool,
    fault: Option<Fault>,
    bytes: u64,
}

impl<'a, S: Read + Write> DataSetReader<'a, S> {
    pub fn new(pdus: &'a mut PduStream<S>, context_id: u8) -> Self {
        DataSetReader {
            pdus,
            context_id,
            last_seen: false,
            fault: None,
            bytes: 0,
        }
    }

    /// Takes the fault that stopped reading, if any.
    pub fn take_fault(&mut self) -> Option<Fault> {
        self.fault.take()
    }

    /// Total payload bytes read so far.
    pub fn payload_bytes(&self) -> u64 {
        self.bytes
    }

    /// Reads and discards the rest of the data set, keeping the association in step
    /// after a data set we refuse.
    pub fn drain(&mut self) -> Result<(), Fault> {
        let mut sink = [0u8; 16 * 1024];
        loop {
            match self.read(&mut sink) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(_) => {
                    return Err(self
                        .fault
                        .take()
                        .unwrap_or(Fault::Malformed("data set stream failed".into())));
                }
            }
        }
    }

    fn fail(&mut self, fault: Fault) -> io::Error {
        let error = io::Error::other(fault.to_string());
        self.fault = Some(fault);
        error
    }
}

impl<S: Read + Write> Read for DataSetReader<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.fault.is_some() {
            return Err(io::Error::other("association already failed"));
        }
        loop {
            if self.pdus.pdv_left() > 0 {
                return match self.pdus.read_pdv(buf) {
                    Ok(n) => {
                        self.bytes += n as u64;
                        Ok(n)
                    }
                    Err(fault) => Err(self.fail(fault)),
                };
            }
            if self.last_seen || buf.is_empty() {
                return Ok(0);
            }
            match self.pdus.next_pdu() {
                Ok(Next::Pdv(pdv)) if !pdv.is_command && pdv.context_id == self.context_id => {
                    self.last_seen = pdv.is_last;
                }
                Ok(Next::Pdv(pdv)) if pdv.is_command => {
                    return Err(self.fail(Fault::Unexpected("command PDV inside a data set")));
                }
                Ok(Next::Pdv(pdv)) => return Err(self.fail(Fault::BadContext(pdv.context_id))),
                Ok(Next::Control(Pdu::AbortRQ { .. })) => return Err(self.fail(Fault::PeerAborted)),
                Ok(Next::Control(_)) => {
                    return Err(self.fail(Fault::Unexpected("control PDU inside a data set")));
                }
                Err(fault) => return Err(self.fail(fault)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A byte script standing in for the socket: reads come from `input`, writes are kept.
    struct Script {
        input: Cursor<Vec<u8>>,
        output: Vec<u8>,
    }

    impl Read for Script {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.input.read(buf)
        }
    }

    impl Write for Script {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.output.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn pdata(pdvs: &[(u8, u8, &[u8])]) -> Vec<u8> {
        let body: Vec<u8> = pdvs
            .iter()
            .flat_map(|(ctx, flags, data)| {
                let mut item = ((data.len() + 2) as u32).to_be_bytes().to_vec();
                item.push(*ctx);
                item.push(*flags);
                item.extend_from_slice(data);
                item
            })
            .collect();
        let mut pdu = vec![PDU_TYPE_PDATA, 0];
        pdu.extend_from_slice(&(body.len() as u32).to_be_bytes());
        pdu.extend(body);
        pdu
    }

    fn stream(bytes: Vec<u8>) -> PduStream<Script> {
        PduStream::new(
            Script {
                input: Cursor::new(bytes),
                output: Vec::new(),
            },
            4096,
        )
    }

    #[test]
    fn data_set_spans_pdvs_and_pdus() {
        let mut bytes = pdata(&[(1, 0b00, b"abc"), (1, 0b00, b"de")]);
        bytes.extend(pdata(&[(1, 0b10, b"fg")]));
        bytes.extend(pdata(&[(1, 0b11, b"next command")]));
        let mut pdus = stream(bytes);
        let mut data = String::new();
        let mut reader = DataSetReader::new(&mut pdus, 1);
        reader.read_to_string(&mut data).unwrap();
        assert_eq!(data, "abcdefg");
        assert_eq!(reader.payload_bytes(), 7);
        match pdus.next_pdu().unwrap() {
            Next::Pdv(h) => assert!(h.is_command && h.is_last && h.context_id == 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn oversized_pdata_is_refused_before_reading_its_body() {
        let mut bytes = vec![PDU_TYPE_PDATA, 0];
        bytes.extend_from_slice(&u32::MAX.to_be_bytes());
        match stream(bytes).next_pdu() {
            Err(Fault::TooLarge { length, max }) => assert_eq!((length, max), (u32::MAX, 4096)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pdv_longer_than_its_pdu_is_malformed() {
        let mut bytes = pdata(&[(1, 0b10, b"abcd")]);
        bytes[9] = 0xFF; // item length low byte
        assert!(matches!(stream(bytes).next_pdu(), Err(Fault::Malformed(_))));
    }

    #[test]
    fn data_on_another_context_is_a_fault() {
        let mut bytes = pdata(&[(1, 0b00, b"ab")]);
        bytes.extend(pdata(&[(3, 0b10, b"cd")]));
        let mut pdus = stream(bytes);
        let mut reader = DataSetReader::new(&mut pdus, 1);
        assert!(
            reader
                .drain()
                .is_err_and(|f| matches!(f, Fault::BadContext(3)))
        );
    }

    #[test]
    fn abort_inside_a_data_set_is_reported() {
        let mut bytes = pdata(&[(1, 0b00, b"ab")]);
        bytes.extend([0x07, 0, 0, 0, 0, 4, 0, 0, 0, 0]);
        let mut pdus = stream(bytes);
        let mut reader = DataSetReader::new(&mut pdus, 1);
        assert!(
            reader
                .drain()
                .is_err_and(|f| matches!(f, Fault::PeerAborted))
        );
    }

    #[test]
    fn truncated_stream_is_a_fault_not_an_end() {
        let mut bytes = pdata(&[(1, 0b10, b"abcdef")]);
        bytes.truncate(bytes.len() - 3);
        let mut pdus = stream(bytes);
        let mut reader = DataSetReader::new(&mut pdus, 1);
        assert!(reader.drain().is_err());
    }

    #[test]
    fn release_request_is_decoded() {
        let mut pdus = stream(vec![0x05, 0, 0, 0, 0, 4, 0, 0, 0, 0]);
        assert!(matches!(pdus.next_pdu(), Ok(Next::Control(Pdu::ReleaseRQ))));
        assert!(matches!(pdus.next_pdu(), Err(Fault::Closed)));
    }
}
