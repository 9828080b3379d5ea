//! Finding where CSV records end without parsing them, so that a file can be cut into blocks
//! of whole records and the blocks parsed on several threads.
//!
//! The state machine is the one of the `csv-core` parser the blocks are then parsed with
//! (RFC 4180 quoting, `""` inside quotes, `\n`, `\r` and `\r\n` end a record, a quote only
//! opens a quoted field at the start of the field), so a block boundary is always a place
//! where that parser starts a new record: parsing the blocks one after the other gives
//! exactly the records of parsing the whole file.

/// Where the scan is in the syntax.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// At the start of a field (or record).
    FieldStart,
    /// In an unquoted field.
    Unquoted,
    /// In a quoted field.
    Quoted,
    /// Just after a quote inside a quoted field: the end of the quotes, or the first half of
    /// an escaped quote.
    QuoteInQuoted,
}

/// A record-boundary scanner that keeps its state between calls.
#[derive(Clone, Debug)]
pub struct Splitter {
    delimiter: u8,
    state: State,
}

/// What one call of [`Splitter::scan`] found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Found {
    /// Bytes scanned: up to and including the end of the last counted record, or the whole
    /// input when fewer records ended in it.
    pub scanned: usize,
    /// Records that ended in the scanned bytes (empty lines count as records here; the
    /// parser skips them).
    pub records: usize,
    /// Line feeds in the scanned bytes.
    pub newlines: u64,
    /// Whether the scanned bytes end exactly at the end of a record.
    pub at_boundary: bool,
}

impl Splitter {
    pub fn new(delimiter: u8) -> Self {
        Self {
            delimiter,
            state: State::FieldStart,
        }
    }

    /// Scans `input` until `limit` records have ended (or the input ends), continuing from
    /// where the last call stopped. Only quotes and line ends are looked at one by one; the
    /// bytes between them are skipped with `memchr`.
    pub fn scan(&mut self, input: &[u8], limit: usize) -> Found {
        let mut found = Found {
            at_boundary: self.state == State::FieldStart,
            ..Found::default()
        };
        if limit == 0 {
            return found;
        }
        let mut i = 0;
        while i < input.len() {
            match self.state {
                // One jump to the next quote or line feed: a quoted field rarely holds a
                // line feed, so this is one search where a search and a count were two.
                State::Quoted => match memchr::memchr2(b'"', b'\n', &input[i..]) {
                    Some(at) => {
                        let at = i + at;
                        i = at + 1;
                        if input[at] == b'"' {
                            self.state = State::QuoteInQuoted;
                        } else {
                            found.newlines += 1;
                        }
                    }
                    None => i = input.len(),
                },
                // After a quote inside a quoted field, as at a field's start, a quote opens
                // (or continues, `""`) quoted text and a line end or delimiter ends the field.
                State::QuoteInQuoted | State::FieldStart => {
                    let b = input[i];
                    i += 1;
                    self.state = if b == b'"' {
                        State::Quoted
                    } else if b == b'\n' || b == b'\r' {
                        found.newlines += u64::from(b == b'\n');
                        if self.record_end(&mut found, limit, i) {
                            return found;
                        }
                        State::FieldStart
                    } else if b == self.delimiter {
                        State::FieldStart
                    } else {
                        State::Unquoted
                    };
                }
                State::Unquoted => match memchr::memchr3(b'"', b'\n', b'\r', &input[i..]) {
                    None => {
                        // The bytes skipped hold no quote or line end: what matters next is
                        // whether the last of them ends a field.
                        if input[input.len() - 1] == self.delimiter {
                            self.state = State::FieldStart;
                        }
                        i = input.len();
                    }
                    Some(at) => {
                        let at = i + at;
                        let b = input[at];
                        // A quote opens a quoted field only at the start of a field, i.e.
                        // right after a delimiter (the byte before `i` never is one here).
                        let opens = b == b'"' && at > i && input[at - 1] == self.delimiter;
                        i = at + 1;
                        if opens {
                            self.state = State::Quoted;
                        } else if b != b'"' {
                            found.newlines += u64::from(b == b'\n');
                            self.state = State::FieldStart;
                            if self.record_end(&mut found, limit, i) {
                                return found;
                            }
                        }
                    }
                },
            }
        }
        found.scanned = input.len();
        found.at_boundary = self.state == State::FieldStart;
        found
    }

    /// Counts a record that ended at `end`; true when that was the last one wanted.
    fn record_end(&mut self, found: &mut Found, limit: usize, end: usize) -> bool {
        found.records += 1;
        if found.records < limit {
            return false;
        }
        self.state = State::FieldStart;
        found.scanned = end;
        found.at_boundary = true;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where the splitter cuts `input` into single records, fed in pieces of `piece` bytes.
    fn cuts(input: &[u8], piece: usize) -> Vec<usize> {
        let mut splitter = Splitter::new(b',');
        let mut out = Vec::new();
        let mut at = 0;
        let mut fed = 0;
        while fed < input.len() {
            let end = (fed + piece).min(input.len());
            let found = splitter.scan(&input[fed..end], 1);
            if found.records == 1 {
                at = fed + found.scanned;
                out.push(at);
                fed = at;
            } else {
                fed = end;
            }
        }
        let _ = at;
        out
    }

    /// The records `csv-core` reads from `input`, each as its fields.
    fn records(input: &[u8]) -> Vec<Vec<Vec<u8>>> {
        super::super::fields::tests::reference(input, b',')
            .into_iter()
            .map(|(_, fields)| fields)
            .collect()
    }

    #[test]
    fn pieces_cut_at_the_ends_parse_to_the_records_of_the_whole() {
        let inputs: [&[u8]; 8] = [
            b"a,b\n1,2\n3,4\n",
            b"a,b\r\n1,\"x\r\ny\"\r\n3,4",
            b"a,\"he said \"\"hi\"\"\nthere\",c\n\n\nd,e\n",
            b"12\" pipe,x\nab\"c,\"d\"e\nf,g\n",
            b"\"unterminated\n,quote\n",
            b"\r\r\n\n1\r2\n",
            b"caf\xc3\xa9,\"na\xc3\xafve\n\",\xe2\x82\xac\n",
            b",,\n,\"\"\n\"\",x\n",
        ];
        for input in inputs {
            let whole = records(input);
            for piece in [1, 2, 3, 7, 1024] {
                let mut pieces = Vec::new();
                let mut start = 0;
                for end in cuts(input, piece) {
                    pieces.extend(records(&input[start..end]));
                    start = end;
                }
                pieces.extend(records(&input[start..]));
                assert_eq!(
                    pieces,
                    whole,
                    "{:?} in pieces of {piece}",
                    String::from_utf8_lossy(input)
                );
            }
        }
        assert!(cuts(b"\"unterminated\n,quote\n", 4).is_empty());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        #[test]
        fn any_input_cut_at_the_ends_parses_as_the_whole(
            input in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::prelude::Just(b'a'), proptest::prelude::Just(b','),
                    proptest::prelude::Just(b'"'), proptest::prelude::Just(b'\n'),
                    proptest::prelude::Just(b'\r'),
                ],
                0..48,
            ),
            piece in 1usize..9,
        ) {
            let mut pieces = Vec::new();
            let mut start = 0;
            for end in cuts(&input, piece) {
                pieces.extend(records(&input[start..end]));
                start = end;
            }
            pieces.extend(records(&input[start..]));
            proptest::prop_assert_eq!(pieces, records(&input));
        }
    }

    #[test]
    fn lines_and_limits_are_counted() {
        let mut splitter = Splitter::new(b';');
        let found = splitter.scan(b"a;\"x\ny\"\nb;c\nd", 2);
        assert_eq!(
            found,
            Found {
                scanned: 12,
                records: 2,
                newlines: 3,
                at_boundary: true
            }
        );
        let rest = splitter.scan(b"d", 5);
        assert_eq!(rest.records, 0);
        assert!(!rest.at_boundary);
    }
}
