//! Encoding of one sealed block of one series: timestamps, values and
//! qualities as three `pco` streams (Pcodec picks delta order itself, so a
//! 1 s poll's timestamps cost close to nothing: delta-of-delta is zero).
//!
//! Values read from registers are integers times a decimal step (0.01 °C):
//! when every value of a block round-trips exactly through such an integer,
//! the integers are stored (a 0.01 °C random walk then costs about a bit per
//! value); otherwise the floats are stored losslessly by pco's float mode.
//! `pco` is used rather than a hand-written Gorilla coder because it beats
//! XOR floats on register data and is maintained and fuzzed upstream.

use crate::error::EmbeddedError;

/// One stored reading: µs since the epoch, value, quality code.
pub(crate) type Sample = (i64, f64, u8);

const VERSION: u8 = 1;
/// A sealed but not yet compacted block: plain rows, cheap to write; it
/// lives until its hour is compacted into a [`VERSION`] block.
const VERSION_PLAIN: u8 = 2;
const PLAIN_ROW: usize = 8 + 8 + 1;
/// Values are `integer * STEP[d]` (multiplication, as the Modbus adapter scales).
const MODE_MUL: u8 = 0;
/// Values are `integer / 10^d` (values typed in as decimals).
const MODE_DIV: u8 = 1;
/// Values are arbitrary floats.
const MODE_FLOAT: u8 = 2;
const STEP: [f64; 7] = [1.0, 0.1, 0.01, 0.001, 0.000_1, 0.000_01, 0.000_001];
const POW: [f64; 7] = [1.0, 10.0, 100.0, 1_000.0, 10_000.0, 100_000.0, 1_000_000.0];
/// Integers above this lose precision as f64; such values stay floats.
const MAX_EXACT: f64 = 9_007_199_254_740_992.0;

fn corrupt(what: impl std::fmt::Display) -> EmbeddedError {
    EmbeddedError::Corrupt(format!("reading block: {what}"))
}

/// The smallest decimal step under which every value is an exact integer,
/// with how to turn the integer back into the same f64 bits.
fn integer_form(values: &[f64]) -> Option<(u8, u8, Vec<i64>)> {
    for (d, pow) in POW.iter().enumerate() {
        for mode in [MODE_MUL, MODE_DIV] {
            let mut ints = Vec::with_capacity(values.len());
            let fits = values.iter().all(|&v| {
                let scaled = (v * pow).round();
                if !scaled.is_finite() || scaled.abs() > MAX_EXACT {
                    return false;
                }
                let back = decode_int(mode, d, scaled as i64);
                // Bit equality: -0.0 and NaN must not be folded into 0.
                let same = back.to_bits() == v.to_bits();
                if same {
                    ints.push(scaled as i64);
                }
                same
            });
            if fits {
                return Some((mode, d as u8, ints));
            }
        }
    }
    None
}

fn decode_int(mode: u8, d: usize, i: i64) -> f64 {
    if mode == MODE_MUL {
        i as f64 * STEP[d]
    } else {
        i as f64 / POW[d]
    }
}

fn put_section(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn take_section<'a>(input: &mut &'a [u8]) -> Result<&'a [u8], EmbeddedError> {
    let (len, rest) = input
        .split_first_chunk::<4>()
        .ok_or_else(|| corrupt("truncated section length"))?;
    let len = u32::from_le_bytes(*len) as usize;
    if rest.len() < len {
        return Err(corrupt("truncated section"));
    }
    let (section, rest) = rest.split_at(len);
    *input = rest;
    Ok(section)
}

fn pco_err(err: pco::errors::PcoError) -> EmbeddedError {
    corrupt(err)
}

/// Encodes samples sorted by time with unique timestamps.
pub(crate) fn encode(samples: &[Sample]) -> Result<Vec<u8>, EmbeddedError> {
    let config = pco::ChunkConfig::default();
    let times: Vec<i64> = samples.iter().map(|s| s.0).collect();
    let values: Vec<f64> = samples.iter().map(|s| s.1).collect();
    let qualities: Vec<u32> = samples.iter().map(|s| u32::from(s.2)).collect();
    let mut out = Vec::with_capacity(16 + samples.len() * 2);
    out.push(VERSION);
    match integer_form(&values) {
        Some((mode, d, ints)) => {
            out.push(mode);
            out.push(d);
            put_section(
                &mut out,
                &pco::standalone::simple_compress(&ints, &config).map_err(pco_err)?,
            );
        }
        None => {
            out.push(MODE_FLOAT);
            out.push(0);
            put_section(
                &mut out,
                &pco::standalone::simple_compress(&values, &config).map_err(pco_err)?,
            );
        }
    }
    put_section(
        &mut out,
        &pco::standalone::simple_compress(&times, &config).map_err(pco_err)?,
    );
    put_section(
        &mut out,
        &pco::standalone::simple_compress(&qualities, &config).map_err(pco_err)?,
    );
    Ok(out)
}

/// Encodes samples without compression, for blocks sealed between
/// compactions: a checkpoint then costs a copy, not thousands of codec runs
/// on short series.
pub(crate) fn encode_plain(samples: &[Sample]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + samples.len() * PLAIN_ROW);
    out.push(VERSION_PLAIN);
    for (t, v, q) in samples {
        out.extend_from_slice(&t.to_le_bytes());
        out.extend_from_slice(&v.to_bits().to_le_bytes());
        out.push(*q);
    }
    out
}

fn decode_plain(rows: &[u8]) -> Result<Vec<Sample>, EmbeddedError> {
    if !rows.len().is_multiple_of(PLAIN_ROW) {
        return Err(corrupt("truncated plain block"));
    }
    Ok(rows
        .chunks_exact(PLAIN_ROW)
        .map(|row| {
            let mut t = [0u8; 8];
            let mut v = [0u8; 8];
            t.copy_from_slice(&row[..8]);
            v.copy_from_slice(&row[8..16]);
            (
                i64::from_le_bytes(t),
                f64::from_bits(u64::from_le_bytes(v)),
                row[16],
            )
        })
        .collect())
}

/// Compresses one column of numbers as a length-prefixed section.
pub(crate) fn put_numbers<T: pco::data_types::Number>(
    out: &mut Vec<u8>,
    numbers: &[T],
) -> Result<(), EmbeddedError> {
    let bytes =
        pco::standalone::simple_compress(numbers, &pco::ChunkConfig::default()).map_err(pco_err)?;
    put_section(out, &bytes);
    Ok(())
}

/// Reads back one column written by [`put_numbers`].
pub(crate) fn take_numbers<T: pco::data_types::Number>(
    input: &mut &[u8],
) -> Result<Vec<T>, EmbeddedError> {
    pco::standalone::simple_decompress(take_section(input)?).map_err(pco_err)
}

/// Decodes a block written by [`encode`] or [`encode_plain`].
pub(crate) fn decode(block: &[u8]) -> Result<Vec<Sample>, EmbeddedError> {
    if let [VERSION_PLAIN, rows @ ..] = block {
        return decode_plain(rows);
    }
    let [version, mode, d, rest @ ..] = block else {
        return Err(corrupt("truncated header"));
    };
    if *version != VERSION {
        return Err(corrupt(format!("unknown version {version}")));
    }
    let d = usize::from(*d);
    if d >= STEP.len() {
        return Err(corrupt(format!("decimal step {d} out of range")));
    }
    let mut input = rest;
    let value_bytes = take_section(&mut input)?;
    let values: Vec<f64> = match *mode {
        MODE_FLOAT => pco::standalone::simple_decompress(value_bytes).map_err(pco_err)?,
        MODE_MUL | MODE_DIV => {
            let ints: Vec<i64> =
                pco::standalone::simple_decompress(value_bytes).map_err(pco_err)?;
            ints.into_iter().map(|i| decode_int(*mode, d, i)).collect()
        }
        other => return Err(corrupt(format!("unknown value mode {other}"))),
    };
    let times: Vec<i64> =
        pco::standalone::simple_decompress(take_section(&mut input)?).map_err(pco_err)?;
    let qualities: Vec<u32> =
        pco::standalone::simple_decompress(take_section(&mut input)?).map_err(pco_err)?;
    if times.len() != values.len() || times.len() != qualities.len() {
        return Err(corrupt("streams of different lengths"));
    }
    Ok(times
        .into_iter()
        .zip(values)
        .zip(qualities)
        .map(|((t, v), q)| (t, v, u8::try_from(q).unwrap_or(u8::MAX)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(samples: &[Sample]) -> Vec<Sample> {
        decode(&encode(samples).expect("encodes")).expect("decodes")
    }

    #[test]
    fn register_values_round_trip_bit_exact_as_integers() {
        // Given values scaled from registers the way the Modbus adapter does
        let samples: Vec<Sample> = (0..1_000)
            .map(|i| (i * 1_000_000, f64::from(2_000 + (i % 7) as i32) * 0.01, 0))
            .collect();
        // When encoded
        let block = encode(&samples).expect("encodes");
        // Then the integer mode was chosen and every bit comes back
        assert_eq!(block[1], MODE_MUL);
        assert_eq!(decode(&block).expect("decodes"), samples);
        assert!(block.len() < samples.len(), "{} bytes", block.len());
    }

    #[test]
    fn arbitrary_floats_and_odd_values_round_trip() {
        // Given values no decimal step represents, plus signed zero and NaN
        let samples = vec![
            (-5, std::f64::consts::PI, 2),
            (0, -0.0, 0),
            (7, f64::NAN, 1),
            (9, 1e300, 0),
        ];
        // When they round-trip, then the bits are unchanged
        let back = roundtrip(&samples);
        assert_eq!(back.len(), samples.len());
        for (a, b) in samples.iter().zip(&back) {
            assert_eq!((a.0, a.1.to_bits(), a.2), (b.0, b.1.to_bits(), b.2));
        }
    }

    #[test]
    fn plain_blocks_round_trip_and_are_not_final() {
        let samples = vec![(1, 1.25, 0), (2, f64::NAN, 2)];
        let block = encode_plain(&samples);
        assert_eq!(block[0], VERSION_PLAIN);
        let back = decode(&block).expect("decodes");
        assert_eq!(back[0], samples[0]);
        assert!(back[1].1.is_nan());
        assert!(decode(&block[..block.len() - 1]).is_err());
    }

    #[test]
    fn a_damaged_block_is_an_error_not_a_panic() {
        // Given a valid block cut short or with an unknown version
        let block = encode(&[(1, 1.5, 0), (2, 2.5, 0)]).expect("encodes");
        // When decoded, then each is a typed error
        assert!(decode(&block[..block.len() - 3]).is_err());
        assert!(decode(&[9, 0, 0]).is_err());
        assert!(decode(&[]).is_err());
    }
}
