//! Protobuf messages read by field number, for the messages berth reads
//! but has no generated code for (CRI's pod config, runc's options).

use berth_proto::protobuf::rt::WireType;
use berth_proto::protobuf::CodedInputStream;

use crate::error::{Error, Result};

/// One field off the wire: its number and, for a length-delimited field,
/// its bytes; a varint's value otherwise.
pub enum Field {
    Bytes(u32, Vec<u8>),
    Varint(u32, u64),
}

/// The fields of a message, in wire order; others are skipped.
pub fn fields(what: &str, bytes: &[u8]) -> Result<Vec<Field>> {
    let bad = |e: berth_proto::protobuf::Error| {
        Error::InvalidArgument(format!("{what}: not a protobuf message: {e}"))
    };
    let mut input = CodedInputStream::from_bytes(bytes);
    let mut out = Vec::new();
    while let Some(tag) = input.read_raw_tag_or_eof().map_err(bad)? {
        let (number, wire) = (tag >> 3, WireType::new(tag & 7));
        match wire {
            Some(WireType::LengthDelimited) => {
                out.push(Field::Bytes(number, input.read_bytes().map_err(bad)?))
            }
            Some(WireType::Varint) => out.push(Field::Varint(
                number,
                input.read_raw_varint64().map_err(bad)?,
            )),
            Some(other) => input.skip_field(other).map_err(bad)?,
            None => {
                return Err(Error::InvalidArgument(format!(
                    "{what}: field {number} has an unknown wire type {}",
                    tag & 7
                )))
            }
        }
    }
    Ok(out)
}

pub fn string(what: &str, bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|_| Error::InvalidArgument(format!("{what}: not valid UTF-8")))
}
