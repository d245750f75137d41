//! Read planning: which block reads fetch every point of a profile with as few
//! round trips as the device's limits allow, and decoding points out of them.

use crate::point::{ModbusPoint, RegisterKind};

/// Most registers one FC03/FC04 read may ask for (ECL limit: ADU ≤ 240 bytes).
pub const MAX_BLOCK_REGISTERS: u16 = 123;

/// Unused registers a block may bridge by default to save a round trip.
pub const DEFAULT_MAX_GAP: u16 = 8;

/// One read request covering one or more points of one register kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadBlock {
    pub kind: RegisterKind,
    pub address: u16,
    pub count: u16,
    /// Indices into the planned point list, ordered by address.
    pub points: Vec<usize>,
}

impl ReadBlock {
    /// Whether the block reads registers no point needs (a bridged gap).
    pub fn bridges_gap(&self, points: &[ModbusPoint]) -> bool {
        let needed: u32 = points_needed(self, points);
        needed < u32::from(self.count)
    }

    /// One block per point, for devices that refuse a bridged or merged block.
    pub fn split(&self, points: &[ModbusPoint]) -> Vec<ReadBlock> {
        self.points
            .iter()
            .filter_map(|&i| points.get(i).map(|p| (i, p)))
            .map(|(i, p)| ReadBlock {
                kind: self.kind,
                address: p.address,
                count: p.data_type.words(),
                points: vec![i],
            })
            .collect()
    }

    /// Decodes every point of the block from the block's registers, by
    /// index into `points`. A point whose registers are missing or do not
    /// decode is returned as an error message instead of failing the whole
    /// block.
    pub fn decode(
        &self,
        points: &[ModbusPoint],
        words: &[u16],
    ) -> Vec<(usize, Result<f64, String>)> {
        self.decoded(points, words).collect()
    }

    /// [`decode`](Self::decode) without collecting: each point of the block
    /// with its value, in the block's order. The poller's path, which runs
    /// millions of times a second and should allocate nothing per point.
    pub fn decoded<'a>(
        &'a self,
        points: &'a [ModbusPoint],
        words: &'a [u16],
    ) -> impl Iterator<Item = (usize, Result<f64, String>)> + 'a {
        self.points
            .iter()
            .filter_map(|&i| points.get(i).map(|p| (i, p)))
            .map(move |(i, p)| {
                let start = usize::from(p.address.wrapping_sub(self.address));
                let end = start + usize::from(p.data_type.words());
                let value = match (p.address >= self.address, words.get(start..end)) {
                    (true, Some(slice)) => p.decode(slice).map_err(|e| e.to_string()),
                    _ => Err(format!(
                        "registers {}+{} lie outside the block read at {} (+{})",
                        p.address,
                        p.data_type.words(),
                        self.address,
                        words.len()
                    )),
                };
                (i, value)
            })
    }
}

/// Registers actually covered by the block's points (union of their ranges).
fn points_needed(block: &ReadBlock, points: &[ModbusPoint]) -> u32 {
    let mut covered = vec![false; usize::from(block.count)];
    for p in block.points.iter().filter_map(|&i| points.get(i)) {
        let start = u32::from(p.address).saturating_sub(u32::from(block.address));
        for offset in start..start + u32::from(p.data_type.words()) {
            if let Some(slot) = usize::try_from(offset)
                .ok()
                .and_then(|o| covered.get_mut(o))
            {
                *slot = true;
            }
        }
    }
    covered.iter().filter(|c| **c).count() as u32
}

/// Plans block reads for `points`: grouped by register kind (holding first),
/// sorted by address, contiguous or nearby points (at most `max_gap` unused
/// registers apart) merged while the block stays within
/// [`MAX_BLOCK_REGISTERS`]. A multi-register point is never split across blocks.
pub fn plan_reads(points: &[ModbusPoint], max_gap: u16) -> Vec<ReadBlock> {
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by_key(|&i| {
        (
            points[i].register,
            points[i].address,
            points[i].data_type.words(),
        )
    });

    let mut blocks: Vec<ReadBlock> = Vec::new();
    // End (exclusive) of the current block, as u32 so address 65535 + 2 words cannot wrap.
    let mut current_end: u32 = 0;
    for i in order {
        let p = &points[i];
        let start = u32::from(p.address);
        let end = start + u32::from(p.data_type.words());
        if let Some(block) = blocks.last_mut() {
            let block_start = u32::from(block.address);
            let near = start <= current_end + u32::from(max_gap);
            let new_end = current_end.max(end);
            let fits = new_end - block_start <= u32::from(MAX_BLOCK_REGISTERS);
            if block.kind == p.register && near && fits {
                current_end = new_end;
                // Fits in u16: bounded by MAX_BLOCK_REGISTERS above.
                block.count = (new_end - block_start) as u16;
                block.points.push(i);
                continue;
            }
        }
        current_end = end;
        blocks.push(ReadBlock {
            kind: p.register,
            address: p.address,
            count: p.data_type.words(),
            points: vec![i],
        });
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::point::{DataType, Scale, WordOrder};

    fn point(_key: &str, register: RegisterKind, address: u16, data_type: DataType) -> ModbusPoint {
        ModbusPoint {
            register,
            address,
            data_type,
            word_order: WordOrder::HighFirst,
            scale: Scale::default(),
            offset: 0.0,
        }
    }

    fn spans(blocks: &[ReadBlock]) -> Vec<(RegisterKind, u16, u16)> {
        blocks
            .iter()
            .map(|b| (b.kind, b.address, b.count))
            .collect()
    }

    #[test]
    fn contiguous_points_make_one_block() {
        let points: Vec<_> = (0..6)
            .map(|i| {
                point(
                    &format!("s{i}"),
                    RegisterKind::Input,
                    10_200 + i,
                    DataType::I16,
                )
            })
            .collect();
        let blocks = plan_reads(&points, 0);
        assert_eq!(spans(&blocks), vec![(RegisterKind::Input, 10_200, 6)]);
        assert_eq!(blocks[0].points, vec![0, 1, 2, 3, 4, 5]);
        assert!(!blocks[0].bridges_gap(&points));
    }

    #[test]
    fn small_gaps_are_bridged_and_large_ones_are_not() {
        let points = vec![
            point("a", RegisterKind::Holding, 100, DataType::U16),
            point("b", RegisterKind::Holding, 103, DataType::U16), // gap of 2
            point("c", RegisterKind::Holding, 120, DataType::U16), // gap of 16
        ];
        let blocks = plan_reads(&points, 2);
        assert_eq!(
            spans(&blocks),
            vec![
                (RegisterKind::Holding, 100, 4),
                (RegisterKind::Holding, 120, 1)
            ]
        );
        assert!(blocks[0].bridges_gap(&points));
        // With no bridging allowed the gap splits the block.
        assert_eq!(plan_reads(&points, 0).len(), 3);
    }

    #[test]
    fn blocks_never_exceed_the_register_limit() {
        let points: Vec<_> = (0..300)
            .map(|i| point(&format!("p{i}"), RegisterKind::Holding, i, DataType::U16))
            .collect();
        let blocks = plan_reads(&points, 8);
        assert_eq!(
            spans(&blocks),
            vec![
                (RegisterKind::Holding, 0, 123),
                (RegisterKind::Holding, 123, 123),
                (RegisterKind::Holding, 246, 54)
            ]
        );
        assert_eq!(blocks.iter().map(|b| b.points.len()).sum::<usize>(), 300);
    }

    #[test]
    fn a_gap_is_never_bridged_across_the_limit() {
        let mut points: Vec<_> = (0..121)
            .map(|i| point(&format!("p{i}"), RegisterKind::Holding, i, DataType::U16))
            .collect();
        // Within the gap allowance of 120, but 0..=124 would be 125 registers.
        points.push(point("c", RegisterKind::Holding, 124, DataType::U16));
        let blocks = plan_reads(&points, 8);
        assert_eq!(
            spans(&blocks),
            vec![
                (RegisterKind::Holding, 0, 121),
                (RegisterKind::Holding, 124, 1)
            ]
        );
    }

    #[test]
    fn thirty_two_bit_points_are_never_split() {
        let mut points: Vec<_> = (0..121)
            .map(|i| point(&format!("p{i}"), RegisterKind::Holding, i, DataType::U16))
            .collect();
        // Occupies 121 and 122: still fits (0..=122 is 123 registers).
        points.push(point("wide1", RegisterKind::Holding, 121, DataType::U32));
        // Occupies 123 and 124: would straddle the limit, so it starts a new block.
        points.push(point("wide2", RegisterKind::Holding, 123, DataType::F32));
        let blocks = plan_reads(&points, 0);
        assert_eq!(
            spans(&blocks),
            vec![
                (RegisterKind::Holding, 0, 123),
                (RegisterKind::Holding, 123, 2)
            ]
        );
        let words: Vec<u16> = vec![0, 7];
        let decoded = blocks[1].decode(&points, &words);
        assert_eq!(decoded.len(), 1);
        assert_eq!(decoded[0].0, points.len() - 1, "the last point, wide2");
        assert_eq!(decoded[0].1, Ok(f64::from(f32::from_bits(7))));
    }

    #[test]
    fn mixed_kinds_are_planned_separately_even_at_the_same_address() {
        let points = vec![
            point("in", RegisterKind::Input, 10, DataType::U16),
            point("hold", RegisterKind::Holding, 10, DataType::U16),
            point("hold2", RegisterKind::Holding, 11, DataType::U16),
            point("in2", RegisterKind::Input, 11, DataType::I32),
        ];
        let blocks = plan_reads(&points, 4);
        assert_eq!(
            spans(&blocks),
            vec![(RegisterKind::Holding, 10, 2), (RegisterKind::Input, 10, 3)]
        );
        assert_eq!(blocks[0].points, vec![1, 2]);
        assert_eq!(blocks[1].points, vec![0, 3]);
    }

    #[test]
    fn overlapping_points_share_registers() {
        let points = vec![
            point("wide", RegisterKind::Holding, 10, DataType::U32),
            point("low", RegisterKind::Holding, 11, DataType::U16),
        ];
        let blocks = plan_reads(&points, 0);
        assert_eq!(spans(&blocks), vec![(RegisterKind::Holding, 10, 2)]);
        let decoded = blocks[0].decode(&points, &[1, 2]);
        assert_eq!(decoded[0].1, Ok(65_538.0));
        assert_eq!(decoded[1].1, Ok(2.0));
    }

    #[test]
    fn last_register_does_not_wrap() {
        let points = vec![
            point("end", RegisterKind::Holding, 65_534, DataType::U32),
            point("first", RegisterKind::Holding, 0, DataType::U16),
        ];
        let blocks = plan_reads(&points, 8);
        assert_eq!(
            spans(&blocks),
            vec![
                (RegisterKind::Holding, 0, 1),
                (RegisterKind::Holding, 65_534, 2)
            ]
        );
    }

    #[test]
    fn decode_reports_short_answers_per_point() {
        let points = vec![
            point("a", RegisterKind::Input, 0, DataType::I16),
            point("b", RegisterKind::Input, 1, DataType::I16),
        ];
        let blocks = plan_reads(&points, 0);
        let decoded = blocks[0].decode(&points, &[(-5i16) as u16]);
        assert_eq!(decoded[0].1, Ok(-5.0));
        assert!(decoded[1].1.is_err());
    }

    #[test]
    fn split_gives_one_block_per_point() {
        let points = vec![
            point("a", RegisterKind::Holding, 0, DataType::U16),
            point("b", RegisterKind::Holding, 3, DataType::U32),
        ];
        let blocks = plan_reads(&points, 8);
        assert_eq!(blocks.len(), 1);
        assert_eq!(
            spans(&blocks[0].split(&points)),
            vec![(RegisterKind::Holding, 0, 1), (RegisterKind::Holding, 3, 2)]
        );
    }
}
