//! `openapi.yaml` must be exactly the document generated from the routes the service serves.
//! Run with `UPDATE_OPENAPI=1` to rewrite the file after changing the API on purpose.

#[test]
fn openapi_yaml_matches_the_routes() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi.yaml");
    let generated = index_service::openapi()
        .to_yaml()
        .expect("render OpenAPI as YAML");
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi.yaml is out of date with the code; run `UPDATE_OPENAPI=1 cargo test -p index-service --test openapi` and review the diff"
    );
}

/// Every API operation that takes client input documents its 4xx and 500 answers
/// (health checks take none).
#[test]
fn every_operation_documents_its_errors() {
    let doc = index_service::openapi();
    for (path, item) in &doc.paths.paths {
        let operations = [&item.get, &item.post, &item.put, &item.delete];
        for operation in operations.into_iter().flatten() {
            let tags = operation.tags.clone().unwrap_or_default();
            if tags.iter().any(|t| t == "operations") {
                continue;
            }
            let codes: Vec<&String> = operation.responses.responses.keys().collect();
            assert!(
                codes.iter().any(|c| c.starts_with('4')),
                "{path}: no 4xx documented"
            );
            assert!(
                codes.iter().any(|c| c.as_str() == "500"),
                "{path}: no 500 documented"
            );
        }
    }
}
