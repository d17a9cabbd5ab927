//! A walk over a media request's protobuf wire bytes that bounds how many
//! elements it carries before prost decodes (and allocates) any of them.
//!
//! The body limit bounds bytes, not work: 20 KB of empty Tencent `qaid_infos`
//! is 10,000 messages for prost to allocate, 50 times a normal request's CPU.
//! Counting fields on the wire costs a few hundred nanoseconds and no
//! allocation. Bytes that are not valid protobuf pass through here
//! untouched: prost's decode names what is wrong with them. (A packed
//! repeated scalar is one field here; protocols bound its length after
//! decoding, where it costs one allocation.)

use prost::bytes::Buf;
use prost::encoding::{WireType, decode_key, decode_varint};

use crate::serve::InvalidRequest;

/// How many fields a protocol's request may carry on the wire.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Most fields of the whole request, nested messages' fields included.
    pub max_fields: usize,
    /// Top-level message fields whose own fields are counted too.
    pub nested: &'static [Nested],
}

/// A top-level message field of a [`Shape`].
#[derive(Debug, Clone, Copy)]
pub struct Nested {
    /// Its field number.
    pub tag: u32,
    /// Its name, in errors and metric labels.
    pub name: &'static str,
    /// Most fields one occurrence may carry; `None` = only the request's total.
    pub max_fields: Option<usize>,
}

impl Shape {
    /// Refuses a request whose wire bytes carry more fields than the limits,
    /// naming the message that overflowed.
    pub fn check(&self, body: &[u8]) -> Result<(), InvalidRequest> {
        let mut budget = self.max_fields;
        let mut buf = body;
        while buf.has_remaining() {
            let Some((tag, value)) = next_field(&mut buf) else {
                return Ok(());
            };
            spend(&mut budget, "body", "request", self.max_fields)?;
            let (Some(nested), Some(inner)) = (self.nested.iter().find(|n| n.tag == tag), value)
            else {
                continue;
            };
            let mut own = nested.max_fields.unwrap_or(usize::MAX);
            let mut d = inner;
            while d.has_remaining() {
                if next_field(&mut d).is_none() {
                    return Ok(());
                }
                if let Some(limit) = nested.max_fields {
                    spend(&mut own, nested.name, nested.name, limit)?;
                }
                spend(&mut budget, "body", "request", self.max_fields)?;
            }
        }
        Ok(())
    }
}

fn spend(
    budget: &mut usize,
    field: &'static str,
    message: &'static str,
    limit: usize,
) -> Result<(), InvalidRequest> {
    if *budget == 0 {
        return Err(InvalidRequest::new(
            field,
            field,
            format!("the {message} carries more than {limit} fields"),
        ));
    }
    *budget -= 1;
    Ok(())
}

/// Reads one field: its number and, when length-delimited, its bytes.
/// `None` when the wire is not readable protobuf (prost will say why).
fn next_field<'a>(buf: &mut &'a [u8]) -> Option<(u32, Option<&'a [u8]>)> {
    let (tag, wire) = decode_key(buf).ok()?;
    let skip = |buf: &mut &'a [u8], n: usize| -> Option<&'a [u8]> {
        let (taken, rest) = buf.split_at_checked(n)?;
        *buf = rest;
        Some(taken)
    };
    match wire {
        WireType::Varint => {
            decode_varint(buf).ok()?;
            Some((tag, None))
        }
        WireType::SixtyFourBit => skip(buf, 8).map(|_| (tag, None)),
        WireType::ThirtyTwoBit => skip(buf, 4).map(|_| (tag, None)),
        WireType::LengthDelimited => {
            let len = usize::try_from(decode_varint(buf).ok()?).ok()?;
            skip(buf, len).map(|bytes| (tag, Some(bytes)))
        }
        WireType::StartGroup | WireType::EndGroup => None,
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::serve::tencent::{SHAPE, pb};

    const MAX_FIELDS: usize = SHAPE.max_fields;
    const MAX_DEVICE_FIELDS: usize = 128;

    fn check(body: &[u8]) -> Result<(), InvalidRequest> {
        SHAPE.check(body)
    }

    fn device_with_qaids(n: usize) -> Vec<u8> {
        pb::RtaRequest {
            id: Some("r".into()),
            device: Some(pb::rta_request::Device {
                qaid_infos: vec![Default::default(); n],
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec()
    }

    #[test]
    fn a_device_of_ten_thousand_empty_caids_is_refused_naming_the_device() {
        let err = check(&device_with_qaids(10_000)).unwrap_err();
        assert_eq!(err.field, "device");
        assert!(err.message.contains("128"), "{}", err.message);
    }

    #[test]
    fn a_device_at_the_limit_passes() {
        // the device's qaid_infos are its only fields
        check(&device_with_qaids(MAX_DEVICE_FIELDS)).unwrap();
        assert!(check(&device_with_qaids(MAX_DEVICE_FIELDS + 1)).is_err());
    }

    #[test]
    fn many_top_level_fields_are_refused() {
        let req = pb::RtaRequest {
            exps: vec![Default::default(); MAX_FIELDS + 1],
            ..Default::default()
        };
        let err = check(&req.encode_to_vec()).unwrap_err();
        assert_eq!(err.field, "body");
    }

    #[test]
    fn unreadable_wire_is_left_to_prost() {
        check(&[0xff, 0xff, 0xff]).unwrap();
        check(&[0x2a, 0x10, 0x01]).unwrap(); // a device whose length runs past the end
    }
}
