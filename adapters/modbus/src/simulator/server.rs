//! The Modbus TCP side of a simulated controller: a tokio-modbus server
//! answering from the plant, with fault injection and request counters.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_modbus::server::tcp::Server;
use tokio_modbus::server::Service;
use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};

use super::plant::{Plant, PlantState, WallClock};
use crate::blocks::MAX_BLOCK_REGISTERS;

/// A misbehaviour to inject into one simulated device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    #[default]
    None,
    /// Requests are received and counted but never answered.
    NoAnswer,
    /// Every answer is delayed by this long.
    Slow(Duration),
    /// Open connections are closed at once, and any later one on receipt of
    /// its first request, without an answer.
    DropConnection,
    /// Every request is answered with this exception code.
    Exception(u8),
}

/// Per-connection kill switch: closing makes the transport report end of
/// stream, which ends tokio-modbus's request loop and drops the socket.
#[derive(Debug, Default)]
struct ConnectionControl {
    closed: AtomicBool,
    waker: AtomicWaker,
}

impl ConnectionControl {
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.waker.wake();
    }
}

/// Everything one simulated device shares between its connections.
#[derive(Debug)]
pub(crate) struct DeviceState {
    unit: u8,
    plant: Mutex<(Plant, Instant)>,
    fault: Mutex<Fault>,
    requests: AtomicU64,
    write_requests: AtomicU64,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    connections: Mutex<Vec<Weak<ConnectionControl>>>,
}

impl DeviceState {
    pub(crate) fn new(unit: u8, seed: usize) -> Self {
        Self {
            unit,
            plant: Mutex::new((Plant::new(seed, WallClock::now()), Instant::now())),
            fault: Mutex::new(Fault::None),
            requests: AtomicU64::new(0),
            write_requests: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            connections: Mutex::new(Vec::new()),
        }
    }

    /// The plant, advanced to now (the model is computed on access).
    fn with_plant<R>(&self, f: impl FnOnce(&mut Plant) -> R) -> R {
        let mut guard = self.plant.lock();
        let (plant, last) = &mut *guard;
        let now = Instant::now();
        let dt = now.saturating_duration_since(*last).as_secs_f64();
        let clock = WallClock::now();
        // Sub-steps keep the coupled lags (flow -> room -> return) close to
        // continuous; capped so a long-idle device catches up in bounded time.
        let steps = (dt / 0.25).ceil().clamp(1.0, 400.0);
        for _ in 0..steps as usize {
            plant.advance(dt / steps, clock);
        }
        *last = now;
        f(plant)
    }

    fn close_connections(&self) {
        let mut connections = self.connections.lock();
        for conn in connections.drain(..).filter_map(|w| w.upgrade()) {
            conn.close();
        }
    }

    fn register(&self, control: &Arc<ConnectionControl>) {
        let mut connections = self.connections.lock();
        connections.retain(|w| w.strong_count() > 0);
        connections.push(Arc::downgrade(control));
    }

    fn answer(&self, request: Request<'static>) -> Result<Response, ExceptionCode> {
        let max = MAX_BLOCK_REGISTERS;
        match request {
            Request::ReadHoldingRegisters(address, count) if (1..=max).contains(&count) => self
                .with_plant(|p| p.read_holding(address, count))
                .map(Response::ReadHoldingRegisters),
            Request::ReadInputRegisters(address, count) if (1..=max).contains(&count) => self
                .with_plant(|p| p.read_input(address, count))
                .map(Response::ReadInputRegisters),
            Request::ReadHoldingRegisters(..) | Request::ReadInputRegisters(..) => {
                Err(ExceptionCode::IllegalDataValue)
            }
            Request::WriteSingleRegister(address, word) => self
                .with_plant(|p| p.write(address, &[word]))
                .map(|()| Response::WriteSingleRegister(address, word)),
            Request::WriteMultipleRegisters(address, words)
                if (1..=usize::from(max)).contains(&words.len()) =>
            {
                self.with_plant(|p| p.write(address, &words))
                    .map(|()| Response::WriteMultipleRegisters(address, words.len() as u16))
            }
            Request::WriteMultipleRegisters(..) => Err(ExceptionCode::IllegalDataValue),
            _ => Err(ExceptionCode::IllegalFunction),
        }
    }
}

/// A cloneable handle on one simulated device, for fault injection and for
/// looking at the plant from tests.
#[derive(Debug, Clone)]
pub struct DeviceHandle {
    pub(crate) state: Arc<DeviceState>,
}

impl DeviceHandle {
    pub fn set_fault(&self, fault: Fault) {
        *self.state.fault.lock() = fault;
        if fault == Fault::DropConnection {
            self.state.close_connections();
        }
    }

    pub fn fault(&self) -> Fault {
        *self.state.fault.lock()
    }

    /// Unit address the device answers (besides the service address 254).
    pub fn unit(&self) -> u8 {
        self.state.unit
    }

    /// Requests of any kind received, including unanswered ones.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// FC06/FC16 requests received, whether applied, refused or unanswered.
    pub fn write_requests(&self) -> u64 {
        self.state.write_requests.load(Ordering::SeqCst)
    }

    /// Most requests ever handled at the same time (a correct client keeps it at 1).
    pub fn max_concurrent_requests(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// Raw word of a holding register, read directly (not over the wire).
    pub fn holding(&self, address: u16) -> Option<u16> {
        self.state.with_plant(|p| p.holding(address))
    }

    /// Sets a holding register's raw word directly (not over the wire),
    /// bypassing range checks and side effects, so a test or benchmark can
    /// make a change the poller will see. Returns `false`, changing nothing,
    /// if the device has no such register.
    pub fn set_holding(&self, address: u16, word: u16) -> bool {
        self.state.with_plant(|p| p.set_holding(address, word))
    }

    /// Current plant temperatures.
    pub fn plant(&self) -> PlantState {
        self.state.with_plant(|p| p.state())
    }

    /// Closes every open connection to the device now.
    pub fn drop_connections(&self) {
        self.state.close_connections();
    }
}

/// Counts a request as in flight for as long as it lives.
struct InFlight(Arc<DeviceState>);

impl InFlight {
    fn enter(state: Arc<DeviceState>) -> Self {
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.max_in_flight.fetch_max(now, Ordering::SeqCst);
        Self(state)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

type Answer = Result<Option<Response>, ExceptionCode>;

/// The tokio-modbus service of one connection.
struct DeviceService {
    state: Arc<DeviceState>,
    connection: Arc<ConnectionControl>,
}

impl Service for DeviceService {
    type Request = SlaveRequest<'static>;
    /// `None` leaves a request unanswered.
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Pin<Box<dyn Future<Output = Answer> + Send>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        let SlaveRequest { slave, request } = req;
        let state = self.state.clone();
        state.requests.fetch_add(1, Ordering::SeqCst);
        if matches!(
            request,
            Request::WriteSingleRegister(..) | Request::WriteMultipleRegisters(..)
        ) {
            state.write_requests.fetch_add(1, Ordering::SeqCst);
        }
        // Like a controller on a shared line, ignore requests for other units.
        if slave != state.unit && slave != 254 {
            tracing::debug!(
                unit = slave,
                "Simulated controller ignoring a request for another unit."
            );
            return Box::pin(std::future::ready(Ok(None)));
        }
        let in_flight = InFlight::enter(state.clone());
        let fault = *state.fault.lock();
        match fault {
            Fault::None => {
                let answer = state.answer(request).map(Some);
                drop(in_flight);
                Box::pin(std::future::ready(answer))
            }
            Fault::NoAnswer => Box::pin(std::future::ready(Ok(None))),
            Fault::DropConnection => {
                self.connection.close();
                Box::pin(std::future::ready(Ok(None)))
            }
            Fault::Exception(code) => Box::pin(std::future::ready(Err(ExceptionCode::new(code)))),
            Fault::Slow(delay) => Box::pin(async move {
                tokio::time::sleep(delay).await;
                let answer = state.answer(request).map(Some);
                drop(in_flight);
                answer
            }),
        }
    }
}

/// The TCP stream under a simulated connection, closable from outside.
#[derive(Debug)]
struct ClosableStream {
    inner: TcpStream,
    control: Arc<ConnectionControl>,
}

impl AsyncRead for ClosableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.control.waker.register(cx.waker());
        if self.control.closed.load(Ordering::Acquire) {
            // End of stream: the server loop stops and drops the socket.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ClosableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.control.closed.load(Ordering::Acquire) {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serves one device on `listener` until the returned task is aborted.
pub(crate) fn serve(listener: TcpListener, state: Arc<DeviceState>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let local = listener.local_addr().ok();
        let server = Server::new(listener);
        let on_connected = |stream: TcpStream, peer: SocketAddr| {
            let state = state.clone();
            async move {
                if let Err(err) = stream.set_nodelay(true) {
                    tracing::debug!(error = %err, "Could not disable Nagle on a simulated connection.");
                }
                tracing::debug!(%peer, "Simulated controller accepted a connection.");
                let control = Arc::new(ConnectionControl::default());
                state.register(&control);
                let service = DeviceService {
                    state,
                    connection: control.clone(),
                };
                Ok(Some((
                    service,
                    ClosableStream {
                        inner: stream,
                        control,
                    },
                )))
            }
        };
        let on_process_error = |err: io::Error| {
            tracing::debug!(error = %err, "Simulated connection ended with an error.");
        };
        if let Err(err) = server.serve(&on_connected, on_process_error).await {
            tracing::error!(error = %err, addr = ?local, "Simulated controller stopped accepting connections.");
        }
    })
}

/// Closes every connection of the device (on simulator shutdown).
pub(crate) fn close_all(state: &DeviceState) {
    state.close_connections();
}
