//! docs/configuration.md stays true: every setting, env name and the reference table are in it.

use std::path::Path;

fn docs() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn every_setting_and_env_name_is_documented() {
    let text = docs();
    for key in tuning::setting_keys() {
        assert!(text.contains(&format!("| `{key}` |")), "no row for {key}");
        for name in tuning::env_names(key) {
            assert!(text.contains(&format!("`{name}`")), "{name} undocumented");
        }
    }
}

#[test]
fn reference_table_is_current() {
    let table = tuning::recommend::reference_table_markdown();
    assert!(
        docs().contains(&table),
        "regenerate with `cargo run -p tuning --example reference_table`:\n{table}"
    );
}

#[test]
fn every_catalog_instance_is_documented() {
    let text = docs();
    for instance in tuning::catalog::INSTANCES {
        let (_, size) = instance.name.split_once('.').unwrap();
        assert!(text.contains(&format!("| {size} |")), "{}", instance.name);
        assert!(
            text.contains(&format!("{} / {}", instance.vcpus, instance.memory_gib)),
            "{}",
            instance.name
        );
    }
}

/// The `cleanup_interval` row says what each engine does with it: the
/// threaded engine sweeps at that period, the async engine times every
/// connection exactly and does not use it (serve-async's crate docs).
#[test]
fn cleanup_interval_row_tells_the_engines_apart() {
    let text = docs();
    let row = text
        .lines()
        .find(|l| l.starts_with("| `cleanup_interval` |"))
        .expect("a cleanup_interval row");
    assert!(!row.contains("both engines"), "{row}");
    assert!(
        row.contains("Threaded engine: how often its sweeper"),
        "{row}"
    );
    assert!(row.contains("Async engine: unused"), "{row}");
}
