//! P-DATA framing for both sides of an association: messages split into
//! PDVs that fit the peer's maximum PDU (we fragment ourselves rather than
//! use dicom-ul's `AsyncPDataWriter`, whose `Drop` needs a multi-thread
//! runtime), and Command PDVs assembled back into command sets.

use bytes::BytesMut;
use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu, PDV_HEADER_SIZE};

use super::association::{LinkError, Wire};
use super::command::{CommandError, CommandSet, MAX_COMMAND_LEN};

/// Largest PDU we send, whatever larger size the peer accepts.
const MAX_SEND_PDU: u32 = 1 << 20;

/// Payload bytes of one PDV that alone fills a PDU the peer accepts.
pub(crate) fn fragment_len(peer_max: u32) -> usize {
    let pdu = peer_max.clamp(64, MAX_SEND_PDU);
    (pdu - PDV_HEADER_SIZE) as usize
}

async fn send_pdv<A>(
    assoc: &mut A,
    pc: u8,
    kind: PDataValueType,
    is_last: bool,
    data: Vec<u8>,
) -> Result<(), LinkError>
where
    A: Wire,
{
    let pdu = Pdu::PData {
        data: vec![PDataValue {
            presentation_context_id: pc,
            value_type: kind,
            is_last,
            data,
        }],
    };
    assoc.send_pdu(&pdu).await
}

/// Sends a whole message: the command and, if any, its (small) data set,
/// in one PDU when both fit.
pub(crate) async fn send_message<A>(
    assoc: &mut A,
    pc: u8,
    command: &[u8],
    data: Option<&[u8]>,
) -> Result<(), LinkError>
where
    A: Wire,
{
    let frag = fragment_len(assoc.peer_max());
    match data {
        Some(d) if command.len() + d.len() + PDV_HEADER_SIZE as usize <= frag => {
            let pdu = Pdu::PData {
                data: vec![
                    PDataValue {
                        presentation_context_id: pc,
                        value_type: PDataValueType::Command,
                        is_last: true,
                        data: command.to_vec(),
                    },
                    PDataValue {
                        presentation_context_id: pc,
                        value_type: PDataValueType::Data,
                        is_last: true,
                        data: d.to_vec(),
                    },
                ],
            };
            assoc.send_pdu(&pdu).await
        }
        _ => {
            let mut cmd = DataSender::new(pc, frag, PDataValueType::Command);
            cmd.push(assoc, command).await?;
            cmd.finish(assoc).await?;
            if let Some(d) = data {
                let mut ds = DataSender::new(pc, frag, PDataValueType::Data);
                ds.push(assoc, d).await?;
                ds.finish(assoc).await?;
            }
            Ok(())
        }
    }
}

/// Streams a value (usually a data set) as PDVs of at most one PDU each;
/// the last PDV is marked as such by [`DataSender::finish`].
pub(crate) struct DataSender {
    pc: u8,
    frag: usize,
    kind: PDataValueType,
    pending: BytesMut,
}

impl DataSender {
    pub(crate) fn new(pc: u8, frag: usize, kind: PDataValueType) -> Self {
        Self {
            pc,
            frag: frag.max(1),
            kind,
            pending: BytesMut::new(),
        }
    }

    pub(crate) fn for_data<A: Wire>(assoc: &A, pc: u8) -> Self {
        Self::new(pc, fragment_len(assoc.peer_max()), PDataValueType::Data)
    }

    /// Queues bytes; sends every full PDV while more bytes remain behind
    /// it (so the final one can carry the last flag).
    pub(crate) async fn push<A>(&mut self, assoc: &mut A, bytes: &[u8]) -> Result<(), LinkError>
    where
        A: Wire,
    {
        self.pending.extend_from_slice(bytes);
        while self.pending.len() > self.frag {
            let part = self.pending.split_to(self.frag);
            send_pdv(assoc, self.pc, self.kind.clone(), false, part.to_vec()).await?;
        }
        Ok(())
    }

    pub(crate) async fn finish<A>(mut self, assoc: &mut A) -> Result<(), LinkError>
    where
        A: Wire,
    {
        let last = std::mem::take(&mut self.pending);
        send_pdv(assoc, self.pc, self.kind, true, last.to_vec()).await
    }
}

/// Collects Command PDVs until the last one and decodes the command set.
#[derive(Debug, Default)]
pub(crate) struct CommandAssembler {
    buf: Vec<u8>,
    pc: Option<u8>,
}

impl CommandAssembler {
    pub(crate) fn feed(&mut self, pdv: PDataValue) -> Result<Option<CommandSet>, CommandError> {
        if self.pc.is_some_and(|pc| pc != pdv.presentation_context_id) {
            return Err(CommandError::Malformed(
                "command fragments on different presentation contexts".into(),
            ));
        }
        if self.buf.len() + pdv.data.len() > MAX_COMMAND_LEN {
            return Err(CommandError::Malformed("command set too long".into()));
        }
        self.pc = Some(pdv.presentation_context_id);
        self.buf.extend_from_slice(&pdv.data);
        if !pdv.is_last {
            return Ok(None);
        }
        self.pc = None;
        let bytes = std::mem::take(&mut self.buf);
        CommandSet::decode(&bytes).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pdv(pc: u8, last: bool, data: &[u8]) -> PDataValue {
        PDataValue {
            presentation_context_id: pc,
            value_type: PDataValueType::Command,
            is_last: last,
            data: data.to_vec(),
        }
    }

    #[test]
    fn fragments_fit_the_peer() {
        assert_eq!(fragment_len(16_384), 16_378);
        assert_eq!(fragment_len(u32::MAX), (1 << 20) - 6);
        assert_eq!(fragment_len(0), 58);
    }

    #[test]
    fn commands_assemble_across_pdvs() {
        let cmd = CommandSet {
            field: super::super::command::C_ECHO_RQ,
            message_id: 5,
            sop_class: "1.2.840.10008.1.1".into(),
            ..Default::default()
        };
        let bytes = cmd.encode().expect("encodes");
        let mut asm = CommandAssembler::default();
        assert_eq!(asm.feed(pdv(1, false, &bytes[..10])), Ok(None));
        assert_eq!(asm.feed(pdv(1, true, &bytes[10..])), Ok(Some(cmd)));
        assert!(asm.feed(pdv(1, false, &bytes[..10])).is_ok());
        assert!(asm.feed(pdv(3, true, &bytes[10..])).is_err());
    }
}
