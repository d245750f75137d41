//! The plant behind one simulated ECL Comfort controller: its register map
//! and a small thermal model advanced by wall-clock time.
//!
//! Register addresses follow DESIGN.md's community map (unverified against a
//! real ECL); the ones DESIGN does not give are marked "unverified" below.
//!
//! | table   | register       | meaning                                   | raw unit, range          |
//! |---------|----------------|-------------------------------------------|--------------------------|
//! | input   | 10200          | S1 outdoor temperature                    | i16 ×0.01 °C             |
//! | input   | 10201          | S2 room temperature                       | i16 ×0.01 °C             |
//! | input   | 10202          | S3 flow temperature (circuit 1)           | i16 ×0.01 °C             |
//! | input   | 10203          | S4 return temperature (circuit 1)         | i16 ×0.01 °C             |
//! | input   | 10204          | S5 primary supply (unverified role)       | i16 ×0.01 °C             |
//! | input   | 10205          | S6 hot-water tank (unverified role)       | i16 ×0.01 °C             |
//! | holding | 3109..=3178    | schedule, 10 registers a day from Monday; | HHMM, 0..=2400           |
//! |         |                | pairs (start, stop) of up to 3 comfort    |                          |
//! |         |                | periods, registers 7..=9 of a day unused  |                          |
//! | holding | 4200           | mode (unverified): 0 schedule, 1 comfort, | 0..=3                    |
//! |         |                | 2 saving, 3 frost protection              |                          |
//! | holding | 11174          | heat-curve slope                          | ×0.1, 1..=40             |
//! | holding | 11175          | parallel displacement (unverified)        | i16 K, -9..=9            |
//! | holding | 11176 / 11177  | flow temperature min / max (unverified)   | °C, 10..=150             |
//! | holding | 11178          | room influence (unverified)               | ×0.1, 0..=99             |
//! | holding | 11179 / 11180  | room setpoint comfort / saving            | ×0.1 °C, 100..=300       |
//! | holding | 11181 / 11182  | reserved (unverified), reads 0            | 0                        |
//! | holding | 11183          | Xp proportional band (unverified)         | K, 5..=250               |
//! | holding | 11184          | Tn integration time (unverified)          | s, 1..=999               |
//! | holding | 11185          | motor runtime "M run" (unverified)        | s, 5..=250               |
//! | holding | 11186          | neutral zone Nz (unverified)              | K, 1..=9                 |
//! | holding | 11399..=11404  | heat-curve flow temperatures at outdoor   | °C, 10..=150             |
//! |         |                | -30, -15, -5, 0, 5, 15 °C                 |                          |
//!
//! Writing the slope recomputes the six curve points, as the ECL does.

use std::collections::BTreeMap;
use std::f64::consts::PI;

use tokio_modbus::ExceptionCode;

pub const S1_OUTDOOR: u16 = 10_200;
pub const S2_ROOM: u16 = 10_201;
pub const S3_FLOW: u16 = 10_202;
pub const S4_RETURN: u16 = 10_203;
pub const S5_PRIMARY: u16 = 10_204;
pub const S6_TANK: u16 = 10_205;

pub const SCHEDULE_START: u16 = 3_109;
pub const SCHEDULE_REGISTERS_PER_DAY: u16 = 10;
pub const MODE: u16 = 4_200;
pub const HEAT_CURVE_SLOPE: u16 = 11_174;
pub const PARALLEL_DISPLACEMENT: u16 = 11_175;
pub const FLOW_MIN: u16 = 11_176;
pub const FLOW_MAX: u16 = 11_177;
pub const ROOM_INFLUENCE: u16 = 11_178;
pub const ROOM_SETPOINT_COMFORT: u16 = 11_179;
pub const ROOM_SETPOINT_SAVING: u16 = 11_180;
pub const XP: u16 = 11_183;
pub const TN: u16 = 11_184;
pub const MOTOR_RUNTIME: u16 = 11_185;
pub const NEUTRAL_ZONE: u16 = 11_186;
pub const HEAT_CURVE_POINTS: u16 = 11_399;

/// Outdoor temperatures of the six heat-curve points.
const CURVE_OUTDOOR: [f64; 6] = [-30.0, -15.0, -5.0, 0.0, 5.0, 15.0];

/// How a holding register's raw word is checked on write.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Rule {
    Range {
        min: i32,
        max: i32,
        signed: bool,
    },
    /// A time of day as HHMM (0000..=2400, minutes < 60).
    Hhmm,
}

impl Rule {
    fn accepts(self, word: u16) -> bool {
        match self {
            Rule::Range { min, max, signed } => {
                let value = if signed {
                    i32::from(word as i16)
                } else {
                    i32::from(word)
                };
                (min..=max).contains(&value)
            }
            Rule::Hhmm => {
                let (hours, minutes) = (word / 100, word % 100);
                minutes < 60 && (hours < 24 || word == 2400)
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Param {
    word: u16,
    rule: Rule,
}

/// Wall-clock position the model needs: time of day and weekday.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WallClock {
    /// Seconds since midnight, 0..86400.
    pub seconds_of_day: f64,
    /// 0 = Monday .. 6 = Sunday.
    pub weekday: u8,
}

impl WallClock {
    /// The clock at `unix_seconds` (UTC; the simulation has no time zone).
    pub fn from_unix(unix_seconds: f64) -> Self {
        let days = (unix_seconds / 86_400.0).floor();
        let seconds_of_day = unix_seconds - days * 86_400.0;
        // 1970-01-01 was a Thursday (index 3).
        let weekday = ((days as i64 + 3).rem_euclid(7)) as u8;
        Self {
            seconds_of_day,
            weekday,
        }
    }

    pub fn now() -> Self {
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        Self::from_unix(unix)
    }
}

/// Temperatures of the simulated plant, °C.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlantState {
    pub outdoor: f64,
    pub room: f64,
    pub flow: f64,
    pub return_temp: f64,
    pub primary: f64,
    pub tank: f64,
    /// Flow temperature the controller currently aims for.
    pub flow_setpoint: f64,
    /// Room temperature the controller currently aims for (by mode and schedule).
    pub room_setpoint: f64,
}

/// One controller: parameters (holding registers) and plant state.
#[derive(Debug, Clone)]
pub struct Plant {
    params: BTreeMap<u16, Param>,
    state: PlantState,
    /// Per-device variation of the outdoor curve.
    outdoor_mean: f64,
    outdoor_amplitude: f64,
    outdoor_phase: f64,
}

/// Room temperature time constant, seconds. Far faster than a real building
/// so that the demo and the tests see a setpoint write take effect.
const ROOM_TAU: f64 = 30.0;
const RETURN_TAU: f64 = 8.0;

impl Plant {
    /// A plant in steady state at `clock`; `seed` varies the weather per device.
    pub fn new(seed: usize, clock: WallClock) -> Self {
        let mut params = BTreeMap::new();
        let range = |min, max| Rule::Range {
            min,
            max,
            signed: false,
        };
        for day in 0..7u16 {
            let base = SCHEDULE_START + day * SCHEDULE_REGISTERS_PER_DAY;
            let defaults = [600, 2200, 0, 0, 0, 0, 0, 0, 0, 0];
            for (i, word) in defaults.into_iter().enumerate() {
                params.insert(
                    base + i as u16,
                    Param {
                        word,
                        rule: Rule::Hhmm,
                    },
                );
            }
        }
        let mut set = |address: u16, word: u16, rule: Rule| {
            params.insert(address, Param { word, rule });
        };
        set(MODE, 0, range(0, 3));
        set(HEAT_CURVE_SLOPE, 10, range(1, 40));
        set(
            PARALLEL_DISPLACEMENT,
            0,
            Rule::Range {
                min: -9,
                max: 9,
                signed: true,
            },
        );
        set(FLOW_MIN, 10, range(10, 150));
        set(FLOW_MAX, 90, range(10, 150));
        set(ROOM_INFLUENCE, 0, range(0, 99));
        set(ROOM_SETPOINT_COMFORT, 210, range(100, 300));
        set(ROOM_SETPOINT_SAVING, 170, range(100, 300));
        set(11_181, 0, range(0, 0));
        set(11_182, 0, range(0, 0));
        set(XP, 80, range(5, 250));
        set(TN, 30, range(1, 999));
        set(MOTOR_RUNTIME, 30, range(5, 250));
        set(NEUTRAL_ZONE, 3, range(1, 9));
        for i in 0..6u16 {
            set(HEAT_CURVE_POINTS + i, 0, range(10, 150));
        }
        let seed_f = seed as f64;
        let mut plant = Self {
            params,
            state: PlantState {
                outdoor: 0.0,
                room: 0.0,
                flow: 0.0,
                return_temp: 0.0,
                primary: 0.0,
                tank: 0.0,
                flow_setpoint: 0.0,
                room_setpoint: 0.0,
            },
            outdoor_mean: 2.0 + (seed_f * 1.7) % 6.0,
            outdoor_amplitude: 4.0 + (seed_f * 0.9) % 3.0,
            outdoor_phase: (seed_f * 1_800.0) % 7_200.0,
        };
        plant.apply_slope();
        // Start in steady state so the first reads look like a running plant.
        plant.state.outdoor = plant.outdoor_at(clock);
        plant.state.room_setpoint = plant.room_setpoint_at(clock);
        plant.state.room = plant.state.room_setpoint;
        let setpoint = plant.flow_setpoint();
        plant.state.flow_setpoint = setpoint;
        plant.state.flow = setpoint;
        plant.state.return_temp = plant.return_target();
        plant.state.primary = 78.0;
        plant.state.tank = 52.0;
        plant
    }

    pub fn state(&self) -> PlantState {
        self.state
    }

    /// The raw word of a holding register, `None` if the register does not exist.
    pub fn holding(&self, address: u16) -> Option<u16> {
        self.params.get(&address).map(|p| p.word)
    }

    /// Overwrites a holding register's raw word without the write checks
    /// or side effects of [`Plant::write`]. Returns `false`, changing
    /// nothing, if the register does not exist.
    pub fn set_holding(&mut self, address: u16, word: u16) -> bool {
        match self.params.get_mut(&address) {
            Some(param) => {
                param.word = word;
                true
            }
            None => false,
        }
    }

    /// Advances the model by `dt` seconds ending at `clock`. Each lag uses the
    /// exact first-order step, stable for any `dt`.
    pub fn advance(&mut self, dt: f64, clock: WallClock) {
        if dt.is_nan() || dt <= 0.0 {
            return;
        }
        let lag = |value: f64, target: f64, tau: f64| {
            value + (target - value) * (1.0 - (-dt / tau).exp())
        };
        self.state.outdoor = self.outdoor_at(clock);
        self.state.room_setpoint = self.room_setpoint_at(clock);
        let setpoint = self.flow_setpoint();
        self.state.flow_setpoint = setpoint;
        // The valve moves no faster than its motor runtime allows.
        let flow_tau = 2.0 + self.param_f64(MOTOR_RUNTIME) / 10.0;
        self.state.flow = lag(self.state.flow, setpoint, flow_tau);
        let room_target = self.room_from_flow(self.state.flow);
        self.state.room = lag(self.state.room, room_target, ROOM_TAU);
        self.state.return_temp = lag(self.state.return_temp, self.return_target(), RETURN_TAU);
        let t = clock.seconds_of_day;
        self.state.primary = 78.0 + 2.0 * (2.0 * PI * t / 3_600.0).sin();
        self.state.tank = 52.0 + 1.5 * (2.0 * PI * t / 5_400.0).cos();
    }

    /// FC04: sensor values, signed ×0.01 °C.
    pub fn read_input(&self, address: u16, count: u16) -> Result<Vec<u16>, ExceptionCode> {
        (0..count)
            .map(|i| {
                let value = match address.checked_add(i) {
                    Some(S1_OUTDOOR) => self.state.outdoor,
                    Some(S2_ROOM) => self.state.room,
                    Some(S3_FLOW) => self.state.flow,
                    Some(S4_RETURN) => self.state.return_temp,
                    Some(S5_PRIMARY) => self.state.primary,
                    Some(S6_TANK) => self.state.tank,
                    _ => return Err(ExceptionCode::IllegalDataAddress),
                };
                let raw = (value * 100.0)
                    .round()
                    .clamp(f64::from(i16::MIN), f64::from(i16::MAX))
                    as i16;
                Ok(raw as u16)
            })
            .collect()
    }

    /// FC03: parameters.
    pub fn read_holding(&self, address: u16, count: u16) -> Result<Vec<u16>, ExceptionCode> {
        (0..count)
            .map(|i| {
                address
                    .checked_add(i)
                    .and_then(|a| self.holding(a))
                    .ok_or(ExceptionCode::IllegalDataAddress)
            })
            .collect()
    }

    /// FC06/FC16: all registers are checked before any is applied, so a
    /// refused write changes nothing.
    pub fn write(&mut self, address: u16, words: &[u16]) -> Result<(), ExceptionCode> {
        for (i, word) in words.iter().enumerate() {
            let param = u16::try_from(i)
                .ok()
                .and_then(|i| address.checked_add(i))
                .and_then(|a| self.params.get(&a))
                .ok_or(ExceptionCode::IllegalDataAddress)?;
            if !param.rule.accepts(*word) {
                return Err(ExceptionCode::IllegalDataValue);
            }
        }
        let mut slope_written = false;
        for (i, word) in words.iter().enumerate() {
            let a = address.wrapping_add(i as u16);
            if let Some(param) = self.params.get_mut(&a) {
                param.word = *word;
            }
            slope_written |= a == HEAT_CURVE_SLOPE;
        }
        if slope_written {
            self.apply_slope();
        }
        Ok(())
    }

    fn param_f64(&self, address: u16) -> f64 {
        match self.params.get(&address) {
            Some(Param {
                word,
                rule: Rule::Range { signed: true, .. },
            }) => f64::from(*word as i16),
            Some(p) => f64::from(p.word),
            None => 0.0,
        }
    }

    fn slope(&self) -> f64 {
        self.param_f64(HEAT_CURVE_SLOPE) / 10.0
    }

    /// Recomputes the six curve points from the slope (for a room at 20 °C).
    fn apply_slope(&mut self) {
        let slope = self.slope();
        for (i, outdoor) in CURVE_OUTDOOR.iter().enumerate() {
            let flow = (20.0 + slope * (20.0 - outdoor)).round().clamp(10.0, 150.0);
            if let Some(p) = self.params.get_mut(&(HEAT_CURVE_POINTS + i as u16)) {
                p.word = flow as u16;
            }
        }
    }

    /// Flow temperature the curve gives for a room at 20 °C, interpolated
    /// between the six points and extrapolated flat beyond them.
    fn base_curve(&self, outdoor: f64) -> f64 {
        let points: Vec<(f64, f64)> = CURVE_OUTDOOR
            .iter()
            .enumerate()
            .map(|(i, &o)| (o, self.param_f64(HEAT_CURVE_POINTS + i as u16)))
            .collect();
        let (first, last) = (points[0], points[points.len() - 1]);
        if outdoor <= first.0 {
            return first.1;
        }
        if outdoor >= last.0 {
            return last.1;
        }
        for pair in points.windows(2) {
            let ((o0, f0), (o1, f1)) = (pair[0], pair[1]);
            if outdoor <= o1 {
                return f0 + (f1 - f0) * (outdoor - o0) / (o1 - o0);
            }
        }
        last.1
    }

    /// The controller's flow setpoint: the curve shifted for the wanted room
    /// temperature, the displacement and the room influence, within the limits.
    fn flow_setpoint(&self) -> f64 {
        let room_setpoint = self.state.room_setpoint;
        let shift = (room_setpoint - 20.0) * (1.0 + self.slope());
        let influence = self.param_f64(ROOM_INFLUENCE) / 10.0 * (room_setpoint - self.state.room);
        let raw = self.base_curve(self.state.outdoor)
            + shift
            + self.param_f64(PARALLEL_DISPLACEMENT)
            + influence;
        let (min, max) = (self.param_f64(FLOW_MIN), self.param_f64(FLOW_MAX));
        raw.clamp(min.min(max), max.max(min))
    }

    /// The room temperature a given flow temperature sustains: the inverse of
    /// the curve shift, so a flow on setpoint holds the room on its setpoint.
    fn room_from_flow(&self, flow: f64) -> f64 {
        20.0 + (flow - self.base_curve(self.state.outdoor)) / (1.0 + self.slope())
    }

    fn return_target(&self) -> f64 {
        self.state.room + 0.55 * (self.state.flow - self.state.room)
    }

    fn outdoor_at(&self, clock: WallClock) -> f64 {
        // Coldest around 05:00, warmest around 17:00, shifted per device.
        let t = clock.seconds_of_day - self.outdoor_phase - 5.0 * 3_600.0;
        self.outdoor_mean - self.outdoor_amplitude * (2.0 * PI * t / 86_400.0).cos()
    }

    fn room_setpoint_at(&self, clock: WallClock) -> f64 {
        let comfort = self.param_f64(ROOM_SETPOINT_COMFORT) / 10.0;
        let saving = self.param_f64(ROOM_SETPOINT_SAVING) / 10.0;
        match self.holding(MODE) {
            Some(1) => comfort,
            Some(2) => saving,
            Some(3) => 8.0,
            _ if self.in_comfort_period(clock) => comfort,
            _ => saving,
        }
    }

    fn in_comfort_period(&self, clock: WallClock) -> bool {
        let base = SCHEDULE_START + u16::from(clock.weekday) * SCHEDULE_REGISTERS_PER_DAY;
        let minutes = |hhmm: u16| f64::from(hhmm / 100 * 60 + hhmm % 100);
        let now = clock.seconds_of_day / 60.0;
        (0..3u16).any(|period| {
            let start = self.holding(base + 2 * period).unwrap_or(0);
            let stop = self.holding(base + 2 * period + 1).unwrap_or(0);
            start < stop && (minutes(start)..minutes(stop)).contains(&now)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOON_MONDAY: WallClock = WallClock {
        seconds_of_day: 12.0 * 3_600.0,
        weekday: 0,
    };

    #[test]
    fn weekday_from_unix_time() {
        assert_eq!(WallClock::from_unix(0.0).weekday, 3);
        // 2024-01-01 00:00 UTC was a Monday.
        assert_eq!(WallClock::from_unix(1_704_067_200.0).weekday, 0);
    }

    #[test]
    fn starts_in_steady_state_on_the_curve() {
        let plant = Plant::new(0, NOON_MONDAY);
        let s = plant.state();
        assert!((s.room - 21.0).abs() < 1e-9, "comfort period at noon");
        assert!((s.flow - s.flow_setpoint).abs() < 1e-9);
        assert!(s.flow > s.return_temp && s.return_temp > s.room);
    }

    #[test]
    fn refused_writes_change_nothing() {
        let mut plant = Plant::new(0, NOON_MONDAY);
        assert_eq!(
            plant.write(ROOM_SETPOINT_COMFORT, &[301]),
            Err(ExceptionCode::IllegalDataValue)
        );
        assert_eq!(
            plant.write(ROOM_SETPOINT_COMFORT, &[220, 999]),
            Err(ExceptionCode::IllegalDataValue)
        );
        assert_eq!(plant.holding(ROOM_SETPOINT_COMFORT), Some(210));
        assert_eq!(
            plant.write(11_000, &[1]),
            Err(ExceptionCode::IllegalDataAddress)
        );
        assert_eq!(
            plant.write(SCHEDULE_START, &[2460]),
            Err(ExceptionCode::IllegalDataValue)
        );
        assert_eq!(
            plant.write(PARALLEL_DISPLACEMENT, &[(-3i16) as u16]),
            Ok(())
        );
    }

    #[test]
    fn slope_write_recomputes_the_curve() {
        let mut plant = Plant::new(0, NOON_MONDAY);
        let before = plant
            .read_holding(HEAT_CURVE_POINTS, 6)
            .expect("curve exists");
        plant.write(HEAT_CURVE_SLOPE, &[18]).expect("valid slope");
        let after = plant
            .read_holding(HEAT_CURVE_POINTS, 6)
            .expect("curve exists");
        assert!(after[0] > before[0]);
        assert_eq!(after[0], 110);
    }

    #[test]
    fn a_higher_setpoint_warms_the_plant() {
        let mut plant = Plant::new(3, NOON_MONDAY);
        let before = plant.state();
        plant
            .write(ROOM_SETPOINT_COMFORT, &[250])
            .expect("valid setpoint");
        for _ in 0..20 {
            plant.advance(0.5, NOON_MONDAY);
        }
        let after = plant.state();
        assert!(after.flow_setpoint > before.flow_setpoint);
        assert!(after.flow > before.flow);
        assert!(after.room > before.room);
    }

    #[test]
    fn schedule_switches_to_saving_at_night() {
        let night = WallClock {
            seconds_of_day: 2.0 * 3_600.0,
            weekday: 0,
        };
        let plant = Plant::new(0, night);
        assert!((plant.state().room_setpoint - 17.0).abs() < 1e-9);
    }

    #[test]
    fn unknown_input_registers_are_refused() {
        let plant = Plant::new(0, NOON_MONDAY);
        assert_eq!(plant.read_input(S1_OUTDOOR, 6).map(|w| w.len()), Ok(6));
        assert_eq!(
            plant.read_input(S1_OUTDOOR, 7),
            Err(ExceptionCode::IllegalDataAddress)
        );
    }
}
