//! Fallbacks for files dicom-rs reads too strictly.
//!
//! - **File meta group**: dicom-rs refuses a meta group with an over-long value (e.g. a Source Application
//!   Entity Title of 18 bytes, written by real toolkits). When the strict reader fails, the meta group is
//!   walked here by hand (explicit VR little endian, as the standard fixes it), only the transfer syntax and
//!   SOP identifiers are kept, and the data set that follows is parsed by dicom-rs with that transfer syntax.
//! - **UN value representations**: files converted without a dictionary store text attributes (Modality,
//!   ImagePositionPatient...) as UN. [`un_text`] reads such values with the VR the standard dictionary gives.

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom_core::header::Header;
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::StandardDataDictionary;
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::{DefaultDicomObject, FileMetaTableBuilder, InMemDicomObject};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use std::borrow::Cow;

/// Why the lenient reader failed too.
#[derive(Debug)]
pub enum LenientError {
    /// The transfer syntax is not one dicom-rs knows (retired JPEG processes...).
    UnknownTransferSyntax(String),
    Other(String),
}

impl From<&str> for LenientError {
    fn from(s: &str) -> Self {
        LenientError::Other(s.to_string())
    }
}
impl From<String> for LenientError {
    fn from(s: String) -> Self {
        LenientError::Other(s)
    }
}

/// What the file meta group says, and where the data set starts.
pub struct Meta {
    pub dataset_start: usize,
    pub transfer_syntax: String,
    pub sop_class: String,
    pub sop_instance: String,
}

/// Walk the file meta group by hand (explicit VR little endian, as the standard fixes it).
pub fn read_meta(bytes: &[u8]) -> Result<Meta, LenientError> {
    let start = if bytes.len() >= 132 && &bytes[128..132] == b"DICM" {
        132
    } else if bytes.len() >= 4 && &bytes[..4] == b"DICM" {
        4
    } else {
        return Err(LenientError::Other("no DICM marker".into()));
    };
    let mut pos = start;
    let (mut ts, mut sop_class, mut sop_instance) = (None, None, None);
    loop {
        let Some(h) = bytes.get(pos..pos + 8) else { return Err("file meta group is truncated".into()) };
        let group = u16::from_le_bytes([h[0], h[1]]);
        if group != 0x0002 {
            break;
        }
        let element = u16::from_le_bytes([h[2], h[3]]);
        let vr = [h[4], h[5]];
        let (len, header) = if matches!(
            &vr,
            b"OB"
                | b"OW"
                | b"OF"
                | b"SQ"
                | b"UT"
                | b"UN"
                | b"UC"
                | b"UR"
                | b"OD"
                | b"OL"
                | b"OV"
                | b"SV"
                | b"UV"
        ) {
            let l = bytes.get(pos + 8..pos + 12).ok_or("file meta group is truncated")?;
            (u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize, 12)
        } else {
            (u16::from_le_bytes([h[6], h[7]]) as usize, 8)
        };
        let value = bytes
            .get(pos + header..(pos + header).saturating_add(len))
            .ok_or("file meta group is truncated")?;
        let text = || String::from_utf8_lossy(value).trim_end_matches(['\0', ' ']).to_string();
        match element {
            0x0002 => sop_class = Some(text()),
            0x0003 => sop_instance = Some(text()),
            0x0010 => ts = Some(text()),
            _ => {}
        }
        pos += header + len;
    }
    Ok(Meta {
        dataset_start: pos,
        transfer_syntax: ts.ok_or("file meta group has no TransferSyntaxUID")?,
        sop_class: sop_class.unwrap_or_default(),
        sop_instance: sop_instance.unwrap_or_default(),
    })
}

/// Parse the data set `dataset` (already inflated if it was deflated) with transfer syntax `parse_ts`, and
/// attach a meta table naming `meta.transfer_syntax`.
pub fn parse_dataset(
    dataset: &[u8],
    parse_ts: &str,
    meta: &Meta,
) -> Result<DefaultDicomObject, LenientError> {
    let Some(ts) = TransferSyntaxRegistry.get(parse_ts) else {
        return Err(LenientError::UnknownTransferSyntax(parse_ts.to_string()));
    };
    let obj =
        InMemDicomObject::read_dataset_with_ts(dataset, ts).map_err(|e| super::header::error_chain(&e))?;
    let table = FileMetaTableBuilder::new()
        .transfer_syntax(meta.transfer_syntax.clone())
        .media_storage_sop_class_uid(meta.sop_class.clone())
        .media_storage_sop_instance_uid(meta.sop_instance.clone())
        .build()
        .map_err(|e| super::header::error_chain(&e))?;
    Ok(obj.with_exact_meta(table))
}

/// Retired JPEG progressive processes (PS3.5 retired: .53 spectral selection, processes 6 & 8; .55 full
/// progression, processes 10 & 12). dicom-rs does not know these UIDs; their data sets are explicit VR little
/// endian with encapsulated pixel data like every JPEG transfer syntax, and libjpeg-turbo decodes their
/// (8- or 12-bit progressive) frames.
pub const RETIRED_JPEG_PROGRESSIVE: [&str; 2] = ["1.2.840.10008.1.2.4.53", "1.2.840.10008.1.2.4.55"];

/// Parse a whole DICOM file (with or without preamble) whose meta group the strict reader refused.
pub fn parse_file_bytes(bytes: &[u8]) -> Result<DefaultDicomObject, LenientError> {
    let meta = read_meta(bytes)?;
    let ts = meta.transfer_syntax.clone();
    let parse_ts = if RETIRED_JPEG_PROGRESSIVE.contains(&ts.as_str()) { "1.2.840.10008.1.2.1" } else { &ts };
    parse_dataset(&bytes[meta.dataset_start..], parse_ts, &meta)
}

/// Text of an element stored as UN, decoded with the dictionary VR: binary numbers for US/SS/UL/SL/FL/FD,
/// text otherwise. `None` when the element is not UN.
pub fn un_text(e: &DataElement<InMemDicomObject>) -> Option<String> {
    if e.vr() != VR::UN {
        return None;
    }
    let bytes = e.to_bytes().ok()?;
    let vr = match StandardDataDictionary.by_tag(e.tag()).map(|d| d.vr()) {
        Some(VirtualVr::Exact(vr)) => vr,
        _ => VR::LO,
    };
    let nums = |w: usize, f: &dyn Fn(&[u8]) -> String| -> String {
        bytes.chunks_exact(w).map(f).collect::<Vec<_>>().join("\\")
    };
    Some(match vr {
        VR::US => nums(2, &|b| u16::from_le_bytes([b[0], b[1]]).to_string()),
        VR::SS => nums(2, &|b| i16::from_le_bytes([b[0], b[1]]).to_string()),
        VR::UL => nums(4, &|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]).to_string()),
        VR::SL => nums(4, &|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]).to_string()),
        VR::FL => nums(4, &|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]).to_string()),
        VR::FD => {
            nums(8, &|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]).to_string())
        }
        _ => String::from_utf8_lossy(&bytes).into_owned(),
    })
}

/// Numbers of a backslash-separated text value.
pub fn parse_numbers(s: &str) -> Result<Vec<f64>, String> {
    s.split('\\')
        .map(|t| t.trim_matches(|c: char| c.is_whitespace() || c == '\0'))
        .filter(|t| !t.is_empty())
        .map(|t| t.parse::<f64>().map_err(|_| format!("{t:?} is not a number")))
        .collect()
}

pub fn cow_text(e: &DataElement<InMemDicomObject>) -> Option<Cow<'_, str>> {
    match un_text(e) {
        Some(s) => Some(Cow::Owned(s)),
        None => e.to_str().ok(),
    }
}
