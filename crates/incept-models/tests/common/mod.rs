//! Helpers shared by the integration tests.

/// Reads the `name<TAB>dims<TAB>dtype` lines of a key list that
/// tools/make_fixtures.py wrote under tests/fixtures.
pub fn torchvision_keys(file: &str) -> Vec<(String, Vec<usize>, String)> {
    let path = format!("{}/../../tests/fixtures/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            let dims = fields[1].split(',').filter(|d| !d.is_empty()).map(|d| d.parse().unwrap()).collect();
            (fields[0].to_string(), dims, fields[2].to_string())
        })
        .collect()
}
