//! The shared port contracts, run against the in-process implementations.

use hearth_domain::contract::documents::documents_contract;
use hearth_domain::contract::live::live_contract;
use hearth_domain::contract::readings::readings_contract;
use hearth_inproc::bus::InProcessBus;
use hearth_inproc::documents::MemoryDocuments;
use hearth_inproc::readings::MemoryReadings;

#[tokio::test]
async fn memory_documents_pass_the_documents_contract() {
    documents_contract(&MemoryDocuments::new()).await;
}

#[tokio::test]
async fn memory_readings_pass_the_readings_contract() {
    readings_contract(&MemoryReadings::new()).await;
}

#[tokio::test]
async fn in_process_bus_passes_the_live_contract() {
    live_contract(&InProcessBus::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_bus_passes_the_live_contract_on_a_multi_threaded_runtime() {
    live_contract(&InProcessBus::new()).await;
}
