//! Simulated ECL-Comfort-like controllers speaking real Modbus TCP, for the
//! demo and for tests: each has its own listener, plant model and faults.

pub mod plant;
mod server;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use plant::{PlantState, WallClock};
pub use server::{DeviceHandle, Fault};

use server::DeviceState;

/// The unit address every simulated controller answers (the ECL default).
pub const SIMULATED_UNIT: u8 = 1;

/// One running simulated controller.
#[derive(Debug, Clone)]
pub struct SimulatedDevice {
    /// Where it listens (with the real port when started on port 0).
    pub addr: SocketAddr,
    pub handle: DeviceHandle,
}

/// A set of simulated controllers. Dropping it stops them and closes their
/// connections.
#[derive(Debug)]
pub struct Simulator {
    devices: Vec<SimulatedDevice>,
    tasks: Vec<JoinHandle<()>>,
}

impl Simulator {
    /// Starts `count` controllers on `host`, device `i` on `base_port + i`,
    /// or each on an ephemeral port when `base_port` is 0. Fails if any port
    /// cannot be bound (nothing is left running then).
    pub async fn start(count: usize, base_port: u16, host: IpAddr) -> Result<Simulator, io::Error> {
        let mut listeners = Vec::with_capacity(count);
        for i in 0..count {
            let port = if base_port == 0 {
                0
            } else {
                u16::try_from(i)
                    .ok()
                    .and_then(|i| base_port.checked_add(i))
                    .ok_or_else(|| {
                        io::Error::new(
                            io::ErrorKind::InvalidInput,
                            "simulator ports run past 65535",
                        )
                    })?
            };
            listeners.push(TcpListener::bind(SocketAddr::new(host, port)).await?);
        }
        let mut simulator = Simulator {
            devices: Vec::with_capacity(count),
            tasks: Vec::with_capacity(count),
        };
        for (seed, listener) in listeners.into_iter().enumerate() {
            let addr = listener.local_addr()?;
            let state = Arc::new(DeviceState::new(SIMULATED_UNIT, seed));
            simulator.tasks.push(server::serve(listener, state.clone()));
            simulator.devices.push(SimulatedDevice {
                addr,
                handle: DeviceHandle { state },
            });
        }
        tracing::info!(count, host = %host, "Simulated controllers listening.");
        Ok(simulator)
    }

    pub fn devices(&self) -> &[SimulatedDevice] {
        &self.devices
    }

    pub fn device(&self, index: usize) -> Option<&SimulatedDevice> {
        self.devices.get(index)
    }

    pub fn addr(&self, index: usize) -> Option<SocketAddr> {
        self.devices.get(index).map(|d| d.addr)
    }

    pub fn handle(&self, index: usize) -> Option<DeviceHandle> {
        self.devices.get(index).map(|d| d.handle.clone())
    }

    /// Stops listening and closes every connection.
    pub fn stop(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
        for device in &self.devices {
            server::close_all(&device.handle.state);
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.stop();
    }
}
