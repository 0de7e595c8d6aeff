use super::*;
use serde::de::DeserializeOwned;

fn accepted<T: DeserializeOwned>() -> Vec<String> {
    let err = match toml::from_str::<T>("zz_not_a_key = 1") {
        Err(e) => e.message().to_string(),
        Ok(_) => panic!("an unknown key was accepted"),
    };
    let expected = err
        .split_once("expected")
        .unwrap_or_else(|| panic!("{err}"))
        .1;
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

fn doc() -> String {
    let root = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    std::fs::read_to_string(root.join("../docs/config-reference.md")).unwrap()
}

#[test]
fn every_table_key_is_documented_and_every_documented_key_exists() {
    let doc = doc();
    let mut code: Vec<String> = Vec::new();
    for top in accepted::<Job>() {
        let keys = match top.as_str() {
            "kafka" => accepted::<KafkaConfig>(),
            "source" => accepted::<SourceConfig>(),
            "sink" => accepted::<SinkConfig>(),
            "state" => accepted::<StateConfig>(),
            "processing" => accepted::<ProcessingConfig>(),
            "runtime" => accepted::<RuntimeSection>(),
            "pipeline" => {
                code.push("[[pipeline]]".into());
                continue;
            }
            _ => {
                code.push(top.clone());
                continue;
            }
        };
        code.extend(keys.into_iter().map(|k| format!("{top}.{k}")));
    }
    for key in &code {
        assert!(
            doc.contains(&format!("| `{key}` |")),
            "docs/config-reference.md has no row for `{key}`"
        );
    }
    for line in doc.lines().filter(|l| l.starts_with("| `")) {
        let key = line.split('`').nth(1).unwrap();
        assert!(
            code.iter().any(|k| k == key),
            "docs/config-reference.md documents `{key}`, which the schema does not accept"
        );
    }
}

#[test]
fn every_operator_and_its_keys_are_documented() {
    let doc = doc();
    let section = doc
        .split("## Operators")
        .nth(1)
        .expect("an Operators section");
    for op in accepted::<Operator>() {
        let start = section
            .find(&format!("\n- `{op} = "))
            .unwrap_or_else(|| panic!("operator `{op}` is not documented"));
        let rest = &section[start + 1..];
        let entry = &rest[..rest[1..].find("\n- ").map_or(rest.len(), |e| e + 1)];
        let keys = match op.as_str() {
            "filter" => accepted::<FilterOp>(),
            "map" => accepted::<MapOp>(),
            "key_by" => accepted::<KeyByOp>(),
            "window" => accepted::<WindowOp>(),
            "aggregate" => accepted::<AggregateOp>(),
            "stamp" => accepted::<StampOp>(),
            // A list of field names: no keys.
            "select" => Vec::new(),
            other => panic!("operator `{other}` is new: teach this test its keys"),
        };
        for key in keys {
            assert!(
                entry.contains(&format!("{key} = ")),
                "operator `{op}`: key `{key}` is not documented"
            );
        }
    }
}
