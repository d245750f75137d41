//! [`FieldGateway`] over Modbus TCP: points in, values out. Each point's
//! Modbus section ([`ModbusPoint`]) says which registers hold it and how to
//! code them; reads of a whole profile go through a planned [`ModbusReader`].
//! Underneath, one cached connection per endpoint, at most one request in
//! flight on it, timeouts on everything, and a broken connection dropped so
//! the next call reconnects.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};

use parking_lot::Mutex as SyncMutex;
use std::time::Duration;

use async_trait::async_trait;
use hearth_domain::error::InvalidValue;
use hearth_domain::model::{Device, DeviceProfile, Endpoint, PointDefinition};
use hearth_domain::ports::{FieldError, FieldGateway, PointReader};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio::time::{timeout, Instant};
use tokio_modbus::client::{Client, Context};
use tokio_modbus::{Request, Response, Slave};

use crate::blocks::{DEFAULT_MAX_GAP, MAX_BLOCK_REGISTERS};
use crate::point::{modbus_points, ModbusPoint, RegisterKind};
use crate::reader::ModbusReader;

/// Timeouts and read planning of the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    /// Name resolution plus TCP connect.
    pub connect_timeout: Duration,
    /// One request until its answer.
    pub request_timeout: Duration,
    /// Connections unused this long are closed: the ECL drops idle TCP after
    /// ~75 s, and a request on a half-closed socket would fail needlessly.
    pub idle_timeout: Duration,
    /// Unused registers a block read may bridge.
    pub max_gap: u16,
    /// Blocks split after a refusal are merged again this often, in case the
    /// refusal was passing (an injected fault, a firmware update).
    pub replan_every: Duration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(60),
            max_gap: DEFAULT_MAX_GAP,
            replan_every: Duration::from_secs(600),
        }
    }
}

/// A cached connection; its async mutex is the per-device request lock.
#[derive(Debug, Default)]
struct Link {
    context: Option<Context>,
    last_used: Option<Instant>,
    /// Set while a request is on the wire. Still set when the lock is taken
    /// again means the previous caller was cancelled mid-request and its
    /// answer may still arrive, so the connection cannot be trusted.
    in_flight: bool,
}

#[derive(Debug)]
struct Inner {
    config: GatewayConfig,
    /// One link per endpoint (host, port, unit): one controller behind one
    /// TCP endpoint.
    links: SyncMutex<HashMap<Endpoint, Arc<Mutex<Link>>>>,
    reaper_started: std::sync::atomic::AtomicBool,
}

/// Modbus TCP client for every device, shared by the poller and the write path.
#[derive(Debug, Clone)]
pub struct ModbusGateway {
    inner: Arc<Inner>,
}

impl Default for ModbusGateway {
    fn default() -> Self {
        Self::new(GatewayConfig::default())
    }
}

/// Why a request failed, before mapping to the port's error.
enum CallError {
    Field(FieldError),
    /// A transport failure on a connection reused from the cache: it may have
    /// been closed by the device while idle, so a read may retry once.
    StaleLink(FieldError),
}

impl ModbusGateway {
    pub fn new(config: GatewayConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                links: SyncMutex::new(HashMap::new()),
                reaper_started: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    pub fn config(&self) -> &GatewayConfig {
        &self.inner.config
    }

    /// Number of open connections (for tests and metrics).
    pub fn open_connections(&self) -> usize {
        self.links()
            .into_iter()
            .filter(|link| link.try_lock().map(|l| l.context.is_some()).unwrap_or(true))
            .count()
    }

    /// Closes every idle connection now.
    pub async fn close_all(&self) {
        for link in self.links() {
            let mut link = link.lock().await;
            close(&mut link).await;
        }
    }

    fn links(&self) -> Vec<Arc<Mutex<Link>>> {
        self.inner.links.lock().values().cloned().collect()
    }

    fn link(&self, endpoint: &Endpoint) -> Arc<Mutex<Link>> {
        self.start_reaper();
        let mut map = self.inner.links.lock();
        // Looked up by reference: every request passes here, and cloning the
        // endpoint's host for the lookup would cost an allocation each time.
        if let Some(link) = map.get(endpoint) {
            return link.clone();
        }
        map.entry(endpoint.clone()).or_default().clone()
    }

    /// Starts the idle-connection reaper on first use, when a runtime is
    /// certainly present. It holds only a weak reference and ends with the gateway.
    fn start_reaper(&self) {
        use std::sync::atomic::Ordering;
        if self.inner.reaper_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let period = (self.inner.config.idle_timeout / 4).max(Duration::from_millis(50));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let Some(inner) = weak.upgrade() else { return };
                let idle_timeout = inner.config.idle_timeout;
                let links: Vec<_> = inner.links.lock().values().cloned().collect();
                drop(inner);
                for link in links {
                    // A busy link is in use, hence not idle.
                    let Ok(mut link) = link.try_lock() else {
                        continue;
                    };
                    if link.context.is_some()
                        && link.last_used.is_some_and(|t| t.elapsed() >= idle_timeout)
                    {
                        tracing::debug!("Closing an idle Modbus connection.");
                        close(&mut link).await;
                    }
                }
            }
        });
    }

    /// Sends one request to the device, holding its link for the whole exchange.
    async fn call(
        &self,
        device: &Device,
        request: Request<'static>,
    ) -> Result<Response, FieldError> {
        let link = self.link(&device.endpoint);
        let mut link = link.lock().await;
        match self.call_locked(device, &mut link, request.clone()).await {
            Ok(response) => Ok(response),
            Err(CallError::Field(err)) => Err(err),
            Err(CallError::StaleLink(err)) if is_read(&request) => {
                tracing::debug!(device = %device.id, error = %err, "Cached Modbus connection failed; reconnecting once.");
                match self.call_locked(device, &mut link, request).await {
                    Ok(response) => Ok(response),
                    Err(CallError::Field(err) | CallError::StaleLink(err)) => Err(err),
                }
            }
            // A write may have reached the device before the link broke; never
            // repeat it behind the caller's back.
            Err(CallError::StaleLink(err)) => Err(err),
        }
    }

    async fn call_locked(
        &self,
        device: &Device,
        link: &mut Link,
        request: Request<'static>,
    ) -> Result<Response, CallError> {
        let config = &self.inner.config;
        if link.in_flight {
            tracing::debug!(device = %device.id, "Previous request was cancelled; dropping its connection.");
            link.context = None;
            link.in_flight = false;
        }
        if link
            .last_used
            .is_some_and(|t| t.elapsed() >= config.idle_timeout)
        {
            close(link).await;
        }
        let reused = link.context.is_some();
        if link.context.is_none() {
            link.context = Some(
                self.connect(&device.endpoint)
                    .await
                    .map_err(CallError::Field)?,
            );
        }
        let Some(context) = link.context.as_mut() else {
            return Err(CallError::Field(FieldError::Unreachable(
                "not connected".into(),
            )));
        };
        link.in_flight = true;
        let outcome = timeout(config.request_timeout, context.call(request)).await;
        link.in_flight = false;
        match outcome {
            Err(_) => {
                // A late answer would be taken for the next request's, so the
                // connection goes.
                link.context = None;
                Err(CallError::Field(FieldError::Unreachable(format!(
                    "no answer within {} ms",
                    config.request_timeout.as_millis()
                ))))
            }
            Ok(Err(tokio_modbus::Error::Transport(err))) => {
                link.context = None;
                let err = FieldError::Unreachable(err.to_string());
                Err(if reused {
                    CallError::StaleLink(err)
                } else {
                    CallError::Field(err)
                })
            }
            Ok(Err(tokio_modbus::Error::Protocol(err))) => {
                // Out of step with the device (wrong transaction or function):
                // start over on a fresh connection.
                link.context = None;
                Err(CallError::Field(FieldError::Protocol(err.to_string())))
            }
            Ok(Ok(Err(exception))) => {
                link.last_used = Some(Instant::now());
                Err(CallError::Field(refusal(u8::from(exception))))
            }
            Ok(Ok(Ok(response))) => {
                link.last_used = Some(Instant::now());
                Ok(response)
            }
        }
    }

    async fn connect(&self, endpoint: &Endpoint) -> Result<Context, FieldError> {
        let config = &self.inner.config;
        let unit = unit_of(endpoint).map_err(FieldError::Unaddressable)?;
        let target = format!("{}:{}", endpoint.host, endpoint.port);
        let attempt = async {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((endpoint.host.as_str(), endpoint.port))
                    .await
                    .map_err(|e| format!("cannot resolve {target}: {e}"))?
                    .collect();
            let mut last = format!("{target} resolves to no address");
            for addr in addrs {
                match TcpStream::connect(addr).await {
                    Ok(stream) => {
                        // Small request/answer frames: do not wait to coalesce them.
                        if let Err(err) = stream.set_nodelay(true) {
                            tracing::debug!(error = %err, "Could not disable Nagle on a Modbus connection.");
                        }
                        return Ok(tokio_modbus::client::tcp::attach_slave(stream, Slave(unit)));
                    }
                    Err(err) => last = format!("cannot connect to {addr}: {err}"),
                }
            }
            Err(last)
        };
        match timeout(config.connect_timeout, attempt).await {
            Ok(Ok(context)) => {
                tracing::debug!(endpoint = %target, unit = endpoint.unit, "Opened a Modbus connection.");
                Ok(context)
            }
            Ok(Err(reason)) => Err(FieldError::Unreachable(reason)),
            Err(_) => Err(FieldError::Unreachable(format!(
                "cannot connect to {target} within {} ms",
                config.connect_timeout.as_millis()
            ))),
        }
    }
}

fn is_read(request: &Request<'_>) -> bool {
    matches!(
        request,
        Request::ReadHoldingRegisters(..) | Request::ReadInputRegisters(..)
    )
}

async fn close(link: &mut Link) {
    if let Some(mut context) = link.context.take() {
        // Best effort: the socket is dropped either way.
        let _ = timeout(Duration::from_millis(200), context.disconnect()).await;
    }
    link.last_used = None;
}

/// Refuses a register range the device could not serve, before the wire.
fn check_range(address: u16, count: usize) -> Result<u16, FieldError> {
    if count == 0 || count > usize::from(MAX_BLOCK_REGISTERS) {
        return Err(FieldError::Protocol(format!(
            "{count} registers requested; 1 to {MAX_BLOCK_REGISTERS} allowed"
        )));
    }
    if usize::from(address) + count > 65_536 {
        return Err(FieldError::Protocol(format!(
            "registers {address}+{count} run past the last register"
        )));
    }
    // Bounded by MAX_BLOCK_REGISTERS above.
    Ok(count as u16)
}

/// The port's refusal for a Modbus exception code; the code stays readable
/// in the message (`exception 2`: illegal data address).
pub fn refusal(code: u8) -> FieldError {
    FieldError::Refused(format!("exception {code}"))
}

/// The Modbus exception code of a refusal made by [`refusal`].
pub fn exception_code(err: &FieldError) -> Option<u8> {
    match err {
        FieldError::Refused(reason) => reason.strip_prefix("exception ")?.parse().ok(),
        _ => None,
    }
}

/// Unit ids Modbus TCP addresses: 1 to 247, or 254 (the ECL's service address).
fn unit_of(endpoint: &Endpoint) -> Result<u8, InvalidValue> {
    match u8::try_from(endpoint.unit) {
        Ok(unit) if (1..=247).contains(&unit) || unit == 254 => Ok(unit),
        _ => Err(InvalidValue::new(
            "endpoint",
            "unit must be 1 to 247, or 254",
        )),
    }
}

/// Register-level access, for the point-level port below, the reader, and
/// tests that talk to a device register by register.
impl ModbusGateway {
    pub async fn read_registers(
        &self,
        device: &Device,
        kind: RegisterKind,
        address: u16,
        count: u16,
    ) -> Result<Vec<u16>, FieldError> {
        let count = check_range(address, usize::from(count))?;
        let request = match kind {
            RegisterKind::Holding => Request::ReadHoldingRegisters(address, count),
            RegisterKind::Input => Request::ReadInputRegisters(address, count),
        };
        let words = match self.call(device, request).await? {
            Response::ReadHoldingRegisters(words) if kind == RegisterKind::Holding => words,
            Response::ReadInputRegisters(words) if kind == RegisterKind::Input => words,
            other => return Err(FieldError::Protocol(format!("unexpected answer {other:?}"))),
        };
        if words.len() != usize::from(count) {
            return Err(FieldError::Protocol(format!(
                "asked for {count} registers, got {}",
                words.len()
            )));
        }
        Ok(words)
    }

    pub async fn write_registers(
        &self,
        device: &Device,
        address: u16,
        words: &[u16],
    ) -> Result<(), FieldError> {
        let count = check_range(address, words.len())?;
        if let [word] = words {
            match self
                .call(device, Request::WriteSingleRegister(address, *word))
                .await?
            {
                // The ECL echoes register and value; anything else did not land as asked.
                Response::WriteSingleRegister(a, w) if a == address && w == *word => Ok(()),
                other => Err(FieldError::Protocol(format!("write not echoed: {other:?}"))),
            }
        } else {
            let request = Request::WriteMultipleRegisters(address, words.to_vec().into());
            match self.call(device, request).await? {
                Response::WriteMultipleRegisters(a, n) if a == address && n == count => Ok(()),
                other => Err(FieldError::Protocol(format!(
                    "write not confirmed: {other:?}"
                ))),
            }
        }
    }
}

#[async_trait]
impl FieldGateway for ModbusGateway {
    fn check_profile(&self, profile: &DeviceProfile) -> Result<(), InvalidValue> {
        modbus_points(profile).map(|_| ())
    }

    fn check_endpoint(&self, endpoint: &Endpoint) -> Result<(), InvalidValue> {
        unit_of(endpoint).map(|_| ())
    }

    fn check_value(&self, point: &PointDefinition, value: f64) -> Result<f64, InvalidValue> {
        let modbus = ModbusPoint::of(point)?;
        let words = modbus.encode(value)?;
        modbus.decode(&words)
    }

    fn reader(
        &self,
        device: &Device,
        profile: &DeviceProfile,
    ) -> Result<Box<dyn PointReader>, InvalidValue> {
        unit_of(&device.endpoint)?;
        Ok(Box::new(ModbusReader::new(
            self.clone(),
            device.clone(),
            profile,
        )?))
    }

    async fn read_point(
        &self,
        device: &Device,
        point: &PointDefinition,
    ) -> Result<f64, FieldError> {
        let modbus = ModbusPoint::of(point).map_err(FieldError::Unaddressable)?;
        let words = self
            .read_registers(
                device,
                modbus.register,
                modbus.address,
                modbus.data_type.words(),
            )
            .await?;
        modbus
            .decode(&words)
            .map_err(|e| FieldError::Protocol(e.to_string()))
    }

    async fn write_point(
        &self,
        device: &Device,
        point: &PointDefinition,
        value: f64,
    ) -> Result<(), FieldError> {
        let modbus = ModbusPoint::of(point).map_err(FieldError::Unaddressable)?;
        if modbus.register != RegisterKind::Holding {
            return Err(FieldError::Unaddressable(InvalidValue::new(
                "point",
                format!("`{}` is an input register", point.key),
            )));
        }
        let words = modbus.encode(value).map_err(FieldError::Unaddressable)?;
        self.write_registers(device, modbus.address, &words).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_checked_before_the_wire() {
        assert!(matches!(check_range(0, 0), Err(FieldError::Protocol(_))));
        assert!(matches!(check_range(0, 124), Err(FieldError::Protocol(_))));
        assert!(matches!(
            check_range(65_535, 2),
            Err(FieldError::Protocol(_))
        ));
        assert_eq!(check_range(65_535, 1).ok(), Some(1));
        assert_eq!(check_range(100, 123).ok(), Some(123));
    }
}
