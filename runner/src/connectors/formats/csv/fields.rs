//! Splitting a block of whole CSV records into fields, with `memchr` jumps from one
//! delimiter, quote or line end to the next instead of a state machine step per byte.
//!
//! The result is exactly that of the `csv-core` parser the sampler and the header use (a
//! test compares them on random input): empty lines are skipped; `\n`, `\r` and `\r\n` end
//! a record; a quote opens a quoted field only as the field's first byte; `""` inside quotes
//! is a quote; bytes after a closing quote belong to the field; an unterminated quote runs to
//! the end. Fields are returned as spans of the block: a plain span is the field's bytes as
//! they are, any other needs [`unescape`].

/// A field's place in the block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
    /// The bytes are the value; otherwise they are the raw quoted text.
    pub plain: bool,
}

/// The records of a block, one after the other.
pub struct Records<'a> {
    input: &'a [u8],
    delimiter: u8,
    pos: usize,
    line: u64,
}

impl<'a> Records<'a> {
    /// `first_line` is the line number at the block's start.
    pub fn new(input: &'a [u8], delimiter: u8, first_line: u64) -> Self {
        Self {
            input,
            delimiter,
            pos: 0,
            line: first_line,
        }
    }

    /// Where the next record, or the empty lines before it, starts in the block: reading
    /// from there again gives that record's fields.
    pub fn offset(&self) -> usize {
        self.pos
    }

    /// The next record's fields into `fields`; returns the line number the parser is at
    /// when the record begins, `None` at the end of the block.
    pub fn next_into(&mut self, fields: &mut Vec<Span>) -> Option<u64> {
        let input = self.input;
        let line = self.line;
        while let Some(&b) = input.get(self.pos) {
            if b != b'\n' && b != b'\r' {
                break;
            }
            self.line += u64::from(b == b'\n');
            self.pos += 1;
        }
        if self.pos >= input.len() {
            return None;
        }
        fields.clear();
        loop {
            let start = self.pos;
            if input.get(start) == Some(&b'"') {
                self.quoted(fields);
            } else {
                let end = self.field_end(start);
                fields.push(Span {
                    start,
                    end,
                    plain: true,
                });
                self.pos = end;
            }
            let Some(&b) = input.get(self.pos) else {
                return Some(line);
            };
            self.pos += 1;
            if b != self.delimiter {
                self.line += u64::from(b == b'\n');
                return Some(line);
            }
        }
    }

    /// Where the unquoted text from `from` ends: the next delimiter or line end.
    fn field_end(&self, from: usize) -> usize {
        memchr::memchr3(self.delimiter, b'\n', b'\r', &self.input[from..])
            .map_or(self.input.len(), |at| from + at)
    }

    /// A field that starts with a quote, at `self.pos`.
    fn quoted(&mut self, fields: &mut Vec<Span>) {
        let input = self.input;
        let start = self.pos;
        let mut from = start + 1;
        let mut plain = true;
        // One jump at a time to the next quote or line feed (which only moves the line
        // count): quoted fields rarely hold line feeds, so this is one search per quote.
        let close = loop {
            match memchr::memchr2(b'"', b'\n', &input[from..]) {
                Some(at) => {
                    let at = from + at;
                    if input[at] == b'\n' {
                        self.line += 1;
                        from = at + 1;
                        continue;
                    }
                    if input.get(at + 1) == Some(&b'"') {
                        plain = false;
                        from = at + 2;
                        continue;
                    }
                    break at;
                }
                None => {
                    // Unterminated: the field runs to the end of the input.
                    fields.push(Span {
                        start,
                        end: input.len(),
                        plain: false,
                    });
                    self.pos = input.len();
                    return;
                }
            }
        };
        let after = close + 1;
        let ends = input
            .get(after)
            .is_none_or(|&b| b == self.delimiter || b == b'\n' || b == b'\r');
        if ends {
            fields.push(if plain {
                Span {
                    start: start + 1,
                    end: close,
                    plain: true,
                }
            } else {
                Span {
                    start,
                    end: after,
                    plain: false,
                }
            });
            self.pos = after;
        } else {
            // Text after the closing quote is part of the field, quotes and all.
            let end = self.field_end(after);
            fields.push(Span {
                start,
                end,
                plain: false,
            });
            self.pos = end;
        }
    }
}

/// The value of a raw quoted field (from its opening quote): `""` is one quote, the closing
/// quote is dropped, and what follows it is kept.
pub fn unescape(raw: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let mut quoted = true;
    let mut bytes = raw.iter().skip(1).copied().peekable();
    while let Some(b) = bytes.next() {
        if quoted && b == b'"' {
            if bytes.peek() == Some(&b'"') {
                out.push(b'"');
                bytes.next();
            } else {
                quoted = false;
            }
        } else {
            out.push(b);
        }
    }
}

/// A field's value: borrowed from the block when plain, else unescaped into `scratch`.
pub fn value<'a>(input: &'a [u8], span: Span, scratch: &'a mut Vec<u8>) -> &'a [u8] {
    if span.plain {
        &input[span.start..span.end]
    } else {
        unescape(&input[span.start..span.end], scratch);
        scratch
    }
}

#[cfg(test)]
pub(super) mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Records as `csv-core` reads them: (line before the record, fields). A record the
    /// input ends inside is continued where the last call stopped, as the `csv` crate does.
    pub(in crate::connectors::formats::csv) fn reference(
        input: &[u8],
        delimiter: u8,
    ) -> Vec<(u64, Vec<Vec<u8>>)> {
        let mut reader = csv_core::ReaderBuilder::new().delimiter(delimiter).build();
        let (mut out, mut ends) = (vec![0u8; 4096], vec![0usize; 256]);
        let (mut at, mut written, mut ended) = (0, 0, 0);
        let mut found = Vec::new();
        let mut line = reader.line();
        loop {
            let (result, read, wrote, n) =
                reader.read_record(&input[at..], &mut out[written..], &mut ends[ended..]);
            (at, written, ended) = (at + read, written + wrote, ended + n);
            match result {
                csv_core::ReadRecordResult::Record => {
                    let mut start = 0;
                    let fields = ends[..ended]
                        .iter()
                        .map(|&end| {
                            let field = out[start..end].to_vec();
                            start = end;
                            field
                        })
                        .collect();
                    found.push((line, fields));
                    (written, ended) = (0, 0);
                    line = reader.line();
                }
                csv_core::ReadRecordResult::End => return found,
                csv_core::ReadRecordResult::InputEmpty => {}
                other => panic!("{other:?}"),
            }
        }
    }

    fn ours(input: &[u8], delimiter: u8) -> Vec<(u64, Vec<Vec<u8>>)> {
        let mut records = Records::new(input, delimiter, 1);
        let (mut spans, mut scratch) = (Vec::new(), Vec::new());
        let mut found = Vec::new();
        while let Some(line) = records.next_into(&mut spans) {
            let fields = spans
                .iter()
                .map(|&s| value(input, s, &mut scratch).to_vec())
                .collect();
            found.push((line, fields));
        }
        found
    }

    #[test]
    fn fields_and_lines_are_those_of_csv_core() {
        for input in [
            &b"a,b\n1,\"x\ny\"\r\n\"he said \"\"hi\"\"\",c\n\n12\" pipe,\"ab\"cd,\"q\"\"\"\r\r\nz"
                [..],
            b"\"unterminated\n,rest",
            b",,\n,\"\"\n",
            b"caf\xc3\xa9;\"na\xc3\xafve\";\xe2\x82\xac\n",
        ] {
            for delimiter in [b',', b';'] {
                assert_eq!(ours(input, delimiter), reference(input, delimiter));
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn any_input_splits_as_csv_core_splits_it(
            input in proptest::collection::vec(
                prop_oneof![Just(b'a'), Just(b','), Just(b'"'), Just(b'\n'), Just(b'\r'), Just(b' '), Just(0xc3u8)],
                0..64,
            )
        ) {
            prop_assert_eq!(ours(&input, b','), reference(&input, b','));
        }
    }
}
