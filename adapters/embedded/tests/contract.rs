//! The shared port contracts, run against the embedded redb stores.

use hearth_domain::contract::documents::documents_contract;
use hearth_domain::contract::readings::readings_contract;
use hearth_embedded::{EmbeddedDocuments, EmbeddedReadings};

#[tokio::test]
async fn embedded_documents_pass_the_documents_contract() {
    let dir = tempfile::tempdir().expect("a temporary data directory");
    let store = EmbeddedDocuments::open(dir.path()).expect("open documents.redb");
    documents_contract(&store).await;
}

#[tokio::test]
async fn embedded_readings_pass_the_readings_contract() {
    let dir = tempfile::tempdir().expect("a temporary data directory");
    let store = EmbeddedReadings::open(dir.path()).expect("open readings.redb");
    readings_contract(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_readings_pass_the_readings_contract_on_a_multi_threaded_runtime() {
    let dir = tempfile::tempdir().expect("a temporary data directory");
    let store = EmbeddedReadings::open(dir.path()).expect("open readings.redb");
    readings_contract(&store).await;
}
