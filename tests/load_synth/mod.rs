//! Synthetic CT DICOM objects for loader tests and the loading benchmark, built with dicom-object's
//! in-memory API (explicit VR little endian, uncompressed).
#![allow(dead_code)]

use dicom_core::value::{DataSetSequence, C};
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileDicomObject, FileMetaTableBuilder, InMemDicomObject};
use std::path::Path;

pub const CT_IMAGE: &str = "1.2.840.10008.5.1.4.1.1.2";
pub const ENHANCED_CT: &str = "1.2.840.10008.5.1.4.1.1.2.1";
pub const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";

/// One classic single-frame CT slice.
#[derive(Clone, Debug)]
pub struct Slice {
    pub series_uid: String,
    pub description: String,
    pub modality: String,
    pub instance: i32,
    pub position: [f64; 3],
    pub iop: [f64; 6],
    pub pixel_spacing: [f64; 2],
    pub rows: u16,
    pub cols: u16,
    /// Stored values, row-major.
    pub pixels: Vec<i16>,
    pub slope: f64,
    pub intercept: f64,
    pub padding: Option<i16>,
    pub image_type: String,
    pub slice_thickness: Option<f64>,
}

/// Stored value of pixel (r, c) on a slice at height `z`: the slice mean identifies the slice.
pub fn pattern(z: f64, r: usize, c: usize) -> i16 {
    (z.round() as i64 * 10 + ((r * 7 + c * 3) % 50) as i64) as i16
}

impl Slice {
    /// Axial HFS slice at height `z` mm, `n` x `n` pixels of 0.5 mm, HU = stored - 1024.
    pub fn axial(series_uid: &str, z: f64, n: u16) -> Slice {
        let pixels = (0..n as usize).flat_map(|r| (0..n as usize).map(move |c| pattern(z, r, c))).collect();
        Slice {
            series_uid: series_uid.into(),
            description: "synthetic".into(),
            modality: "CT".into(),
            instance: 1,
            position: [-10.0, -20.0, z],
            iop: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            pixel_spacing: [0.5, 0.5],
            rows: n,
            cols: n,
            pixels,
            slope: 1.0,
            intercept: -1024.0,
            padding: None,
            image_type: "ORIGINAL\\PRIMARY\\AXIAL".into(),
            slice_thickness: Some(2.0),
        }
    }

    pub fn dataset(&self) -> InMemDicomObject {
        let mut o = InMemDicomObject::new_empty();
        o.put(DataElement::new(tags::SOP_CLASS_UID, VR::UI, PrimitiveValue::from(CT_IMAGE)));
        o.put(DataElement::new(
            tags::SOP_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from(format!("{}.{}", self.series_uid, self.instance + 1000)),
        ));
        o.put(DataElement::new(tags::MODALITY, VR::CS, PrimitiveValue::from(self.modality.as_str())));
        o.put(DataElement::new(tags::IMAGE_TYPE, VR::CS, PrimitiveValue::from(self.image_type.as_str())));
        o.put(DataElement::new(
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from(self.series_uid.as_str()),
        ));
        o.put(DataElement::new(tags::STUDY_INSTANCE_UID, VR::UI, PrimitiveValue::from("1.2.3.4")));
        o.put(DataElement::new(
            tags::SERIES_DESCRIPTION,
            VR::LO,
            PrimitiveValue::from(self.description.as_str()),
        ));
        o.put(DataElement::new(tags::PATIENT_POSITION, VR::CS, PrimitiveValue::from("HFS")));
        o.put(DataElement::new(
            tags::INSTANCE_NUMBER,
            VR::IS,
            PrimitiveValue::from(self.instance.to_string()),
        ));
        if let Some(t) = self.slice_thickness {
            o.put(DataElement::new(tags::SLICE_THICKNESS, VR::DS, PrimitiveValue::from(t.to_string())));
        }
        o.put(ds(tags::IMAGE_POSITION_PATIENT, &self.position));
        o.put(ds(tags::IMAGE_ORIENTATION_PATIENT, &self.iop));
        o.put(ds(tags::PIXEL_SPACING, &self.pixel_spacing));
        o.put(DataElement::new(tags::RESCALE_SLOPE, VR::DS, PrimitiveValue::from(self.slope.to_string())));
        o.put(DataElement::new(
            tags::RESCALE_INTERCEPT,
            VR::DS,
            PrimitiveValue::from(self.intercept.to_string()),
        ));
        if let Some(p) = self.padding {
            o.put(DataElement::new(tags::PIXEL_PADDING_VALUE, VR::SS, PrimitiveValue::from(p)));
        }
        image_pixel(&mut o, self.rows, self.cols, 1, self.pixels.clone());
        o
    }

    pub fn object(&self) -> FileDicomObject<InMemDicomObject> {
        with_meta(self.dataset(), CT_IMAGE)
    }

    pub fn write(&self, path: &Path) {
        self.object().write_to_file(path).expect("write synthetic slice");
    }
}

/// Image pixel module for signed 16-bit monochrome frames.
pub fn image_pixel(o: &mut InMemDicomObject, rows: u16, cols: u16, frames: u32, pixels: Vec<i16>) {
    o.put(DataElement::new(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1_u16)));
    o.put(DataElement::new(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, PrimitiveValue::from("MONOCHROME2")));
    o.put(DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(rows)));
    o.put(DataElement::new(tags::COLUMNS, VR::US, PrimitiveValue::from(cols)));
    if frames > 1 {
        o.put(DataElement::new(tags::NUMBER_OF_FRAMES, VR::IS, PrimitiveValue::from(frames.to_string())));
    }
    o.put(DataElement::new(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(16_u16)));
    o.put(DataElement::new(tags::BITS_STORED, VR::US, PrimitiveValue::from(16_u16)));
    o.put(DataElement::new(tags::HIGH_BIT, VR::US, PrimitiveValue::from(15_u16)));
    o.put(DataElement::new(tags::PIXEL_REPRESENTATION, VR::US, PrimitiveValue::from(1_u16)));
    o.put(DataElement::new(tags::PIXEL_DATA, VR::OW, PrimitiveValue::I16(C::from_vec(pixels))));
}

pub fn ds(tag: dicom_core::Tag, v: &[f64]) -> DataElement<InMemDicomObject> {
    let strs: Vec<String> = v.iter().map(|x| format!("{x}")).collect();
    DataElement::new(tag, VR::DS, PrimitiveValue::Strs(C::from_vec(strs)))
}

pub fn seq(tag: dicom_core::Tag, items: Vec<InMemDicomObject>) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::SQ, DataSetSequence::from(items))
}

pub fn item(elems: Vec<DataElement<InMemDicomObject>>) -> InMemDicomObject {
    InMemDicomObject::from_element_iter(elems)
}

pub fn with_meta(o: InMemDicomObject, sop_class: &str) -> FileDicomObject<InMemDicomObject> {
    o.with_meta(
        FileMetaTableBuilder::new().transfer_syntax(EXPLICIT_LE).media_storage_sop_class_uid(sop_class),
    )
    .expect("meta table")
}

pub fn to_bytes(obj: &FileDicomObject<InMemDicomObject>) -> Vec<u8> {
    let mut out = Vec::new();
    obj.write_all(&mut out).expect("serialise");
    out
}

/// An Enhanced CT object: frames at `zs` (in the given, possibly unsorted, order), orientation and pixel
/// measures shared, per-frame rescale intercept `intercepts[k]`, per-frame positions.
pub fn enhanced_ct(
    series_uid: &str,
    zs: &[f64],
    intercepts: &[f64],
    n: u16,
) -> FileDicomObject<InMemDicomObject> {
    let mut o = InMemDicomObject::new_empty();
    o.put(DataElement::new(tags::SOP_CLASS_UID, VR::UI, PrimitiveValue::from(ENHANCED_CT)));
    o.put(DataElement::new(tags::SOP_INSTANCE_UID, VR::UI, PrimitiveValue::from(format!("{series_uid}.1"))));
    o.put(DataElement::new(tags::MODALITY, VR::CS, PrimitiveValue::from("CT")));
    o.put(DataElement::new(tags::SERIES_INSTANCE_UID, VR::UI, PrimitiveValue::from(series_uid)));
    o.put(DataElement::new(tags::SERIES_DESCRIPTION, VR::LO, PrimitiveValue::from("enhanced L2")));
    let shared = item(vec![
        seq(
            tags::PLANE_ORIENTATION_SEQUENCE,
            vec![item(vec![ds(tags::IMAGE_ORIENTATION_PATIENT, &[1.0, 0.0, 0.0, 0.0, 1.0, 0.0])])],
        ),
        seq(
            tags::PIXEL_MEASURES_SEQUENCE,
            vec![item(vec![ds(tags::PIXEL_SPACING, &[0.7, 0.8]), ds(tags::SLICE_THICKNESS, &[1.5])])],
        ),
    ]);
    o.put(seq(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE, vec![shared]));
    let per_frame = zs
        .iter()
        .zip(intercepts)
        .map(|(z, b)| {
            item(vec![
                seq(
                    tags::PLANE_POSITION_SEQUENCE,
                    vec![item(vec![ds(tags::IMAGE_POSITION_PATIENT, &[5.0, 6.0, *z])])],
                ),
                seq(
                    tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE,
                    vec![item(vec![ds(tags::RESCALE_INTERCEPT, &[*b]), ds(tags::RESCALE_SLOPE, &[1.0])])],
                ),
            ])
        })
        .collect();
    o.put(seq(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE, per_frame));
    let pixels: Vec<i16> = zs
        .iter()
        .flat_map(|z| (0..n as usize).flat_map(move |r| (0..n as usize).map(move |c| pattern(*z, r, c))))
        .collect();
    image_pixel(&mut o, n, n, zs.len() as u32, pixels);
    with_meta(o, ENHANCED_CT)
}
