//! Catalog contract and blocking.

use crate::common::*;
use sluice_source_lever::catalog::{DESTINATION_SCHEMA_JSON, catalog};
use sluice_testkit::MemoryDestination;

#[test]
fn catalog_matches_the_destination_schema_exactly() {
    let schema: serde_json::Value = serde_json::from_str(DESTINATION_SCHEMA_JSON).unwrap();
    let tables = schema["tables"].as_array().unwrap();
    let cat = catalog();
    assert_eq!(cat.len(), tables.len());
    assert_eq!(cat.len(), 46);
    for (t, spec) in tables.iter().zip(cat) {
        assert_eq!(t["name"], spec.name.as_str());
        let pk: Vec<String> = serde_json::from_value(t["primary_key"].clone()).unwrap();
        assert_eq!(pk, spec.primary_key, "{}", spec.name);
        let cd = t["capture_deletes"].as_bool().unwrap() || spec.name == "opportunity";
        assert_eq!(cd, spec.capture_deletes, "{}", spec.name);
        assert_eq!(
            t["history_mode"].as_bool().unwrap(),
            spec.history_default,
            "{}",
            spec.name
        );
        let cols: Vec<(String, String)> = t["columns"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| {
                c["origin"] != "legacy" && (c["origin"] != "system" || c["name"] == "_fivetran_id")
            })
            .map(|c| {
                (
                    c["name"].as_str().unwrap().to_owned(),
                    c["type"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let mine: Vec<(String, String)> = spec
            .columns
            .iter()
            .map(|c| {
                let ty = match c.ty {
                    sluice_core::ColumnType::String => "STRING",
                    sluice_core::ColumnType::Boolean => "BOOLEAN",
                    sluice_core::ColumnType::Int64 => "INT",
                    sluice_core::ColumnType::Float64 => "DOUBLE",
                    sluice_core::ColumnType::Timestamp => "TIMESTAMP",
                    sluice_core::ColumnType::Json => "JSON",
                };
                (c.name.clone(), ty.to_owned())
            })
            .collect();
        assert_eq!(mine, cols, "{}", spec.name);
        // System columns the engine adds match the schema's list.
        let mut sys: Vec<String> = t["columns"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["origin"] == "system" && c["name"] != "_fivetran_id")
            .filter(|c| spec.history || !c["history_mode_only"].as_bool().unwrap_or(false))
            .map(|c| c["name"].as_str().unwrap().to_owned())
            .collect();
        if spec.name == "opportunity" {
            sys.push("_fivetran_deleted".into()); // the lead's deliberate deviation
        }
        let engine: Vec<String> = spec.system_columns().into_iter().map(|c| c.name).collect();
        let (mut a, mut b) = (sys.clone(), engine.clone());
        a.sort();
        b.sort();
        assert_eq!(a, b, "{} system columns", spec.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_tables_cost_zero_requests() {
    let env = Env::start(30).await;
    let dest = MemoryDestination::new("lever");
    let options = at(1_000).with_settings(only(&["opportunity", "note", "note_field", "stage"]));
    sync(&env.config(), &dest, options).await.unwrap();
    let c = env.emu.counters();
    let hit: Vec<&String> = c.by_endpoint.keys().collect();
    for k in &hit {
        assert!(
            [
                "GET /opportunities",
                "GET /opportunities/:id/notes",
                "GET /stages",
                "GET /opportunities/deleted"
            ]
            .contains(&k.as_str()),
            "blocked endpoint requested: {k} ({hit:?})"
        );
    }
    assert_eq!(c.endpoint("GET /opportunities/:id/notes").requests, 30);
    let mut names = dest.table_names();
    names.sort();
    assert_eq!(names, ["note", "note_field", "opportunity", "stage"]);
    // Only a grand-child enabled: its endpoint is still read, nothing else.
    let dest = MemoryDestination::new("lever");
    env.emu.reset_counters();
    let options = at(1_000).with_settings(only(&["interview_user"]));
    sync(&env.config(), &dest, options).await.unwrap();
    let c = env.emu.counters();
    assert_eq!(c.endpoint("GET /opportunities/:id/feedback").requests, 0);
    assert_eq!(c.endpoint("GET /opportunities/:id/interviews").requests, 30);
    assert_eq!(c.endpoint("GET /users").requests, 0);
    assert!(!dest.committed_rows("interview_user").is_empty());
}
