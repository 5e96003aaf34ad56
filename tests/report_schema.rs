//! Reports validate against the project's copy of the schema, and that copy keeps the shared contract.

use cementleak::alert::{decide, AlertPolicy, LeakObservation};
use cementleak::leaks::Site;
use cementleak::load::{Scan, SeriesInfo};
use cementleak::report::*;
use cementleak::volume::{Geometry, Lps, Spacing, Volume};
use std::collections::BTreeMap;

mod common;

fn schema() -> serde_json::Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema/report.schema.json"))
        .expect("schema/report.schema.json readable");
    serde_json::from_str(&text).expect("schema is JSON")
}

fn validate(report: &serde_json::Value) -> Vec<String> {
    let validator = jsonschema::validator_for(&schema()).map_err(|e| e.to_string());
    match validator {
        Ok(v) => v.iter_errors(report).map(|e| format!("{} at {}", e, e.instance_path)).collect(),
        Err(e) => vec![format!("schema does not compile: {e}")],
    }
}

fn sample_report() -> Report {
    let vol = Volume::new(
        ndarray::Array3::<i16>::zeros((4, 5, 6)),
        Geometry::axial_hfs(Lps([0.0; 3]), Spacing { slice: 2.0, row: 0.5, column: 0.5 }),
    );
    let scan = Scan {
        volume: vol,
        info: SeriesInfo { path: "x".into(), series_instance_uid: "1.2.3".into(), ..Default::default() },
        warnings: vec![],
    };
    let obs = [LeakObservation {
        id: 1,
        site: Site::Canal,
        foraminal: true,
        volume_ml: 0.12,
        new: Some(true),
        grew_ml: None,
    }];
    Report {
        schema: SCHEMA_ID,
        generator: Generator::this(None),
        input: Inputs { scan: SeriesRef::of(&scan), baseline: None, previous: Some(SeriesRef::of(&scan)) },
        vertebra: VertebraReport {
            found: true,
            level: Some("L2".into()),
            centroid_lps_mm: Some(Lps([1.0, 2.0, 3.0])),
            body_volume_ml: Some(30.5),
            posterior_wall_intact: Some(true),
        },
        cement: CementReport {
            total_volume_ml: 3.1,
            intravertebral_volume_ml: 2.98,
            new_volume_ml: Some(1.0),
            posterior_wall_distance_mm: Some(4.0),
            fill_fraction: Some(0.1),
        },
        leaks: vec![LeakReport {
            id: 1,
            site: Site::Canal,
            foraminal: true,
            volume_ml: 0.12,
            centroid_lps_mm: Lps([0.0, 30.0, 1.0]),
            max_hu: 2400.0,
            new: Some(true),
            grew_ml: None,
            confidence: 0.9,
            model_site: Some("canal".into()),
            model_probabilities: Some(BTreeMap::from([("canal".to_string(), 0.9)])),
            rule_site: Some("canal".into()),
            review: false,
        }],
        alert: decide(&AlertPolicy::default(), &obs, Some(4.0)),
        timing_ms: BTreeMap::from([("total".to_string(), 12.0)]),
        warnings: vec![],
    }
}

#[test]
fn sample_report_validates() {
    let json = serde_json::to_value(sample_report()).expect("serialisable");
    let errors = validate(&json);
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(json["alert"]["level"], "stop");
}

#[test]
fn schema_rejects_what_the_contract_forbids() {
    let mut json = serde_json::to_value(sample_report()).expect("serialisable");
    json["leaks"][0]["site"] = "lung".into();
    assert!(!validate(&json).is_empty());
    let mut json = serde_json::to_value(sample_report()).expect("serialisable");
    json.as_object_mut().map(|o| o.remove("alert"));
    assert!(!validate(&json).is_empty());
}

#[test]
fn project_schema_keeps_the_shared_contract() {
    let Some(shared) = common::shared_data("../spec/report.schema.json") else { return };
    let shared: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(shared).expect("readable")).expect("JSON");
    let ours = schema();
    // Everything required there is required here, with the same enums.
    assert_eq!(ours["required"], shared["required"]);
    assert_eq!(
        ours["properties"]["leaks"]["items"]["properties"]["site"],
        shared["properties"]["leaks"]["items"]["properties"]["site"]
    );
    assert_eq!(ours["properties"]["alert"], shared["properties"]["alert"]);
}

#[test]
fn atomic_write_leaves_no_partial_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("report.json");
    write_json_atomically(&sample_report(), &path).expect("written");
    let names: Vec<_> =
        std::fs::read_dir(dir.path()).into_iter().flatten().flatten().map(|e| e.file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("report.json")]);
    let back: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("readable")).expect("JSON");
    assert_eq!(back["schema"], SCHEMA_ID);
}
