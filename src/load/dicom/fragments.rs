//! Encapsulated PixelData -> one encoded byte stream per frame.
//!
//! DICOM lets a writer split each frame over several fragments and leave the Basic Offset Table empty
//! (PS3.5 A.4). dicom-rs's `frame_pixel_data` then gives frame 0 all fragments and cannot find frame 1, so
//! frames are found here: one fragment per frame when the counts match; else the Basic Offset Table when it
//! has one entry per frame; else a new frame starts at each fragment that begins with the JPEG/JPEG-LS
//! start-of-image marker (FF D8), which every JPEG-family frame begins with (PS3.5 A.4.1); a single frame
//! takes all fragments.

use std::borrow::Cow;

/// JPEG / JPEG-LS start-of-image marker.
const SOI: [u8; 2] = [0xFF, 0xD8];

/// The encoded bytes of each of `frames` frames, borrowed when a frame is one fragment.
pub fn split<'a>(
    fragments: &'a [Vec<u8>],
    offsets: &[u32],
    frames: usize,
) -> Result<Vec<Cow<'a, [u8]>>, String> {
    if frames == 0 {
        return Err("the image has no frames".into());
    }
    if fragments.len() == frames {
        return Ok(fragments.iter().map(|f| Cow::Borrowed(f.as_slice())).collect());
    }
    if fragments.len() < frames {
        return Err(format!("{} pixel data fragment(s) for {frames} frames", fragments.len()));
    }
    if frames == 1 {
        return Ok(vec![Cow::Owned(fragments.concat())]);
    }
    let starts = if offsets.len() == frames {
        starts_from_offsets(fragments, offsets)?
    } else {
        let s: Vec<usize> = (0..fragments.len()).filter(|&i| fragments[i].starts_with(&SOI)).collect();
        if s.len() != frames || s.first() != Some(&0) {
            return Err(format!(
                "no Basic Offset Table, and {} of {} fragments start a JPEG image for {frames} frames",
                s.len(),
                fragments.len()
            ));
        }
        s
    };
    Ok(starts
        .iter()
        .zip(starts.iter().skip(1).copied().chain([fragments.len()]))
        .map(|(&a, b)| match b - a {
            1 => Cow::Borrowed(fragments[a].as_slice()),
            _ => Cow::Owned(fragments[a..b].concat()),
        })
        .collect())
}

/// First fragment index of each frame from the Basic Offset Table: byte offsets from the first fragment's
/// item tag, each fragment taking its length plus an 8-byte item header.
fn starts_from_offsets(fragments: &[Vec<u8>], offsets: &[u32]) -> Result<Vec<usize>, String> {
    let mut at = Vec::with_capacity(fragments.len());
    let mut pos = 0u64;
    for f in fragments {
        at.push(pos);
        pos += f.len() as u64 + 8;
    }
    let mut starts = Vec::with_capacity(offsets.len());
    for &o in offsets {
        match at.binary_search(&(o as u64)) {
            Ok(i) if starts.last().is_none_or(|&prev| i > prev) => starts.push(i),
            _ => return Err(format!("Basic Offset Table entry {o} is not at the start of a later fragment")),
        }
    }
    if starts.first() != Some(&0) {
        return Err("Basic Offset Table does not start at the first fragment".into());
    }
    Ok(starts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frag(first: u8, len: usize) -> Vec<u8> {
        let mut v = vec![first; len];
        if first == 0xFF {
            v[1] = 0xD8;
        }
        v
    }

    #[test]
    fn one_fragment_per_frame_is_borrowed() {
        let f = vec![frag(0xFF, 4), frag(0xFF, 6)];
        let s = split(&f, &[], 2).unwrap();
        assert!(matches!(s[0], Cow::Borrowed(_)));
        assert_eq!(s[1].len(), 6);
    }

    #[test]
    fn no_offset_table_splits_at_start_of_image() {
        let f = vec![frag(0xFF, 4), frag(1, 3), frag(2, 2), frag(0xFF, 5), frag(3, 1)];
        let s = split(&f, &[], 2).unwrap();
        assert_eq!(s.iter().map(|c| c.len()).collect::<Vec<_>>(), vec![9, 6]);
        assert_eq!(&s[1][..2], &SOI);
    }

    #[test]
    fn offset_table_groups_fragments() {
        // Fragments of 4, 3, 2 bytes: items at 0, 12, 23.
        let f = vec![frag(0xFF, 4), frag(1, 3), frag(2, 2)];
        let s = split(&f, &[0, 23], 2).unwrap();
        assert_eq!(s.iter().map(|c| c.len()).collect::<Vec<_>>(), vec![7, 2]);
        assert!(split(&f, &[0, 22], 2).is_err());
        assert!(split(&f, &[12, 23], 2).is_err());
        assert!(split(&f, &[23, 0], 2).is_err());
    }

    #[test]
    fn inconsistent_counts_are_errors() {
        let f = vec![frag(0xFF, 4), frag(1, 3), frag(2, 2)];
        assert!(split(&f, &[], 2).is_err(), "one SOI for two frames");
        assert!(split(&f, &[], 4).is_err());
        assert!(split(&f, &[], 0).is_err());
        assert_eq!(split(&f, &[], 1).unwrap()[0].len(), 9);
    }
}
