//! Modbus TCP field layer: the [`FieldGateway`](hearth_domain::ports::FieldGateway)
//! adapter, the poller that feeds the ingest use cases, the built-in ECL
//! Comfort 310 profile, and simulated controllers for the demo and tests.

pub mod blocks;
pub mod gateway;
pub mod poller;
pub mod profile;
pub mod simulator;

pub use gateway::{GatewayConfig, ModbusGateway};
pub use poller::{DevicePoller, Poller, PollerConfig, PollerError, PollerHandle};
pub use profile::{ecl_comfort_310, ECL_COMFORT_310};
pub use simulator::{DeviceHandle, Fault, SimulatedDevice, Simulator};
