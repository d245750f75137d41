//! Interop with a Modbus stack nobody here wrote (pymodbus): its client
//! against our simulator, and our gateway and poller against its server.
//!
//! Runs only with `HEARTH_TEST_PYMODBUS=1` (CI sets it in
//! `.ci/extra.d/10-pymodbus.sh`), and then fails loudly if Python or the
//! pinned pymodbus is missing; otherwise each test says why it did not run.
//! Python is `$HEARTH_PYTHON`, or `python3` on the PATH.

// Integration-test helpers: a panic with its message is how a broken fixture fails a test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

use hearth_domain::model::{Device, DeviceProfile, Endpoint, PointDefinition, Quality, WriteLevel};
use hearth_domain::ports::DocumentStore;
use hearth_domain::services::{Poller, PollerConfig};
use hearth_domain::{DeviceId, PointKey, ProfileId, TenantId};
use hearth_modbus::blocks::{plan_reads, DEFAULT_MAX_GAP};
use hearth_modbus::point::modbus_points;
use hearth_modbus::simulator::plant::ROOM_SETPOINT_COMFORT;
use hearth_modbus::{exception_code, DataType, ModbusPoint, RegisterKind, Scale, WordOrder};
use support::{eventually, gateway, hearth, simulator};

// ------------------------------------------------------------------ gating

const ENABLE: &str = "HEARTH_TEST_PYMODBUS";

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// The pymodbus version CI installs, from `tests/interop/requirements.txt`.
fn pinned_version() -> String {
    let path = interop_dir().join("requirements.txt");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .find_map(|line| line.trim().strip_prefix("pymodbus=="))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| panic!("{} pins no `pymodbus==` version", path.display()))
}

/// The Python to run the peers with, if this test is switched on. Switched
/// on, a missing Python or pymodbus (or the wrong version) fails the test:
/// CI must never pass by silently skipping the interop it was asked for.
fn pymodbus_python(test: &str) -> Option<PathBuf> {
    match std::env::var(ENABLE) {
        Ok(v) if v == "1" => {}
        other => {
            let why = match other {
                Ok(v) => format!("{ENABLE}={v:?}, not \"1\""),
                Err(_) => format!("{ENABLE} is not set"),
            };
            // In CI the peers are part of the run: missing is a failure.
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but interop::{test} cannot run: {why} (.ci/extra.d/10-pymodbus.sh must set it)"
            );
            eprintln!(
                "interop::{test} did not run: {why} (needs Python with pymodbus; \
                 see .ci/extra.d/10-pymodbus.sh)"
            );
            return None;
        }
    }
    let python = PathBuf::from(std::env::var("HEARTH_PYTHON").unwrap_or_else(|_| "python3".into()));
    let probe = Command::new(&python)
        .args(["-c", "import pymodbus; print(pymodbus.__version__)"])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{ENABLE}=1 but Python `{}` cannot be run ({e}); install python3 or set HEARTH_PYTHON",
                python.display()
            )
        });
    assert!(
        probe.status.success(),
        "{ENABLE}=1 but `{}` cannot import pymodbus; run `. .ci/extra.d/10-pymodbus.sh`:\n{}",
        python.display(),
        String::from_utf8_lossy(&probe.stderr)
    );
    let found = String::from_utf8_lossy(&probe.stdout).trim().to_owned();
    let pinned = pinned_version();
    assert_eq!(
        found,
        pinned,
        "`{}` has pymodbus {found} but the interop peers are written for {pinned} \
         (its API changes between minor versions); run `. .ci/extra.d/10-pymodbus.sh`",
        python.display()
    );
    Some(python)
}

fn show(output: &Output) -> String {
    format!(
        "--- stdout\n{}--- stderr\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

// ------------------------------------------- pymodbus client vs our simulator

#[tokio::test]
async fn pymodbus_client_passes_its_checks_against_our_simulator() {
    let Some(python) = pymodbus_python("pymodbus_client_passes_its_checks_against_our_simulator")
    else {
        return;
    };

    // Given a fresh simulated controller (comfort setpoint 21.0 °C)
    let sim = simulator(1).await;
    let handle = sim.handle(0).expect("device 0");
    let addr = sim.addr(0).expect("device 0");
    let writes_before = handle.write_requests();
    assert_eq!(handle.holding(ROOM_SETPOINT_COMFORT), Some(210));

    // When pymodbus's client runs its checks against it (off the runtime's
    // thread, which must keep serving the simulator meanwhile)
    let script = interop_dir().join("client_check.py");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .arg(&script)
            .arg(addr.ip().to_string())
            .arg(addr.port().to_string())
            .stdin(Stdio::null())
            .output()
    })
    .await
    .expect("the client task does not panic")
    .expect("client_check.py can be started");
    println!("{}", show(&output));

    // Then every check passed, and its writes reached our plant: the in-range
    // one landed (225) and the refused out-of-range one changed nothing
    assert!(
        output.status.success(),
        "client_check.py failed with {}:\n{}",
        output.status,
        show(&output)
    );
    assert!(
        handle.write_requests() >= writes_before + 2,
        "the simulator saw {} write requests, expected at least 2 more than {writes_before}",
        handle.write_requests()
    );
    assert_eq!(handle.holding(ROOM_SETPOINT_COMFORT), Some(225));
}

// ------------------------------------------- our gateway vs pymodbus server

/// `server.py` as a child process, killed on drop.
struct PymodbusServer {
    child: Child,
    /// Held open: the server exits when its stdin closes, so it cannot
    /// outlive this process even if the drop below never runs.
    _stdin: Option<ChildStdin>,
    addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
}

impl PymodbusServer {
    fn start(python: &Path) -> Self {
        let script = interop_dir().join("server.py");
        let mut child = Command::new(python)
            .arg(&script)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", script.display()));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr_pipe = child.stderr.take().expect("stderr is piped");

        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stderr_pipe.read(&mut buf) {
                if let Ok(mut s) = sink.lock() {
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });

        let (port_tx, port_rx) = mpsc::channel();
        thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let port = lines.find_map(|line| {
                line.ok()?
                    .strip_prefix("PORT ")
                    .and_then(|p| p.trim().parse::<u16>().ok())
            });
            let _ = port_tx.send(port);
            // Keep draining so the server never blocks on a full pipe.
            lines.for_each(drop);
        });

        let mut server = Self {
            child,
            _stdin: stdin,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            stderr,
        };
        // The deadline only stops a hung test; nothing asserts on timing.
        match port_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Some(port)) => server.addr.set_port(port),
            Ok(None) => panic!(
                "server.py exited without printing its port:\n{}",
                server.stderr()
            ),
            Err(_) => panic!(
                "server.py printed no port within 60 s:\n{}",
                server.stderr()
            ),
        }
        server
    }

    fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn device(&self, profile: &ProfileId) -> Device {
        Device {
            id: DeviceId::new(),
            tenant_id: TenantId::new(),
            area_id: None,
            name: "pymodbus".into(),
            profile_id: profile.clone(),
            endpoint: Endpoint::new(self.addr.ip().to_string(), self.addr.port(), 1)
                .expect("valid endpoint"),
        }
    }
}

impl Drop for PymodbusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn point(
    key: &str,
    register: RegisterKind,
    address: u16,
    data_type: DataType,
    word_order: WordOrder,
    scale: f64,
) -> PointDefinition {
    PointDefinition {
        key: PointKey::new(key).expect("valid key"),
        name: key.into(),
        address: ModbusPoint {
            register,
            address,
            data_type,
            word_order,
            scale: Scale::new(scale).expect("non-zero scale"),
            offset: 0.0,
        }
        .to_address(),
        unit: String::new(),
        writable: false,
        write_level: WriteLevel::Full,
        min: None,
        max: None,
        options: Vec::new(),
        plausible_min: None,
        plausible_max: None,
    }
}

/// The Modbus section of one of the image's points.
fn mb(point: &PointDefinition) -> ModbusPoint {
    ModbusPoint::of(point).expect("every image point has a Modbus address")
}

fn writable(point: PointDefinition, min: f64, max: f64) -> PointDefinition {
    PointDefinition {
        writable: true,
        min: Some(min),
        max: Some(max),
        ..point
    }
}

/// Every point of server.py's register image, with the value pymodbus encoded.
fn image() -> Vec<(PointDefinition, f64)> {
    use DataType::{F32, I16, I32, U16, U32};
    use RegisterKind::{Holding, Input};
    use WordOrder::{HighFirst, LowFirst};
    let mut points = vec![
        (point("u16", Holding, 100, U16, HighFirst, 1.0), 1234.0),
        (point("i16", Holding, 101, I16, HighFirst, 1.0), -1234.0),
        (
            point("u32_high_first", Holding, 102, U32, HighFirst, 1.0),
            305_419_896.0,
        ),
        (
            point("u32_low_first", Holding, 104, U32, LowFirst, 1.0),
            305_419_896.0,
        ),
        (
            point("i32_high_first", Holding, 106, I32, HighFirst, 1.0),
            -123_456_789.0,
        ),
        (
            point("i32_low_first", Holding, 108, I32, LowFirst, 1.0),
            -123_456_789.0,
        ),
        (
            point("f32_high_first", Holding, 110, F32, HighFirst, 1.0),
            f64::from(123.456_f32),
        ),
        (
            point("f32_low_first", Holding, 112, F32, LowFirst, 1.0),
            -40.25,
        ),
        (
            writable(
                point("setpoint", Holding, 120, U16, HighFirst, 0.1),
                10.0,
                30.0,
            ),
            21.0,
        ),
        (
            writable(
                point("offset", Holding, 121, I16, HighFirst, 1.0),
                -9.0,
                9.0,
            ),
            -5.0,
        ),
        (
            writable(
                point("f32_writable", Holding, 122, F32, HighFirst, 1.0),
                -100.0,
                100.0,
            ),
            0.0,
        ),
        (
            point("u16_input", Input, 10_206, U16, HighFirst, 1.0),
            65_535.0,
        ),
        (
            point("i32_low_first_input", Input, 10_207, I32, LowFirst, 1.0),
            -2.0,
        ),
        (
            point("u32_low_first_input", Input, 10_209, U32, LowFirst, 1.0),
            4_000_000_000.0,
        ),
        (
            point("f32_high_first_input", Input, 10_211, F32, HighFirst, 1.0),
            -0.5,
        ),
    ];
    let sensors = [-12.5, 21.5, 55.25, 40.1, 78.0, 52.0];
    for (i, celsius) in sensors.into_iter().enumerate() {
        let address = 10_200 + i as u16;
        let key = format!("s{}", i + 1);
        points.push((point(&key, Input, address, I16, HighFirst, 0.01), celsius));
    }
    points
}

/// Equal up to the rounding of a scale like 0.01 (exact values stay exact).
fn same(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

fn image_point(key: &str) -> PointDefinition {
    image()
        .into_iter()
        .map(|(p, _)| p)
        .find(|p| p.key.as_str() == key)
        .expect("the image has this point")
}

#[tokio::test]
async fn gateway_reads_and_decodes_every_type_from_pymodbus() {
    let Some(python) = pymodbus_python("gateway_reads_and_decodes_every_type_from_pymodbus") else {
        return;
    };

    // Given pymodbus serving a known image
    let server = PymodbusServer::start(&python);
    let device = server.device(&ProfileId::new("pymodbus-image").expect("valid id"));
    let gw = gateway();

    // When each point is read on its own and decoded
    for (def, expected) in image() {
        let p = mb(&def);
        let words = gw
            .read_registers(&device, p.register, p.address, p.data_type.words())
            .await
            .unwrap_or_else(|e| panic!("reading `{}`: {e}\n{}", def.key, server.stderr()));
        let value = p.decode(&words).expect("one value per point");

        // Then it is the value pymodbus encoded
        assert!(
            same(value, expected),
            "`{}` at {:?} {} decoded {value} from {words:?}, pymodbus encoded {expected}",
            def.key,
            p.register,
            p.address
        );
    }

    // And the word order matters: the other order reads a different number
    let p = mb(&image_point("u32_high_first"));
    let words = gw
        .read_registers(&device, p.register, p.address, 2)
        .await
        .expect("pymodbus answers");
    let swapped = ModbusPoint {
        word_order: WordOrder::LowFirst,
        ..p
    };
    assert_eq!(
        swapped.decode(&words).expect("two words"),
        f64::from(0x5678_1234_u32)
    );

    // And registers pymodbus does not serve come back as exception 2
    let hole = gw
        .read_registers(&device, RegisterKind::Holding, 114, 1)
        .await;
    assert!(
        hole.as_ref().err().and_then(exception_code) == Some(2),
        "{hole:?}"
    );
    let past_end = gw
        .read_registers(&device, RegisterKind::Input, 10_200, 123)
        .await;
    assert!(
        past_end.as_ref().err().and_then(exception_code) == Some(2),
        "{past_end:?}"
    );
}

#[tokio::test]
async fn gateway_writes_to_pymodbus_and_reads_back() {
    let Some(python) = pymodbus_python("gateway_writes_to_pymodbus_and_reads_back") else {
        return;
    };

    // Given pymodbus serving a known image
    let server = PymodbusServer::start(&python);
    let device = server.device(&ProfileId::new("pymodbus-image").expect("valid id"));
    let gw = gateway();
    let read = |def: PointDefinition| {
        let (gw, device) = (gw.clone(), device.clone());
        let p = mb(&def);
        async move {
            let words = gw
                .read_registers(&device, p.register, p.address, p.data_type.words())
                .await
                .expect("pymodbus answers");
            p.decode(&words).expect("one value per point")
        }
    };

    // When a setpoint (FC06), a negative i16 (FC06) and an f32 (FC16) are written
    for (key, value) in [("setpoint", 25.5), ("offset", -7.0), ("f32_writable", 55.5)] {
        let def = image_point(key);
        let p = mb(&def);
        let words = p.encode(value).expect("within the point's range");
        gw.write_registers(&device, p.address, &words)
            .await
            .unwrap_or_else(|e| panic!("writing `{key}` {words:?}: {e}\n{}", server.stderr()));

        // Then pymodbus confirmed it and reads it back
        assert_eq!(read(def).await, value, "`{key}` after writing {value}");
    }

    // When a value the server refuses is written (it takes 10.0..=30.0 °C)
    let setpoint = image_point("setpoint");
    let refused = gw
        .write_registers(&device, mb(&setpoint).address, &[301])
        .await;

    // Then it answers exception 3, which our gateway reports as such, and
    // nothing changed
    assert!(
        refused.as_ref().err().and_then(exception_code) == Some(3),
        "{refused:?}"
    );
    assert_eq!(read(setpoint).await, 25.5);

    // And a read-only register refuses writes with exception 2
    let read_only = gw.write_registers(&device, 100, &[1]).await;
    assert!(
        read_only.as_ref().err().and_then(exception_code) == Some(2),
        "{read_only:?}"
    );
    assert_eq!(read(image_point("u16")).await, 1234.0);
}

/// The image as a profile, polled fast so the test need not wait long.
fn image_profile() -> DeviceProfile {
    let profile = DeviceProfile {
        id: ProfileId::new("pymodbus-image").expect("valid id"),
        tenant_id: None,
        name: "pymodbus register image".into(),
        poll_interval_ms: 200,
        live_poll_interval_ms: None,
        points: image().into_iter().map(|(p, _)| p).collect(),
    };
    profile.validate().expect("the image is a valid profile");
    profile
}

#[tokio::test]
async fn planned_blocks_and_the_poller_read_a_profile_from_pymodbus() {
    let Some(python) =
        pymodbus_python("planned_blocks_and_the_poller_read_a_profile_from_pymodbus")
    else {
        return;
    };

    // Given pymodbus serving a known image, and the image as a profile
    let server = PymodbusServer::start(&python);
    let profile = image_profile();
    let expected = image();
    let device = server.device(&profile.id);
    let gw = gateway();

    // When the profile's reads are planned
    let points = modbus_points(&profile).expect("Modbus addresses");
    let blocks = plan_reads(&points, DEFAULT_MAX_GAP);

    // Then the holding points become one block bridging the unserved 114..=119
    // and the input points one block, and pymodbus refuses the bridged one
    let spans: Vec<_> = blocks
        .iter()
        .map(|b| (b.kind, b.address, b.count))
        .collect();
    assert_eq!(
        spans,
        vec![
            (RegisterKind::Holding, 100, 24),
            (RegisterKind::Input, 10_200, 13)
        ]
    );
    assert!(blocks[0].bridges_gap(&points));
    let bridged = gw
        .read_registers(&device, blocks[0].kind, blocks[0].address, blocks[0].count)
        .await;
    assert!(
        bridged.as_ref().err().and_then(exception_code) == Some(2),
        "{bridged:?}"
    );

    // When every block that pymodbus serves is read whole, and the refused
    // one point by point (what the poller falls back to)
    let mut reads = vec![blocks[1].clone()];
    reads.extend(blocks[0].split(&points));
    let mut decoded = Vec::new();
    for block in &reads {
        let words = gw
            .read_registers(&device, block.kind, block.address, block.count)
            .await
            .unwrap_or_else(|e| panic!("reading {block:?}: {e}\n{}", server.stderr()));
        decoded.extend(block.decode(&points, &words));
    }

    // Then every point decodes to the value pymodbus encoded
    assert_eq!(decoded.len(), expected.len());
    for (index, value) in &decoded {
        let key = &profile.points[*index].key;
        let (_, want) = expected
            .iter()
            .find(|(p, _)| &p.key == key)
            .expect("a planned point");
        let value = value.as_ref().expect("decodes");
        assert!(same(*value, *want), "`{key}` decoded {value}, want {want}");
    }

    // When the poller polls the device
    let gw = Arc::new(gw);
    let t = hearth(gw.clone());
    t.documents.put_profile(&profile).await.expect("stored");
    t.add_device(&device).await;
    let config = PollerConfig {
        max_start_offset: Duration::from_millis(100),
        backoff_cap: Duration::from_millis(500),
        ..PollerConfig::default()
    };
    let poller = Poller::spawn_with(t.ingest.clone(), gw.clone(), config);

    // Then it gets past the refused block and every point reads good, with
    // the value pymodbus encoded
    eventually("every point is read", || async {
        let points = t.points_of(&device);
        points.len() == expected.len() && points.iter().all(|r| r.quality == Quality::Good)
    })
    .await;
    for (p, want) in &expected {
        let reading = t
            .point(&device, p.key.as_str())
            .expect("a reading per point");
        assert!(
            same(reading.value, *want),
            "poller read `{}` as {}, want {want}",
            p.key,
            reading.value
        );
    }
    assert_eq!(t.online(&device), Some(true));
    poller.stop().await;
}
