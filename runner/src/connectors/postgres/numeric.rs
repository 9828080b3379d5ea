//! PostgreSQL's binary `numeric`: `ndigits: i16, weight: i16, sign: u16, dscale: u16`, then
//! `ndigits` base-10000 digits, most significant first; the first digit is worth
//! `10000^weight`. Converted to and from Decimal128 integers and decimal text without going
//! through strings or floats, so every digit survives.

use std::fmt::Write;

use bytes::{BufMut, BytesMut};

const NBASE: u32 = 10_000;
const POSITIVE: u16 = 0x0000;
const NEGATIVE: u16 = 0x4000;
const NAN: u16 = 0xC000;
const PLUS_INFINITY: u16 = 0xD000;
const MINUS_INFINITY: u16 = 0xF000;
/// PostgreSQL's limit on the digits after the decimal point (NUMERIC_DSCALE_MAX).
const DSCALE_MAX: i64 = 0x3FFF;

/// Why a numeric value has no Decimal128 or wire form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NumericError {
    /// The bytes are not a binary numeric.
    #[error("malformed binary numeric")]
    Malformed,
    /// `NaN`, which Decimal128 cannot hold.
    #[error("NaN has no decimal value")]
    NaN,
    /// `Infinity` or `-Infinity`, which Decimal128 cannot hold.
    #[error("infinity has no decimal value")]
    Infinity,
    /// More digits than Decimal128 holds.
    #[error("too many digits for a 38-digit decimal")]
    Overflow,
    /// More fractional digits than the target scale keeps.
    #[error("more fractional digits than the column's scale")]
    Inexact,
    /// Text that is not a number.
    #[error("not a number")]
    NotANumber,
}

struct Header {
    ndigits: usize,
    weight: i16,
    sign: u16,
    dscale: u16,
}

fn header(bytes: &[u8]) -> Result<Header, NumericError> {
    if bytes.len() < 8 {
        return Err(NumericError::Malformed);
    }
    let ndigits = i16::from_be_bytes([bytes[0], bytes[1]]);
    let h = Header {
        ndigits: usize::try_from(ndigits).map_err(|_| NumericError::Malformed)?,
        weight: i16::from_be_bytes([bytes[2], bytes[3]]),
        sign: u16::from_be_bytes([bytes[4], bytes[5]]),
        dscale: u16::from_be_bytes([bytes[6], bytes[7]]),
    };
    if bytes.len() != 8 + 2 * h.ndigits {
        return Err(NumericError::Malformed);
    }
    Ok(h)
}

fn digit(bytes: &[u8], i: usize) -> Result<u32, NumericError> {
    let d = u32::from(u16::from_be_bytes([bytes[8 + 2 * i], bytes[9 + 2 * i]]));
    if d >= NBASE {
        return Err(NumericError::Malformed);
    }
    Ok(d)
}

/// The unscaled Decimal128 integer of a binary numeric at `scale` (value × 10^scale).
pub fn to_i128(bytes: &[u8], scale: i8) -> Result<i128, NumericError> {
    let h = header(bytes)?;
    match h.sign {
        POSITIVE | NEGATIVE => {}
        NAN => return Err(NumericError::NaN),
        PLUS_INFINITY | MINUS_INFINITY => return Err(NumericError::Infinity),
        _ => return Err(NumericError::Malformed),
    }
    // Digit i is worth 10^(4 * (weight - i) + scale) units of the result. Digits worth at
    // least one unit are summed Horner-style; the first digit below that (a fractional group
    // the scale cuts through) contributes its leading decimals, and must not lose any.
    let unit_exponent = |i: usize| 4 * (i32::from(h.weight) - i as i32) + i32::from(scale);
    let whole = (0..h.ndigits)
        .take_while(|&i| unit_exponent(i) >= 0)
        .count();
    // Four base-10000 digits fit an i64, which is much cheaper than i128 arithmetic.
    let mut small: i64 = 0;
    for i in 0..whole.min(4) {
        small = small * i64::from(NBASE) + i64::from(digit(bytes, i)?);
    }
    let mut acc = i128::from(small);
    for i in 4..whole {
        let d = i128::from(digit(bytes, i)?);
        acc = acc
            .checked_mul(i128::from(NBASE))
            .and_then(|a| a.checked_add(d))
            .ok_or(NumericError::Overflow)?;
    }
    if whole > 0 {
        acc = pow10(unit_exponent(whole - 1))
            .and_then(|f| acc.checked_mul(f))
            .ok_or(NumericError::Overflow)?;
    }
    for i in whole..h.ndigits {
        let d = i128::from(digit(bytes, i)?);
        if d == 0 {
            continue;
        }
        let divisor = pow10(-unit_exponent(i)).ok_or(NumericError::Inexact)?;
        if i > whole || d % divisor != 0 {
            return Err(NumericError::Inexact);
        }
        acc = acc.checked_add(d / divisor).ok_or(NumericError::Overflow)?;
    }
    Ok(if h.sign == NEGATIVE { -acc } else { acc })
}

fn pow10(exponent: i32) -> Option<i128> {
    10i128.checked_pow(u32::try_from(exponent).ok()?)
}

/// Writes a binary numeric as PostgreSQL prints it: `dscale` fractional digits, `NaN`,
/// `Infinity`, `-Infinity`.
pub fn write_text(bytes: &[u8], out: &mut impl Write) -> Result<(), NumericError> {
    let h = header(bytes)?;
    let fmt = |_| NumericError::Malformed;
    match h.sign {
        POSITIVE => {}
        NEGATIVE => out.write_char('-').map_err(fmt)?,
        NAN => return out.write_str("NaN").map_err(fmt),
        PLUS_INFINITY => return out.write_str("Infinity").map_err(fmt),
        MINUS_INFINITY => return out.write_str("-Infinity").map_err(fmt),
        _ => return Err(NumericError::Malformed),
    }
    let at = |i: i32| -> Result<u32, NumericError> {
        if i >= 0 && (i as usize) < h.ndigits {
            digit(bytes, i as usize)
        } else {
            Ok(0)
        }
    };
    let weight = i32::from(h.weight);
    if weight < 0 {
        out.write_char('0').map_err(fmt)?;
    } else {
        write!(out, "{}", at(0)?).map_err(fmt)?;
        for i in 1..=weight {
            write!(out, "{:04}", at(i)?).map_err(fmt)?;
        }
    }
    if h.dscale > 0 {
        out.write_char('.').map_err(fmt)?;
        let mut left = usize::from(h.dscale);
        let mut i = weight + 1;
        while left > 0 {
            let group = format_group(at(i)?);
            let take = left.min(4);
            out.write_str(
                std::str::from_utf8(&group[..take]).map_err(|_| NumericError::Malformed)?,
            )
            .map_err(fmt)?;
            left -= take;
            i += 1;
        }
    }
    Ok(())
}

fn format_group(d: u32) -> [u8; 4] {
    [
        b'0' + (d / 1000) as u8,
        b'0' + (d / 100 % 10) as u8,
        b'0' + (d / 10 % 10) as u8,
        b'0' + (d % 10) as u8,
    ]
}

/// Unsigned integers the encoder splits into base-10000 digits; u64 where the value fits,
/// because u128 division is a library call.
trait Digits: Copy {
    fn div_rem(self, by: u32) -> (Self, u32);
    fn is_zero(self) -> bool;
}

impl Digits for u64 {
    fn div_rem(self, by: u32) -> (Self, u32) {
        (self / u64::from(by), (self % u64::from(by)) as u32)
    }
    fn is_zero(self) -> bool {
        self == 0
    }
}

impl Digits for u128 {
    fn div_rem(self, by: u32) -> (Self, u32) {
        (self / u128::from(by), (self % u128::from(by)) as u32)
    }
    fn is_zero(self) -> bool {
        self == 0
    }
}

/// Base-10000 digits of `int` (integer part) and `frac` (the `scale` fractional digits), most
/// significant first, into `digits`; returns how many and the weight of the first.
fn split<T: Digits>(int: T, frac: T, scale: u8, digits: &mut [u16; 24]) -> (usize, i16) {
    let mut frac_groups = [0u16; 12];
    let n_frac = usize::from(scale).div_ceil(4);
    let mut f = frac;
    let mut k = 0;
    let partial = u32::from(scale % 4);
    if partial != 0 {
        let (rest, low) = f.div_rem(10u32.pow(partial));
        frac_groups[0] = (low * 10u32.pow(4 - partial)) as u16;
        f = rest;
        k = 1;
    }
    while k < n_frac {
        let (rest, low) = f.div_rem(NBASE);
        frac_groups[k] = low as u16;
        f = rest;
        k += 1;
    }
    let mut int_groups = [0u16; 12];
    let mut n_int = 0;
    let mut i = int;
    while !i.is_zero() {
        let (rest, low) = i.div_rem(NBASE);
        int_groups[n_int] = low as u16;
        i = rest;
        n_int += 1;
    }
    let mut n = 0;
    for g in int_groups[..n_int]
        .iter()
        .rev()
        .chain(frac_groups[..n_frac].iter().rev())
    {
        digits[n] = *g;
        n += 1;
    }
    let mut weight = n_int as i16 - 1;
    let start = digits[..n].iter().take_while(|d| **d == 0).count();
    weight -= start as i16;
    let end = n - digits[start..n]
        .iter()
        .rev()
        .take_while(|d| **d == 0)
        .count();
    digits.copy_within(start..end, 0);
    let n = end - start;
    (n, if n == 0 { 0 } else { weight })
}

/// Appends the field (length word and value) of Decimal128 `value` at `scale` (0..=38).
pub fn put_i128(value: i128, scale: u8, buf: &mut BytesMut) {
    let abs = value.unsigned_abs();
    let mut digits = [0u16; 24];
    // Nearly every value fits 64 bits, where a division is a machine instruction rather
    // than a call into 128-bit arithmetic.
    let (n, weight) = match u64::try_from(abs) {
        Ok(small) if scale <= 19 => {
            let p10 = 10u64.pow(u32::from(scale));
            split(small / p10, small % p10, scale, &mut digits)
        }
        _ => {
            let p10 = 10u128.pow(u32::from(scale.min(38)));
            let (int, frac) = (abs / p10, abs % p10);
            match (u64::try_from(int), u64::try_from(frac)) {
                (Ok(i), Ok(f)) => split(i, f, scale, &mut digits),
                _ => split(int, frac, scale, &mut digits),
            }
        }
    };
    buf.reserve(12 + 2 * n);
    buf.put_i32(8 + 2 * n as i32);
    buf.put_i16(n as i16);
    buf.put_i16(weight);
    buf.put_u16(if value < 0 { NEGATIVE } else { POSITIVE });
    buf.put_u16(u16::from(scale));
    for d in &digits[..n] {
        buf.put_u16(*d);
    }
}

/// Appends the field (length word and value) of a decimal number written as text: an optional
/// sign, digits with an optional point, an optional exponent (`1.5e-3`), or `NaN`, `Infinity`,
/// `-Infinity`, as PostgreSQL's numeric input accepts them.
pub fn put_text(text: &str, buf: &mut BytesMut) -> Result<(), NumericError> {
    let t = text.trim();
    let special = match t.to_ascii_lowercase().as_str() {
        "nan" => Some(NAN),
        "infinity" | "+infinity" | "inf" | "+inf" => Some(PLUS_INFINITY),
        "-infinity" | "-inf" => Some(MINUS_INFINITY),
        _ => None,
    };
    if let Some(sign) = special {
        buf.put_i32(8);
        buf.put_i16(0);
        buf.put_i16(0);
        buf.put_u16(sign);
        buf.put_u16(0);
        return Ok(());
    }
    let b = t.as_bytes();
    let mut pos = 0;
    let negative = match b.first() {
        Some(b'-') => {
            pos = 1;
            true
        }
        Some(b'+') => {
            pos = 1;
            false
        }
        _ => false,
    };
    let int_start = pos;
    while pos < b.len() && b[pos].is_ascii_digit() {
        pos += 1;
    }
    let int_digits = &b[int_start..pos];
    let mut frac_digits: &[u8] = &[];
    if pos < b.len() && b[pos] == b'.' {
        pos += 1;
        let start = pos;
        while pos < b.len() && b[pos].is_ascii_digit() {
            pos += 1;
        }
        frac_digits = &b[start..pos];
    }
    if int_digits.is_empty() && frac_digits.is_empty() {
        return Err(NumericError::NotANumber);
    }
    let mut exponent: i64 = 0;
    if pos < b.len() && (b[pos] == b'e' || b[pos] == b'E') {
        exponent = t[pos + 1..]
            .parse::<i64>()
            .map_err(|_| NumericError::NotANumber)?;
        if exponent.abs() > 1_000_000 {
            return Err(NumericError::Overflow);
        }
        pos = b.len();
    }
    if pos != b.len() {
        return Err(NumericError::NotANumber);
    }
    let dscale = (frac_digits.len() as i64 - exponent).max(0);
    if dscale > DSCALE_MAX {
        return Err(NumericError::Overflow);
    }
    // The power of ten of the digit at index j of int_digits ++ frac_digits is point - 1 - j.
    let point = int_digits.len() as i64 + exponent;
    let digit_at = |j: usize| {
        if j < int_digits.len() {
            int_digits[j]
        } else {
            frac_digits[j - int_digits.len()]
        }
    };
    let total = int_digits.len() + frac_digits.len();
    let first = (0..total).find(|&j| digit_at(j) != b'0');
    let Some(first) = first else {
        buf.put_i32(8);
        buf.put_i16(0);
        buf.put_i16(0);
        buf.put_u16(POSITIVE);
        buf.put_u16(dscale as u16);
        return Ok(());
    };
    let last = (0..total)
        .rev()
        .find(|&j| digit_at(j) != b'0')
        .unwrap_or(first);
    let group = |j: usize| (point - 1 - j as i64).div_euclid(4);
    let weight = group(first);
    let lowest = group(last);
    let ndigits = weight - lowest + 1;
    if weight > i64::from(i16::MAX) || weight < i64::from(i16::MIN) || ndigits > i64::from(i16::MAX)
    {
        return Err(NumericError::Overflow);
    }
    buf.reserve(12 + 2 * ndigits as usize);
    buf.put_i32(8 + 2 * ndigits as i32);
    buf.put_i16(ndigits as i16);
    buf.put_i16(weight as i16);
    buf.put_u16(if negative { NEGATIVE } else { POSITIVE });
    buf.put_u16(dscale as u16);
    let mut current = weight;
    let mut value: u16 = 0;
    for j in first..=last {
        let g = group(j);
        while g < current {
            buf.put_u16(value);
            value = 0;
            current -= 1;
        }
        let power = (point - 1 - j as i64).rem_euclid(4) as u32;
        value += u16::from(digit_at(j) - b'0') * 10u16.pow(power);
    }
    buf.put_u16(value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{Decimal128Type, DecimalType};
    use proptest::prelude::*;

    fn wire(ndigits: i16, weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&ndigits.to_be_bytes());
        v.extend_from_slice(&weight.to_be_bytes());
        v.extend_from_slice(&sign.to_be_bytes());
        v.extend_from_slice(&dscale.to_be_bytes());
        for d in digits {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v
    }

    fn text_of(bytes: &[u8]) -> String {
        let mut s = String::new();
        write_text(bytes, &mut s).unwrap();
        s
    }

    fn field_of_i128(v: i128, scale: u8) -> Vec<u8> {
        let mut buf = BytesMut::new();
        put_i128(v, scale, &mut buf);
        buf[4..].to_vec()
    }

    fn field_of_text(t: &str) -> Result<Vec<u8>, NumericError> {
        let mut buf = BytesMut::new();
        put_text(t, &mut buf)?;
        let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        assert_eq!(len, buf.len() - 4);
        Ok(buf[4..].to_vec())
    }

    #[test]
    fn hand_built_values_decode_exactly() {
        // 12345.67 as PostgreSQL sends numeric(12,2): digits 1 2345 6700, weight 1.
        let v = wire(3, 1, POSITIVE, 2, &[1, 2345, 6700]);
        assert_eq!(to_i128(&v, 2), Ok(1_234_567));
        assert_eq!(to_i128(&v, 4), Ok(123_456_700));
        assert_eq!(to_i128(&v, 1), Err(NumericError::Inexact));
        assert_eq!(text_of(&v), "12345.67");
        assert_eq!(field_of_i128(1_234_567, 2), v);
        assert_eq!(field_of_text("12345.67").unwrap(), v);
        // -0.0001 at scale 4: one digit 1 with weight -1.
        let v = wire(1, -1, NEGATIVE, 4, &[1]);
        assert_eq!(to_i128(&v, 4), Ok(-1));
        assert_eq!(text_of(&v), "-0.0001");
        assert_eq!(field_of_i128(-1, 4), v);
        // 1e20 with scale 0: one digit with weight 5; zero: no digits.
        let v = wire(1, 5, POSITIVE, 0, &[1]);
        assert_eq!(to_i128(&v, 0), Ok(100_000_000_000_000_000_000));
        assert_eq!(text_of(&v), "100000000000000000000");
        assert_eq!(field_of_i128(0, 3), wire(0, 0, POSITIVE, 3, &[]));
        assert_eq!(text_of(&wire(0, 0, POSITIVE, 3, &[])), "0.000");
    }

    #[test]
    fn special_and_broken_values_are_reported() {
        assert_eq!(to_i128(&wire(0, 0, NAN, 0, &[]), 2), Err(NumericError::NaN));
        assert_eq!(
            to_i128(&wire(0, 0, MINUS_INFINITY, 0, &[]), 2),
            Err(NumericError::Infinity)
        );
        assert_eq!(text_of(&wire(0, 0, NAN, 0, &[])), "NaN");
        assert_eq!(text_of(&wire(0, 0, PLUS_INFINITY, 0, &[])), "Infinity");
        assert_eq!(field_of_text("NaN").unwrap(), wire(0, 0, NAN, 0, &[]));
        assert_eq!(
            field_of_text("-Infinity").unwrap(),
            wire(0, 0, MINUS_INFINITY, 0, &[])
        );
        assert_eq!(to_i128(&[0, 1], 0), Err(NumericError::Malformed));
        assert_eq!(
            to_i128(&wire(1, 0, POSITIVE, 0, &[10_000]), 0),
            Err(NumericError::Malformed)
        );
        assert_eq!(
            to_i128(&wire(1, 10, POSITIVE, 0, &[1]), 0),
            Err(NumericError::Overflow)
        );
        for bad in ["", "-", ".", "1.2.3", "abc", "1e", "1x"] {
            assert_eq!(field_of_text(bad), Err(NumericError::NotANumber), "{bad}");
        }
    }

    #[test]
    fn exponents_and_padding_in_text_follow_postgres() {
        assert_eq!(
            field_of_text("1.5e3").unwrap(),
            field_of_text("1500").unwrap()
        );
        assert_eq!(text_of(&field_of_text("1.5e-3").unwrap()), "0.0015");
        assert_eq!(text_of(&field_of_text(" +007.50 ").unwrap()), "7.50");
        assert_eq!(text_of(&field_of_text("-0").unwrap()), "0");
        assert_eq!(text_of(&field_of_text("10000.0001").unwrap()), "10000.0001");
    }

    fn decimal_text(v: i128, scale: u8) -> String {
        Decimal128Type::format_decimal(v, 38, scale as i8)
    }

    #[test]
    fn decimals_at_the_edge_of_64_bits_survive_the_wire() {
        let max = i128::from(u64::MAX);
        for v in [
            max,
            max + 1,
            -max,
            -max - 1,
            10i128.pow(19) - 1,
            10i128.pow(19),
            1,
            0,
        ] {
            for scale in [0u8, 2, 4, 18, 19, 20, 38] {
                let field = field_of_i128(v, scale);
                assert_eq!(to_i128(&field, scale as i8), Ok(v), "{v} at scale {scale}");
                assert_eq!(
                    field,
                    field_of_text(&decimal_text(v, scale)).unwrap(),
                    "{v} at scale {scale}"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn decimals_survive_the_wire(v in -(10i128.pow(38) - 1)..10i128.pow(38), scale in 0u8..=38) {
            let field = field_of_i128(v, scale);
            prop_assert_eq!(to_i128(&field, scale as i8), Ok(v));
            prop_assert_eq!(text_of(&field), decimal_text(v, scale));
            prop_assert_eq!(field_of_text(&decimal_text(v, scale)).unwrap(), field);
        }

        #[test]
        fn small_decimals_survive_the_wire(v in -10_000_000i128..10_000_000, scale in 0u8..=12) {
            let field = field_of_i128(v, scale);
            prop_assert_eq!(to_i128(&field, scale as i8), Ok(v));
            prop_assert_eq!(text_of(&field), decimal_text(v, scale));
            // A wider target scale is the same value times a power of ten.
            prop_assert_eq!(to_i128(&field, scale as i8 + 2), Ok(v * 100));
        }

        #[test]
        fn decimals_of_64_bits_survive_the_wire(v in -i128::from(u64::MAX)..=i128::from(u64::MAX), scale in 0u8..=38) {
            let field = field_of_i128(v, scale);
            prop_assert_eq!(to_i128(&field, scale as i8), Ok(v));
            prop_assert_eq!(text_of(&field), decimal_text(v, scale));
            prop_assert_eq!(field_of_text(&decimal_text(v, scale)).unwrap(), field);
        }

        #[test]
        fn long_text_numbers_survive_the_wire(int in "[1-9][0-9]{0,60}", frac in "[0-9]{0,60}", neg in any::<bool>()) {
            let text = format!("{}{int}{}{frac}", if neg { "-" } else { "" }, if frac.is_empty() { "" } else { "." });
            let field = field_of_text(&text).unwrap();
            prop_assert_eq!(text_of(&field), text);
        }
    }
}
