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

#[tokio::test]
async fn memory_alarm_rules_pass_the_alarm_rules_contract() {
    hearth_domain::contract::alarm_rules::alarm_rules_contract(
        &hearth_inproc::alarms::MemoryAlarmRules::new(),
    )
    .await;
}

#[tokio::test]
async fn memory_alarms_pass_the_alarms_contract() {
    hearth_domain::contract::alarms::alarms_contract(&hearth_inproc::alarms::MemoryAlarms::new())
        .await;
}

#[tokio::test]
async fn alarm_events_route_per_device_and_are_no_latest_state() {
    use futures::StreamExt;
    use hearth_domain::model::AlarmTransition;
    use hearth_domain::ports::{AlarmEvent, Delivery, LiveBus, LiveEvent};
    use hearth_domain::{AlarmRuleId, DeviceId, TenantId};

    // Given a bus with a subscriber of one device and one of another
    let bus = InProcessBus::new();
    let tenant = TenantId::new();
    let (watched, other) = (DeviceId::new(), DeviceId::new());
    let mut of_watched = bus.subscribe_devices(tenant, &[watched]);
    let mut of_other = bus.subscribe_devices(tenant, &[other]);
    let alarm =
        hearth_domain::contract::alarms::raised(tenant, AlarmRuleId::new(), watched, None, 0);
    let event = LiveEvent::Alarm(AlarmEvent {
        transition: AlarmTransition::Raised,
        alarm: std::sync::Arc::new(alarm),
    });
    // When an alarm of the watched device is published, then a marker for the other
    bus.publish(event.clone());
    let marker = LiveEvent::Status(hearth_domain::ports::DeviceStatus {
        tenant_id: tenant,
        device_id: other,
        online: true,
        at: chrono::Utc::now(),
    });
    bus.publish(marker.clone());
    // Then the watched device's subscriber gets the alarm, the other only its marker
    assert_eq!(of_watched.next().await, Some(Delivery::Event(event)));
    assert_eq!(of_other.next().await, Some(Delivery::Event(marker)));
    // And the alarm left no latest state behind
    assert!(bus.status(tenant, watched).is_none());
    assert!(bus.latest(tenant, watched).is_empty());
}
