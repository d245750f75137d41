//! Modbus TCP field layer: the [`FieldGateway`](hearth_domain::ports::FieldGateway)
//! adapter (points in, values out; register maps, word order, scaling and
//! exception codes stay here), its planned reader, the built-in ECL Comfort
//! 310 profile, and simulated controllers for the demo and tests.

pub mod blocks;
pub mod gateway;
pub mod point;
pub mod profile;
pub mod reader;
pub mod simulator;

pub use gateway::{exception_code, refusal, GatewayConfig, ModbusGateway};
pub use point::{DataType, ModbusPoint, RegisterKind, Scale, WordOrder};
pub use profile::{ecl_comfort_310, ECL_COMFORT_310};
pub use reader::ModbusReader;
pub use simulator::{DeviceHandle, Fault, SimulatedDevice, Simulator};
