//! [`PointReader`] over Modbus: reads a whole profile from one device in as
//! few block reads as the device's limits allow, and keeps that plan between
//! polls. A block the device refuses (illegal address or value: it covers a
//! gap or a point the device does not serve) is split into single points
//! until the plan is next rebuilt; a single point it refuses is skipped and
//! said once.

use std::collections::HashSet;

use async_trait::async_trait;
use hearth_domain::error::InvalidValue;
use hearth_domain::model::{Device, DeviceProfile};
use hearth_domain::ports::{FieldError, PointReader, PointValue};
use hearth_domain::PointKey;
use tokio::time::Instant;

use crate::blocks::{plan_reads, ReadBlock};
use crate::gateway::{exception_code, ModbusGateway};
use crate::point::{modbus_points, ModbusPoint};

/// One device's reads of one profile.
pub struct ModbusReader {
    gateway: ModbusGateway,
    device: Device,
    /// The profile's point keys, for messages, by index.
    keys: Vec<PointKey>,
    /// The points' Modbus sections, by the same index.
    points: Vec<ModbusPoint>,
    blocks: Vec<ReadBlock>,
    replan_at: Option<Instant>,
    /// Points the device refused, logged once rather than every poll.
    refused: HashSet<usize>,
}

impl ModbusReader {
    /// A reader of `profile`'s points from `device`, or why the profile has
    /// no usable Modbus addresses.
    pub fn new(
        gateway: ModbusGateway,
        device: Device,
        profile: &DeviceProfile,
    ) -> Result<Self, InvalidValue> {
        let points = modbus_points(profile)?;
        let blocks = plan_reads(&points, gateway.config().max_gap);
        Ok(Self {
            gateway,
            device,
            keys: profile.points.iter().map(|p| p.key.clone()).collect(),
            points,
            blocks,
            replan_at: None,
            refused: HashSet::new(),
        })
    }

    /// The block reads the next read will make.
    pub fn blocks(&self) -> &[ReadBlock] {
        &self.blocks
    }

    fn refuse(&mut self, point: usize, reason: &str) {
        if self.refused.insert(point) {
            let key = self.keys.get(point).map(PointKey::as_str).unwrap_or("?");
            tracing::warn!(device = %self.device.id, point = key, reason, "Point could not be read; skipping it.");
        }
    }
}

#[async_trait]
impl PointReader for ModbusReader {
    async fn read(&mut self, values: &mut Vec<PointValue>) -> Result<(), FieldError> {
        values.clear();
        if self.replan_at.is_some_and(|at| Instant::now() >= at) {
            self.blocks = plan_reads(&self.points, self.gateway.config().max_gap);
            self.replan_at = None;
        }
        let mut refused = Vec::new();
        let mut i = 0;
        while let Some(block) = self.blocks.get(i) {
            let result = self
                .gateway
                .read_registers(&self.device, block.kind, block.address, block.count)
                .await;
            // Re-borrowed after the await: `self.blocks` may change below.
            let Some(block) = self.blocks.get(i) else {
                break;
            };
            let code = result.as_ref().err().and_then(exception_code);
            match (result, code) {
                (Ok(words), _) => {
                    for (point, value) in block.decoded(&self.points, &words) {
                        match value {
                            Ok(value) => values.push(PointValue { point, value }),
                            Err(reason) => refused.push((point, reason)),
                        }
                    }
                    i += 1;
                }
                // Illegal address or value: the block covers something the
                // device does not serve (a bridged gap, an unknown point).
                (Err(_), Some(code @ (2 | 3))) if block.points.len() > 1 => {
                    tracing::warn!(
                        device = %self.device.id,
                        address = block.address,
                        count = block.count,
                        code,
                        "Device refused a block read; reading its points one by one."
                    );
                    let split = block.split(&self.points);
                    self.blocks.splice(i..=i, split);
                    self.replan_at = Some(Instant::now() + self.gateway.config().replan_every);
                }
                (Err(_), Some(code @ (2 | 3))) => {
                    refused.extend(
                        block
                            .points
                            .iter()
                            .map(|&p| (p, format!("exception {code}"))),
                    );
                    i += 1;
                }
                (Err(other), _) => return Err(other),
            }
        }
        for (point, reason) in refused {
            self.refuse(point, &reason);
        }
        Ok(())
    }
}
