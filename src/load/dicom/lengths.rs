//! Element-length sanity check, run on a file's bytes before dicom-rs parses them.
//!
//! dicom-rs allocates a buffer of each element's declared length before reading its value, so a damaged
//! length field (up to 4 GiB) costs gigabytes of memory and seconds of zero-filling before the read fails.
//! This walk over the element headers refuses any declared length that runs past the end of the file. It
//! follows explicit/implicit VR little endian and explicit big endian, steps into sequences and items, and
//! skips encapsulated pixel data fragments. Deflated data sets are not walked past the meta group (their
//! lengths refer to the inflated stream).

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;

/// Outcome of a walk over (a prefix of) a file.
#[derive(Debug, PartialEq)]
pub enum Walk {
    /// Every header seen is consistent with the file length; the offset of the top-level PixelData header
    /// when the walk stopped there.
    Ok(Option<usize>),
    /// The prefix ended before PixelData (or the end of the data set): more bytes are needed to decide.
    NeedMore,
    /// A declared length cannot be right.
    Bad(String),
}

const LONG_VRS: [&[u8; 2]; 13] =
    [b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN", b"UC", b"UR", b"OD", b"OL", b"OV", b"SV", b"UV"];
const UNDEFINED: u32 = 0xFFFF_FFFF;

/// Where the top-level PixelData value of a natively encoded little-endian file starts and its declared
/// length, from `prefix`, the first bytes of a file of `total` bytes (`explicit`: explicit VR). `Ok(None)`
/// when the prefix does not reach PixelData, there is none, its length is undefined or its VR is not
/// OW/OB: the general decoder decides those. `Err` when a declared length cannot be right.
pub fn native_pixel_value(
    prefix: &[u8],
    total: usize,
    explicit: bool,
) -> Result<Option<(usize, usize)>, String> {
    let at = match walk(prefix, total, true) {
        Walk::Ok(Some(at)) => at,
        Walk::Bad(reason) => return Err(reason),
        Walk::Ok(None) | Walk::NeedMore => return Ok(None),
    };
    let (len_at, header) = if explicit { (at + 8, 12) } else { (at + 4, 8) };
    let Some(l) = prefix.get(len_at..len_at + 4) else { return Ok(None) };
    let len = u32::from_le_bytes([l[0], l[1], l[2], l[3]]);
    if len == UNDEFINED || (explicit && !matches!(prefix.get(at + 4..at + 6), Some(b"OW") | Some(b"OB"))) {
        return Ok(None);
    }
    Ok(Some((at + header, len as usize)))
}

/// Walk `prefix`, the first bytes of a file of `total` bytes. With `stop_at_pixel_data`, the walk ends at
/// the top-level PixelData header (enough for a header-only read).
pub fn walk(prefix: &[u8], total: usize, stop_at_pixel_data: bool) -> Walk {
    let start = if prefix.len() >= 132 && &prefix[128..132] == b"DICM" {
        132
    } else if prefix.len() >= 4 && &prefix[..4] == b"DICM" {
        4
    } else if prefix.len() < 132 && total >= 132 {
        return Walk::NeedMore;
    } else {
        // Not our concern: the parser reports a missing marker.
        return Walk::Ok(None);
    };
    let mut w = Walker { b: prefix, total, pos: start, explicit: true, little: true, in_meta: true };
    // Meta group: always explicit VR little endian. dicom-rs reads (0002,0000) and then whole elements until
    // that many bytes are consumed; the walk does the same so both agree on where the data set starts.
    let mut ts = String::new();
    let group_len = match w.element() {
        Step::Value { tag: Tag(0x0002, 0x0000), len: 4, .. } => match w.u32_at(w.pos, true) {
            Some(v) => {
                w.pos += 4;
                v as usize
            }
            None => return w.need_more_or_bad_walk(),
        },
        // dicom-rs refuses such a meta group; nothing to protect.
        Step::Stop(r) => return r,
        _ => return Walk::Ok(None),
    };
    let meta_start = w.pos;
    while w.pos - meta_start < group_len {
        match w.element() {
            Step::Value { tag, len, .. } => {
                if let Some(v) = w.b.get(w.pos..w.pos + len as usize) {
                    if tag == Tag(0x0002, 0x0010) {
                        ts = String::from_utf8_lossy(v).trim_end_matches(['\0', ' ']).to_string();
                    }
                }
                if let Err(r) = w.skip(len) {
                    return r;
                }
            }
            Step::Stop(r) => return r,
            Step::Undefined { .. } => return Walk::Bad("undefined length in the file meta group".into()),
        }
    }
    w.in_meta = false;
    match ts.as_str() {
        "1.2.840.10008.1.2" => w.explicit = false,
        "1.2.840.10008.1.2.2" => w.little = false,
        "1.2.840.10008.1.2.1.99" => return Walk::Ok(None),
        _ => {}
    }
    walk_body(&mut w, stop_at_pixel_data)
}

/// Walk a bare data set (no preamble or meta group), e.g. an inflated deflated data set.
pub fn walk_dataset(bytes: &[u8], explicit: bool) -> Walk {
    let mut w = Walker { b: bytes, total: bytes.len(), pos: 0, explicit, little: true, in_meta: false };
    walk_body(&mut w, false)
}

fn walk_body(w: &mut Walker<'_>, stop_at_pixel_data: bool) -> Walk {
    let total = w.total;
    let mut in_fragments = false;
    // End offsets of the sequences and items we are inside (usize::MAX for undefined length): PixelData
    // counts only at depth 0, since an Icon Image Sequence item holds a PixelData of its own.
    let mut open: Vec<usize> = Vec::new();
    while w.pos < total {
        if w.pos >= w.b.len() {
            return Walk::NeedMore;
        }
        while open.last().is_some_and(|end| *end <= w.pos) {
            open.pop();
        }
        let at = w.pos;
        match w.element() {
            Step::Stop(r) => return r,
            Step::Value { tag, len, is_sq } => {
                if tag == Tag(0x7FE0, 0x0010) && stop_at_pixel_data && !in_fragments && open.is_empty() {
                    return Walk::Ok(Some(at));
                }
                let item = tag.group() == 0xFFFE;
                let delimiter = item && tag.element() != 0xE000;
                // Sequences and items are entered, so the elements inside are checked too; fragment items
                // and every other value are skipped.
                if (is_sq || item) && !in_fragments {
                    if len as usize > total - w.pos {
                        return Walk::Bad(format!(
                            "{tag} claims {len} bytes, the file has {} left",
                            total - w.pos
                        ));
                    }
                    if delimiter {
                        open.pop();
                    } else {
                        open.push(w.pos + len as usize);
                    }
                } else if let Err(r) = w.skip(len) {
                    return r;
                }
                if tag == Tag(0xFFFE, 0xE0DD) {
                    in_fragments = false;
                }
            }
            Step::Undefined { tag, is_sq, un } => {
                if tag == Tag(0x7FE0, 0x0010) {
                    if stop_at_pixel_data && open.is_empty() {
                        return Walk::Ok(Some(at));
                    }
                    in_fragments = true;
                } else if is_sq || tag.group() == 0xFFFE {
                    open.push(usize::MAX);
                } else if un {
                    // An undefined-length UN holds an implicit VR little endian sequence (PS3.5 6.2.2).
                    // Approximation: the rest of the walk stays implicit; lengths are still bounded.
                    w.explicit = false;
                    w.little = true;
                    open.push(usize::MAX);
                } else {
                    // dicom-rs reads any other undefined-length value as fragments.
                    in_fragments = true;
                }
            }
        }
    }
    Walk::Ok(None)
}

enum Step {
    Value { tag: Tag, len: u32, is_sq: bool },
    Undefined { tag: Tag, is_sq: bool, un: bool },
    Stop(Walk),
}

struct Walker<'a> {
    b: &'a [u8],
    total: usize,
    pos: usize,
    explicit: bool,
    little: bool,
    in_meta: bool,
}

impl Walker<'_> {
    fn u16_at(&self, p: usize, little: bool) -> Option<u16> {
        let s = self.b.get(p..p + 2)?;
        Some(if little { u16::from_le_bytes([s[0], s[1]]) } else { u16::from_be_bytes([s[0], s[1]]) })
    }
    fn u32_at(&self, p: usize, little: bool) -> Option<u32> {
        let s = self.b.get(p..p + 4)?;
        let a = [s[0], s[1], s[2], s[3]];
        Some(if little { u32::from_le_bytes(a) } else { u32::from_be_bytes(a) })
    }
    fn peek_group(&self) -> Option<u16> {
        self.u16_at(self.pos, true)
    }

    fn need_more_or_bad_walk(&self) -> Walk {
        if self.b.len() < self.total {
            Walk::NeedMore
        } else {
            Walk::Bad("truncated element header".into())
        }
    }

    fn need_more_or_bad(&self) -> Step {
        Step::Stop(if self.b.len() < self.total {
            Walk::NeedMore
        } else {
            Walk::Bad("truncated element header".into())
        })
    }

    /// Read one element header at `pos` and advance past it (not past its value).
    fn element(&mut self) -> Step {
        let meta = self.in_meta || self.peek_group() == Some(0x0002);
        let little = self.little || meta;
        let explicit = self.explicit || meta;
        let (Some(g), Some(e)) = (self.u16_at(self.pos, little), self.u16_at(self.pos + 2, little)) else {
            return self.need_more_or_bad();
        };
        let tag = Tag(g, e);
        if g == 0xFFFE && !matches!(e, 0xE000 | 0xE00D | 0xE0DD) {
            return Step::Stop(Walk::Bad(format!("invalid item tag {tag} at offset {}", self.pos)));
        }
        let mut un = false;
        let (len, header, vr_sq) = if g == 0xFFFE {
            let Some(l) = self.u32_at(self.pos + 4, little) else { return self.need_more_or_bad() };
            (l, 8, false)
        } else if explicit {
            let Some(vr) = self.b.get(self.pos + 4..self.pos + 6) else { return self.need_more_or_bad() };
            let vr = [vr[0], vr[1]];
            // dicom-rs reads an unknown VR as UN (4-byte length); so does the walk.
            let known = VR::from_binary(vr).is_some();
            un = &vr == b"UN" || !known;
            if LONG_VRS.contains(&&vr) || !known {
                let Some(l) = self.u32_at(self.pos + 8, little) else { return self.need_more_or_bad() };
                (l, 12, &vr == b"SQ")
            } else {
                let Some(l) = self.u16_at(self.pos + 6, little) else { return self.need_more_or_bad() };
                (l as u32, 8, false)
            }
        } else {
            let Some(l) = self.u32_at(self.pos + 4, little) else { return self.need_more_or_bad() };
            let sq =
                matches!(StandardDataDictionary.by_tag(tag).map(|d| d.vr()), Some(VirtualVr::Exact(VR::SQ)));
            (l, 8, sq)
        };
        self.pos += header;
        if len == UNDEFINED {
            Step::Undefined { tag, is_sq: vr_sq || !explicit, un }
        } else {
            Step::Value { tag, len, is_sq: vr_sq }
        }
    }

    fn skip(&mut self, len: u32) -> Result<(), Walk> {
        let len = len as usize;
        if len > self.total.saturating_sub(self.pos) {
            return Err(Walk::Bad(format!(
                "an element claims {len} bytes at offset {}, the file has {} left",
                self.pos,
                self.total.saturating_sub(self.pos)
            )));
        }
        self.pos += len;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn explicit_file(elements: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 128];
        b.extend_from_slice(b"DICM");
        // (0002,0000) UL 28, then (0002,0010) UI "1.2.840.10008.1.2.1\0"
        b.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0, 28, 0, 0, 0]);
        b.extend_from_slice(&[0x02, 0x00, 0x10, 0x00, b'U', b'I', 20, 0]);
        b.extend_from_slice(b"1.2.840.10008.1.2.1\0");
        b.extend_from_slice(elements);
        b
    }

    #[test]
    fn consistent_lengths_pass_and_huge_ones_fail() {
        // (0008,0060) CS "CT"
        let ok = explicit_file(&[0x08, 0x00, 0x60, 0x00, b'C', b'S', 2, 0, b'C', b'T']);
        assert_eq!(walk(&ok, ok.len(), false), Walk::Ok(None));
        // (7FE0,0010) OW with 1 GB declared length
        let bad = explicit_file(&[0xE0, 0x7F, 0x10, 0x00, b'O', b'W', 0, 0, 0, 0, 0, 0x40, 1, 2]);
        assert!(matches!(walk(&bad, bad.len(), false), Walk::Bad(_)));
        // A prefix of a longer file asks for more rather than guessing.
        assert_eq!(walk(&ok[..140], ok.len(), true), Walk::NeedMore);
    }
}
