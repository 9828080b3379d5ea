//! Rows spelled as CSV text, byte for byte as Arrow's CSV writer spells them (its number, date,
//! decimal, timestamp and null spellings, and the `csv` crate's quoting), without its
//! per-value `fmt` calls and second buffer, which were most of the cost of writing CSV.
//! Integers, floats, text, dates, timestamps without a zone or in UTC, decimals and booleans
//! are written straight into the output; any other type, and a value outside the fast path's
//! range, goes through Arrow's formatter.

use std::fmt;

use arrow::array::{Array, ArrayAccessor, ArrayRef, AsArray, RecordBatch};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Date32Type, Date64Type, Decimal32Type, Decimal64Type,
    Decimal128Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow::error::ArrowError;
use arrow::util::display::{ArrayFormatter, FormatOptions};

const QUOTE: u8 = b'"';

/// The bytes numbers, dates, decimals and booleans are spelled with (`-1.5e-7`, `NaN`, `inf`,
/// `true`, `false`, `2024-01-31`). Their values need no quoting unless one of these is the
/// delimiter.
const PLAIN_BYTES: &[u8] = b"0123456789+-.eENaninftruefals";

/// Spells rows as CSV with one delimiter, `"` quotes (doubled inside), `\n` line ends, empty
/// nulls, and quotes only where a value needs them.
pub(super) struct CsvText {
    delimiter: u8,
    /// The bytes that make a value quoted.
    specials: [u8; 4],
    /// The same, as a table.
    special: [bool; 256],
    /// Whether plain values (see `PLAIN_BYTES`) must be checked for quoting too.
    check_plain: bool,
}

impl CsvText {
    pub fn new(delimiter: u8) -> Self {
        let specials = [delimiter, QUOTE, b'\r', b'\n'];
        let mut special = [false; 256];
        for byte in specials {
            special[usize::from(byte)] = true;
        }
        Self {
            delimiter,
            specials,
            special,
            check_plain: PLAIN_BYTES.iter().any(|b| special[usize::from(*b)]),
        }
    }

    /// Appends one line of `names` (a header) to `out`.
    pub fn names<'a>(&self, names: impl IntoIterator<Item = &'a str>, out: &mut Vec<u8>) {
        let start = out.len();
        for (i, name) in names.into_iter().enumerate() {
            if i > 0 {
                out.push(self.delimiter);
            }
            let field = out.len();
            out.extend_from_slice(name.as_bytes());
            self.quote_if_needed(field, out);
        }
        self.end_line(start, out);
    }

    /// Appends every row of `batch` to `out`, a line each. Nested columns must have been
    /// turned into text before: CSV cannot hold them.
    pub fn rows(&self, batch: &RecordBatch, out: &mut Vec<u8>) -> Result<(), ArrowError> {
        let schema = batch.schema();
        let columns = schema
            .fields()
            .iter()
            .zip(batch.columns())
            .map(|(field, array)| Column::new(field.name(), array))
            .collect::<Result<Vec<_>, _>>()?;
        for row in 0..batch.num_rows() {
            let start = out.len();
            for (i, column) in columns.iter().enumerate() {
                if i > 0 {
                    out.push(self.delimiter);
                }
                if column.nulls.is_some_and(|n| n.is_null(row)) {
                    continue;
                }
                let field = out.len();
                column.spell(row, out)?;
                if !column.plain || self.check_plain {
                    self.quote_if_needed(field, out);
                }
            }
            self.end_line(start, out);
        }
        Ok(())
    }

    /// Quotes the value that starts at `field` and runs to the end of `out`, if it holds a
    /// delimiter, a quote or a line break.
    fn quote_if_needed(&self, field: usize, out: &mut Vec<u8>) {
        if !self.needs_quotes(&out[field..]) {
            return;
        }
        let value = out.split_off(field);
        out.push(QUOTE);
        for byte in value {
            if byte == QUOTE {
                out.push(QUOTE);
            }
            out.push(byte);
        }
        out.push(QUOTE);
    }

    /// Whether `value` holds a special byte: eight bytes at a time, then byte by byte.
    fn needs_quotes(&self, value: &[u8]) -> bool {
        let (words, rest) = value.as_chunks::<8>();
        words.iter().any(|word| {
            let word = u64::from_ne_bytes(*word);
            self.specials.iter().any(|byte| holds(word, *byte))
        }) || rest.iter().any(|b| self.special[usize::from(*b)])
    }

    /// Ends the line that started at `start`. A line with nothing on it would read back as
    /// no row at all, so a single empty value is written as `""`.
    fn end_line(&self, start: usize, out: &mut Vec<u8>) {
        if out.len() == start {
            out.extend_from_slice(b"\"\"");
        }
        out.push(b'\n');
    }
}

/// Whether any of the eight bytes of `word` is `byte`. XOR turns those bytes into zeros; a
/// zero byte is the only one whose high bit is clear before and set after subtracting one
/// from every byte (a borrow can only set high bits above a zero byte, so the answer is exact).
fn holds(word: u64, byte: u8) -> bool {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGHS: u64 = ONES << 7;
    let x = word ^ (ONES * u64::from(byte));
    x.wrapping_sub(ONES) & !x & HIGHS != 0
}

/// One column of a batch, ready to spell its values.
struct Column<'a> {
    name: &'a str,
    nulls: Option<&'a NullBuffer>,
    /// The fast spelling, for the types that have one.
    fast: Option<Spell<'a>>,
    formatter: ArrayFormatter<'a>,
    /// Its values use `PLAIN_BYTES` only.
    plain: bool,
}

impl<'a> Column<'a> {
    fn new(name: &'a str, array: &'a ArrayRef) -> Result<Self, ArrowError> {
        let fast = fast_spelling(array);
        let text = matches!(
            array.data_type(),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        );
        Ok(Self {
            name,
            nulls: array.nulls(),
            plain: fast.is_some() && !text,
            fast,
            formatter: ArrayFormatter::try_new(array.as_ref(), &FormatOptions::default())?,
        })
    }

    fn spell(&self, row: usize, out: &mut Vec<u8>) -> Result<(), ArrowError> {
        if let Some(spell) = &self.fast
            && spell(row, out)
        {
            return Ok(());
        }
        self.formatter
            .value(row)
            .write(&mut Bytes(out))
            .map_err(|e| ArrowError::CsvError(format!("column \"{}\": {e}", self.name)))
    }
}

/// `fmt::Write` into bytes, for Arrow's formatter.
struct Bytes<'a>(&'a mut Vec<u8>);

impl fmt::Write for Bytes<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Appends a value to the output; `false` when it leaves the value to Arrow's formatter.
type Spell<'a> = Box<dyn Fn(usize, &mut Vec<u8>) -> bool + 'a>;

/// The fast spelling of a column's values, for the types that have one.
fn fast_spelling(array: &ArrayRef) -> Option<Spell<'_>> {
    Some(match array.data_type() {
        DataType::Int8 => integers::<Int8Type>(array),
        DataType::Int16 => integers::<Int16Type>(array),
        DataType::Int32 => integers::<Int32Type>(array),
        DataType::Int64 => integers::<Int64Type>(array),
        DataType::UInt8 => integers::<UInt8Type>(array),
        DataType::UInt16 => integers::<UInt16Type>(array),
        DataType::UInt32 => integers::<UInt32Type>(array),
        DataType::UInt64 => integers::<UInt64Type>(array),
        DataType::Float32 => floats::<Float32Type>(array),
        DataType::Float64 => {
            let values = array.as_primitive::<Float64Type>().values();
            Box::new(move |row, out| {
                if !short_float(values[row], out) {
                    out.extend_from_slice(ryu::Buffer::new().format(values[row]).as_bytes());
                }
                true
            })
        }
        DataType::Decimal32(precision, scale) => {
            decimals::<Decimal32Type>(array, *precision, *scale)?
        }
        DataType::Decimal64(precision, scale) => {
            decimals::<Decimal64Type>(array, *precision, *scale)?
        }
        DataType::Decimal128(precision, scale) => {
            decimals::<Decimal128Type>(array, *precision, *scale)?
        }
        DataType::Date32 => {
            let days = array.as_primitive::<Date32Type>().values();
            Box::new(move |row, out| date(days[row], out))
        }
        DataType::Date64 => moments(array.as_primitive::<Date64Type>().values(), 1_000, b""),
        DataType::Timestamp(unit, zone) => {
            // Without a zone Arrow spells the date and time as they are; in UTC the same as
            // RFC 3339 with a `Z`. Other zones are left to it.
            let suffix: &[u8] = match zone.as_deref() {
                None => b"",
                Some("UTC" | "+00:00") => b"Z",
                Some(_) => return None,
            };
            match unit {
                TimeUnit::Second => moments(
                    array.as_primitive::<TimestampSecondType>().values(),
                    1,
                    suffix,
                ),
                TimeUnit::Millisecond => moments(
                    array.as_primitive::<TimestampMillisecondType>().values(),
                    1_000,
                    suffix,
                ),
                TimeUnit::Microsecond => moments(
                    array.as_primitive::<TimestampMicrosecondType>().values(),
                    1_000_000,
                    suffix,
                ),
                TimeUnit::Nanosecond => moments(
                    array.as_primitive::<TimestampNanosecondType>().values(),
                    1_000_000_000,
                    suffix,
                ),
            }
        }
        DataType::Boolean => {
            let values = array.as_boolean().values();
            Box::new(move |row, out| {
                out.extend_from_slice(if values.value(row) { b"true" } else { b"false" });
                true
            })
        }
        DataType::Utf8 => text(array.as_string::<i32>()),
        DataType::LargeUtf8 => text(array.as_string::<i64>()),
        DataType::Utf8View => text(array.as_string_view()),
        _ => return None,
    })
}

fn text<'a>(values: impl ArrayAccessor<Item = &'a str> + 'a) -> Spell<'a> {
    Box::new(move |row, out| {
        out.extend_from_slice(values.value(row).as_bytes());
        true
    })
}

fn integers<T>(array: &ArrayRef) -> Spell<'_>
where
    T: ArrowPrimitiveType,
    T::Native: itoa::Integer,
{
    let values = array.as_primitive::<T>().values();
    Box::new(move |row, out| {
        out.extend_from_slice(itoa::Buffer::new().format(values[row]).as_bytes());
        true
    })
}

fn floats<T>(array: &ArrayRef) -> Spell<'_>
where
    T: ArrowPrimitiveType,
    T::Native: ryu::Float,
{
    let values = array.as_primitive::<T>().values();
    Box::new(move |row, out| {
        out.extend_from_slice(ryu::Buffer::new().format(values[row]).as_bytes());
        true
    })
}

/// Decimals with a scale of 0 or more; a value with more digits than the precision is left to
/// Arrow, which cuts it to the precision.
fn decimals<T>(array: &ArrayRef, precision: u8, scale: i8) -> Option<Spell<'_>>
where
    T: ArrowPrimitiveType,
    T::Native: Into<i128>,
{
    let scale = usize::try_from(scale).ok()?;
    let precision = usize::from(precision);
    let values = array.as_primitive::<T>().values();
    Some(Box::new(move |row, out| {
        let value: i128 = values[row].into();
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(value.unsigned_abs()).as_bytes();
        if digits.len() > precision {
            return false;
        }
        if value < 0 {
            out.push(b'-');
        }
        fixed(digits, scale, out);
        true
    }))
}

/// Writes `digits` with a point before the last `decimals` of them (none for 0), and a zero
/// before the point when nothing else is there (`0.05`).
fn fixed(digits: &[u8], decimals: usize, out: &mut Vec<u8>) {
    if decimals == 0 {
        out.extend_from_slice(digits);
    } else if digits.len() > decimals {
        let (whole, fraction) = digits.split_at(digits.len() - decimals);
        out.extend_from_slice(whole);
        out.push(b'.');
        out.extend_from_slice(fraction);
    } else {
        out.extend_from_slice(b"0.");
        out.resize(out.len() + decimals - digits.len(), b'0');
        out.extend_from_slice(digits);
    }
}

/// 10^d for the decimals a short float may have.
const SCALES: [f64; 5] = [1.0, 10.0, 100.0, 1_000.0, 10_000.0];

/// Spells a float from 0.001 to 10^9 in magnitude with at most four decimals (prices, rates,
/// quantities) exactly as `ryu` does, without its general algorithm: `ryu` writes the
/// shortest digits that read back as the value, in fixed notation in this range (`12.5`,
/// `0.04`, `100.0`). Those are the digits of the fewest decimals `d` for which
/// `round(v * 10^d) / 10^d == v`: both operations round correctly, so the decimal reads back
/// as `v`; and here `v * 10^d` (under 10^13) is within 0.001 of the exact product while the
/// values that read back as `v` span under 0.0012 of it, so the rounding finds the one
/// candidate at every `d` where there is one, and no shorter spelling is passed over. `false`
/// for other values.
fn short_float(value: f64, out: &mut Vec<u8>) -> bool {
    let magnitude = value.abs();
    if !(1e-3..1e9).contains(&magnitude) {
        return false;
    }
    for (decimals, scale) in SCALES.iter().enumerate() {
        // Rounded to the nearest whole number without a call to `round`: below 2^52, adding
        // a half is exact, and the conversion cuts the rest off.
        let scaled = (magnitude * scale + 0.5) as u64;
        if scaled as f64 / scale == magnitude {
            if value < 0.0 {
                out.push(b'-');
            }
            let mut digits = itoa::Buffer::new();
            let digits = digits.format(scaled).as_bytes();
            fixed(digits, decimals, out);
            if decimals == 0 {
                out.extend_from_slice(b".0");
            }
            return true;
        }
    }
    false
}

/// Days from 1970-01-01 to 0000-01-01 and to 9999-12-31: the dates spelled `YYYY-MM-DD`.
const FIRST_DAY: i32 = -719_528;
const LAST_DAY: i32 = 2_932_896;

/// Spells a day as `YYYY-MM-DD` (proleptic Gregorian), for years 0 to 9999; others are left
/// to Arrow, which signs them or refuses them.
fn date(days: i32, out: &mut Vec<u8>) -> bool {
    if !(FIRST_DAY..=LAST_DAY).contains(&days) {
        return false;
    }
    let (year, month, day) = civil(days);
    let mut text = [b'0', b'0', b'0', b'0', b'-', b'0', b'0', b'-', b'0', b'0'];
    for (i, digit) in [year / 1000, year / 100 % 10, year / 10 % 10, year % 10]
        .into_iter()
        .enumerate()
    {
        text[i] += digit as u8;
    }
    text[5] += (month / 10) as u8;
    text[6] += (month % 10) as u8;
    text[8] += (day / 10) as u8;
    text[9] += (day % 10) as u8;
    out.extend_from_slice(&text);
    true
}

/// Moments counted in `1 / per_second` of a second from 1970-01-01T00:00:00, spelled by
/// `moment` and followed by `suffix`.
fn moments<'a>(values: &'a [i64], per_second: i64, suffix: &'a [u8]) -> Spell<'a> {
    Box::new(move |row, out| {
        if !moment(values[row], per_second, out) {
            return false;
        }
        out.extend_from_slice(suffix);
        true
    })
}

/// Spells a moment as chrono does (`2024-01-31T10:00:00`, then a point and 3, 6 or 9 digits,
/// the fewest that hold the fraction of the second, if it has one), for years 0 to 9999;
/// others are left to Arrow.
fn moment(value: i64, per_second: i64, out: &mut Vec<u8>) -> bool {
    let seconds = value.div_euclid(per_second);
    let nanos = value.rem_euclid(per_second) * (1_000_000_000 / per_second);
    let Ok(days) = i32::try_from(seconds.div_euclid(86_400)) else {
        return false;
    };
    if !date(days, out) {
        return false;
    }
    let of_day = seconds.rem_euclid(86_400);
    for (separator, part) in [
        (b'T', of_day / 3_600),
        (b':', of_day / 60 % 60),
        (b':', of_day % 60),
    ] {
        out.extend_from_slice(&[
            separator,
            b'0' + (part / 10) as u8,
            b'0' + (part % 10) as u8,
        ]);
    }
    if nanos != 0 {
        let (fraction, width) = if nanos % 1_000_000 == 0 {
            (nanos / 1_000_000, 3)
        } else if nanos % 1_000 == 0 {
            (nanos / 1_000, 6)
        } else {
            (nanos, 9)
        };
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(fraction).as_bytes();
        out.push(b'.');
        out.resize(out.len() + width - digits.len(), b'0');
        out.extend_from_slice(digits);
    }
    true
}

/// Year, month and day of a day counted from 1970-01-01, in the range `date` accepts (the
/// era arithmetic of Howard Hinnant's `civil_from_days`, on non-negative numbers only).
fn civil(days: i32) -> (u32, u32, u32) {
    // Days from -0400-03-01, the start of a 400-year era, so every quantity is non-negative
    // (year 0 is a leap year: 0000-03-01 is 60 days after 0000-01-01).
    let shifted = (days - FIRST_DAY - 60 + 146_097) as u32;
    let era = shifted / 146_097;
    let of_era = shifted % 146_097;
    let year_of_era = (of_era - of_era / 1460 + of_era / 36_524 - of_era / 146_096) / 365;
    let of_year = of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * of_year + 2) / 153;
    let day = of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = era * 400 + year_of_era + u32::from(month <= 2) - 400;
    (year, month, day)
}

#[cfg(test)]
mod tests;
