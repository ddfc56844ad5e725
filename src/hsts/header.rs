//! The `Strict-Transport-Security` field-value parser (RFC 6797 §6.1).
//!
//! It works on the raw bytes of one field value and returns either the policy or the reason
//! the value must be ignored. It never touches a store: deciding whether to *learn* from a
//! policy (secure transport, IP literals, the first of several fields) is [`super::learn`]'s job.
//!
//! The grammar (RFC 6797 §6.1, with the implied linear whitespace of RFC 2616 §2.1 that it
//! inherits, written here as OWS = SP / HTAB):
//!
//! ```text
//! Strict-Transport-Security = [ directive ] *( ";" [ directive ] )
//! directive                 = directive-name [ "=" directive-value ]
//! directive-name            = token
//! directive-value           = token / quoted-string
//! ```
//!
//! The rules on top of it (§6.1 items 1–5, §6.1.1, §6.1.2):
//! - directive names are case-insensitive;
//! - a repeated `max-age` or `includeSubDomains` makes the whole field invalid; a repeated
//!   unknown directive (`preload; …; preload`) does not. §6.1 item 2 says every directive
//!   appears only once, but Chromium (`ParseHSTSHeader` tracks only `max_age_observed` and
//!   `include_subdomains_observed`) and Firefox (`ERROR_MULTIPLE_MAX_AGES`,
//!   `ERROR_MULTIPLE_INCLUDE_SUBDOMAINS`) only refuse those two, and sites ship such headers;
//!   a proxy that refused them would forget hosts every browser remembers (issue 11 item 7);
//! - `max-age` is required and is delta-seconds (1*DIGIT), as a token or a quoted-string;
//! - `includeSubDomains` takes no value;
//! - unknown directives are ignored, but must still be syntactically valid;
//! - empty directives (`;;`) and surrounding whitespace are tolerated;
//! - anything else malformed means the field is ignored.
//!
//! Like Chromium (`net/http/http_security_headers.cc`, `kMaxHSTSAgeSecs`), an over-long
//! `max-age` is not an error: it is capped, at one year.

use std::fmt;

/// The largest max-age the proxy honours: one year (365 days), as Chromium caps it
/// (`kMaxHSTSAgeSecs = 86400 * 365`). Overflowing values are capped here, not rejected.
pub const MAX_AGE_CAP: u64 = 31_536_000;

/// A parsed, valid STS policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StsPolicy {
    /// Seconds the host stays a Known HSTS Host, already capped at [`MAX_AGE_CAP`].
    /// Zero means "forget this host" (RFC 6797 §6.1.1).
    pub max_age: u64,
    /// The `includeSubDomains` directive was present (RFC 6797 §6.1.2).
    pub include_subdomains: bool,
    /// The valueless `preload` directive was present. It is not part of RFC 6797; it is the
    /// opt-in token that hstspreload.org requires. Recorded for the traffic log only.
    pub preload: bool,
}

/// Why a `Strict-Transport-Security` value was ignored. `Display` is a sentence fragment
/// that can go straight into a finding detail.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StsError {
    /// No `max-age` directive at all (this includes an empty field).
    #[error("the required max-age directive is missing (RFC 6797 §6.1.1)")]
    MissingMaxAge,
    /// `max-age` or `includeSubDomains` appeared more than once (RFC 6797 §6.1, item 2;
    /// the only repeats Chromium and Firefox refuse).
    #[error("the directive `{name}` appears more than once (RFC 6797 §6.1: every directive must appear only once)")]
    Duplicate { name: String },
    /// `max-age` is present but its value is not delta-seconds.
    #[error(
        "max-age must be a number of seconds made of digits only, got `{value}` (RFC 6797 §6.1.1)"
    )]
    BadMaxAge { value: String },
    /// `max-age` is present without a value.
    #[error("max-age has no value (RFC 6797 §6.1.1 requires `max-age=<seconds>`)")]
    MaxAgeWithoutValue,
    /// `includeSubDomains` was given a value.
    #[error("includeSubDomains takes no value (RFC 6797 §6.1.2)")]
    IncludeSubDomainsWithValue,
    /// The bytes do not follow the §6.1 grammar.
    #[error("malformed at byte {at}: expected {expected}, found {found} (RFC 6797 §6.1)")]
    Syntax {
        /// Byte offset in the field value.
        at: usize,
        /// What the grammar allows at that point.
        expected: &'static str,
        /// What was there instead, printable.
        found: Found,
    },
}

/// The offending input at a syntax error, for a readable message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    /// The value ended.
    End,
    /// This byte.
    Byte(u8),
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Found::End => f.write_str("the end of the value"),
            Found::Byte(b) if b.is_ascii_graphic() => write!(f, "`{}`", b as char),
            Found::Byte(b) => write!(f, "byte 0x{b:02x}"),
        }
    }
}

/// Parses one `Strict-Transport-Security` field value.
///
/// The caller passes only the *first* such field of a response (RFC 6797 §8.1); a
/// comma-joined value (as some intermediaries produce) is not valid syntax and is rejected.
pub fn parse_sts(value: &[u8]) -> Result<StsPolicy, StsError> {
    let mut cur = Cursor { s: value, i: 0 };
    let mut max_age: Option<u64> = None;
    let mut include_subdomains = false;
    let mut preload = false;

    loop {
        cur.skip_ows();
        match cur.peek() {
            None => break,
            // An empty directive: `[ directive ] *( ";" [ directive ] )` allows `;;`.
            Some(b';') => {
                cur.i += 1;
                continue;
            }
            Some(_) => {}
        }

        let name = cur.token("a directive name (a token)")?;
        cur.skip_ows();
        let value = if cur.peek() == Some(b'=') {
            cur.i += 1;
            cur.skip_ows();
            Some(cur.directive_value()?)
        } else {
            None
        };
        cur.skip_ows();
        match cur.peek() {
            None => {}
            Some(b';') => cur.i += 1,
            Some(b) => {
                return Err(StsError::Syntax {
                    at: cur.i,
                    expected: "`;` or the end of the value after a directive",
                    found: Found::Byte(b),
                })
            }
        }

        if name.eq_ignore_ascii_case(b"max-age") {
            if max_age.is_some() {
                return Err(duplicate(name));
            }
            let value = value.ok_or(StsError::MaxAgeWithoutValue)?;
            max_age = Some(delta_seconds(value)?);
        } else if name.eq_ignore_ascii_case(b"includesubdomains") {
            if include_subdomains {
                return Err(duplicate(name));
            }
            if value.is_some() {
                return Err(StsError::IncludeSubDomainsWithValue);
            }
            include_subdomains = true;
        } else {
            // Unknown directives are ignored (§6.1 item 5), `preload` included when it
            // carries a value, since only the valueless form is the hstspreload.org token.
            // A repeat of one is ignored too, as Chromium and Firefox do (see the module doc).
            if name.eq_ignore_ascii_case(b"preload") && value.is_none() {
                preload = true;
            }
        }
    }

    let max_age = max_age.ok_or(StsError::MissingMaxAge)?;
    Ok(StsPolicy {
        max_age,
        include_subdomains,
        preload,
    })
}

fn duplicate(name: &[u8]) -> StsError {
    StsError::Duplicate {
        name: String::from_utf8_lossy(name).into_owned(),
    }
}

/// A directive value as it appeared on the wire.
#[derive(Clone, Copy)]
enum Value<'a> {
    Token(&'a [u8]),
    /// The bytes between the quotes, quoted-pairs still escaped.
    Quoted(&'a [u8]),
}

/// delta-seconds = 1*DIGIT (RFC 6797 §6.1.1 via RFC 2616 §3.3.2), token or quoted-string.
/// Chromium and curl both accept `max-age="31536000"`; the quotes are part of the grammar.
fn delta_seconds(value: Value<'_>) -> Result<u64, StsError> {
    let (bytes, quoted) = match value {
        Value::Token(b) => (b, false),
        Value::Quoted(b) => (b, true),
    };
    let bad = || StsError::BadMaxAge {
        value: String::from_utf8_lossy(bytes).into_owned(),
    };
    let mut seconds: u64 = 0;
    let mut digits = 0usize;
    let mut escaped = false;
    for &b in bytes {
        if quoted && !escaped && b == b'\\' {
            escaped = true;
            continue;
        }
        escaped = false;
        if !b.is_ascii_digit() {
            // Signs, decimals, hex and trailing junk are all invalid (`+1`, `-1`, `1.5`).
            return Err(bad());
        }
        digits += 1;
        // Saturate instead of overflowing: the value is capped below anyway, and an
        // absurdly long number is still valid delta-seconds (Chromium MaxAgeToLimitedInt).
        seconds = seconds
            .saturating_mul(10)
            .saturating_add(u64::from(b - b'0'));
    }
    if digits == 0 {
        return Err(bad());
    }
    Ok(seconds.min(MAX_AGE_CAP))
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn found(&self) -> Found {
        self.peek().map_or(Found::End, Found::Byte)
    }

    /// OWS = *( SP / HTAB ) (RFC 9110 §5.6.3). A field value never holds CR or LF.
    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn token(&mut self, expected: &'static str) -> Result<&'a [u8], StsError> {
        let start = self.i;
        while self.peek().is_some_and(is_tchar) {
            self.i += 1;
        }
        if self.i == start {
            return Err(StsError::Syntax {
                at: self.i,
                expected,
                found: self.found(),
            });
        }
        Ok(&self.s[start..self.i])
    }

    fn directive_value(&mut self) -> Result<Value<'a>, StsError> {
        if self.peek() != Some(b'"') {
            return self
                .token("a token or a quoted-string after `=`")
                .map(Value::Token);
        }
        // quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE (RFC 9110 §5.6.4)
        let open = self.i;
        self.i += 1;
        let start = self.i;
        loop {
            match self.peek() {
                None => {
                    return Err(StsError::Syntax {
                        at: open,
                        expected: "a closing `\"` for this quoted-string",
                        found: Found::End,
                    })
                }
                Some(b'"') => break,
                Some(b'\\') => {
                    self.i += 1;
                    match self.peek() {
                        Some(b) if is_qpair_char(b) => self.i += 1,
                        _ => {
                            return Err(StsError::Syntax {
                                at: self.i,
                                expected: "a visible character after `\\` in a quoted-string",
                                found: self.found(),
                            })
                        }
                    }
                }
                Some(b) if is_qdtext(b) => self.i += 1,
                Some(b) => {
                    return Err(StsError::Syntax {
                        at: self.i,
                        expected: "quoted-string text",
                        found: Found::Byte(b),
                    })
                }
            }
        }
        let inner = &self.s[start..self.i];
        self.i += 1; // the closing quote
        Ok(Value::Quoted(inner))
    }
}

/// tchar (RFC 9110 §5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text (RFC 9110 §5.6.4).
fn is_qdtext(b: u8) -> bool {
    matches!(b, b'\t' | b' ' | 0x21 | 0x23..=0x5B | 0x5D..=0x7E | 0x80..=0xFF)
}

/// quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text ) (RFC 9110 §5.6.4).
fn is_qpair_char(b: u8) -> bool {
    matches!(b, b'\t' | b' ' | 0x21..=0x7E | 0x80..=0xFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(max_age: u64, include_subdomains: bool) -> Result<StsPolicy, ()> {
        Ok(StsPolicy {
            max_age,
            include_subdomains,
            preload: false,
        })
    }

    /// One row per case: input → policy, or `Err(())` for "ignored".
    #[test]
    fn parse_table() {
        #[rustfmt::skip]
        let rows: &[(&str, Result<StsPolicy, ()>)] = &[
            // --- valid, the plain forms (RFC 6797 §6.2 examples) ---
            ("max-age=31536000", ok(31_536_000, false)),
            ("max-age=15768000 ; includeSubDomains", ok(15_768_000, true)),
            ("max-age=243", ok(243, false)),
            // Trailing `;` is an empty directive (§6.1 grammar; Chromium ValidSTSHeaders).
            ("max-age=3488923;", ok(3_488_923, false)),
            // Directive names are case-insensitive (§6.1 item 3).
            ("MAX-AGE=10; INCLUDESUBDOMAINS", ok(10, true)),
            ("max-age=123;incLudesUbdOmains", ok(123, true)),
            ("  Max-agE    = 567", ok(567, false)),
            // Implied LWS around `=` and `;` (§6.1 uses RFC 2616 implied *LWS; Chromium).
            ("  mAx-aGe    = 890      ", ok(890, false)),
            ("\tmax-age\t=\t7\t;\tincludeSubDomains\t", ok(7, true)),
            // Order is not significant (§6.1 item 1).
            ("incLudesUbdOmains; max-age=123", ok(123, true)),
            ("   incLudesUbdOmains; max-age=123", ok(123, true)),
            // Quoted-string value for max-age (§6.1 directive-value; Chromium, curl).
            ("max-age=\"123\"", ok(123, false)),
            ("   pumpkin; incLudesUbdOmains; max-age=\"123\"  ", ok(123, true)),
            // A quoted-pair inside the quoted value is unescaped first (RFC 9110 §5.6.4).
            ("max-age=\"1\\23\"", ok(123, false)),
            // Unknown directives are ignored (§6.1 item 5), with token or quoted values.
            ("   incLudesUbdOmains; max-age=123; pumpkin=kitten", ok(123, true)),
            ("   pumpkin=894; incLudesUbdOmains; max-age=123  ", ok(123, true)),
            ("animal=\"squirrel; distinguished\"; incLudesUbdOmains; max-age=123", ok(123, true)),
            ("max-age=5; report-uri=\"https://r.example/\"", ok(5, false)),
            // Stray semicolons and whitespace everywhere (Chromium ValidSTSHeaders).
            (";; max-age=394082038  ; incLudesUbdOmains; ;", ok(MAX_AGE_CAP, true)),
            (";;    ; ; max-age=394082038;;; includeSubdomains     ;;  ;", ok(MAX_AGE_CAP, true)),
            ("incLudesUbdOmains   ; max-age=394082038 ;;", ok(MAX_AGE_CAP, true)),
            // max-age=0 is valid: it means "forget" (§6.1.1).
            ("  max-age=0  ;  incLudesUbdOmains   ", ok(0, true)),
            // Leading zeros are still digits.
            ("max-age=000042", ok(42, false)),
            // Capped at one year, as Chromium's kMaxHSTSAgeSecs.
            ("max-age=39408299  ;incLudesUbdOmains", ok(MAX_AGE_CAP, true)),
            ("max-age=31536001", ok(MAX_AGE_CAP, false)),
            // Overflowing u64 is capped, not rejected (Chromium MaxAgeToLimitedInt; curl caps too).
            ("max-age=18446744073709551616", ok(MAX_AGE_CAP, false)),
            ("  max-age=999999999999999999999999999999999999999999999  ;  incLudesUbdOmains   ", ok(MAX_AGE_CAP, true)),

            // A repeated unknown directive is ignored like any unknown one: Chromium's
            // ParseHSTSHeader only refuses a second max-age or includeSubDomains, Firefox's
            // ProcessSTSHeader likewise (ERROR_MULTIPLE_MAX_AGES / _INCLUDE_SUBDOMAINS).
            ("preload; includeSubDomains; preload; max-age=12345678; preload", Ok(StsPolicy { max_age: 12_345_678, include_subdomains: true, preload: true })),
            ("max-age=5; preload; preload", Ok(StsPolicy { max_age: 5, include_subdomains: false, preload: true })),
            ("max-age=5; foo=1; FOO=2", ok(5, false)),
            ("max-age=5; report-uri=\"a\"; report-uri=\"b\"", ok(5, false)),
            // A repeat must still be well-formed (§6.1 item 4).
            ("max-age=5; foo; foo=", Err(())),

            // --- invalid: empty and missing max-age (§6.1.1: max-age is REQUIRED) ---
            ("", Err(())),
            ("    ", Err(())),
            (";", Err(())),
            (";;;; ;;;", Err(())),
            (";;;; includeSubDomains;;;", Err(())),
            ("   includeSubDomains;  ", Err(())),
            ("abc", Err(())),
            ("  abc   ", Err(())),
            // Near-miss names are unknown directives, so max-age is missing (Chromium BogusHeaders).
            ("max-ag=3488923", Err(())),
            ("max-aged=3488923", Err(())),
            ("amax-age=3488923", Err(())),
            // --- invalid: max-age without a usable value ---
            ("max-age", Err(())),
            ("  max-age  ", Err(())),
            ("max-age; ;", Err(())),
            ("max-age=", Err(())),
            ("   max-age  =     ", Err(())),
            ("max-age=;includeSubDomains", Err(())),
            ("max-age=\"\"", Err(())),
            // --- invalid: non-digit delta-seconds (§6.1.1; Chromium BogusHeaders; curl unit1660) ---
            ("   max-age  =     xy", Err(())),
            ("   max-age  =     3488a923", Err(())),
            ("max-age=3488a923  ", Err(())),
            ("max-age=-3488923", Err(())),
            ("max-age=+3488923", Err(())),
            ("max-age=34889.23", Err(())),
            ("max-age=0x10", Err(())),
            ("max-age=\"12 3\"", Err(())),
            ("max-age=\"-1\"", Err(())),
            ("max-age=13####", Err(())),
            ("max-age=18446744073709551615####", Err(())),
            // `$` and `.` are tchars, so this is one bad token, not a number plus junk.
            ("max-age=999999999999999999999999$.&", Err(())),
            // --- invalid: structure (§6.1 item 4: non-conforming data voids the field) ---
            ("max-age==3488923", Err(())),
            ("max-age=3488923=includesubdomains", Err(())),
            ("max-age=3488923includesubdomains", Err(())),
            // A directive must end with `;` or the end, not whitespace and more text.
            ("max-age=3488923     e", Err(())),
            ("max-age=34889 includesubdomains", Err(())),
            ("max-age=3488923 includesubdomains x", Err(())),
            // A comma is not a separator here (a comma-joined pair of fields is invalid).
            ("max-age=10, max-age=20", Err(())),
            ("max-age=10,includeSubDomains", Err(())),
            // Unterminated and malformed quoted strings.
            ("max-age=\"123", Err(())),
            ("max-age=5; x=\"abc", Err(())),
            ("max-age=5; x=\"a\\", Err(())),
            // A value that is neither token nor quoted-string.
            ("max-age=5; x=a b", Err(())),
            ("max-age=5; x=(comment)", Err(())),
            ("max-age=5; =5", Err(())),
            ("max-age=5; x=", Err(())),
            // Single quotes are not quoted-string delimiters in RFC 6797.
            ("max-age='5'", Err(())),
            // --- invalid: duplicate max-age or includeSubDomains (§6.1 item 2; Chromium, Firefox) ---
            ("max-age=5; max-age=6", Err(())),
            ("max-age=5; MAX-AGE=5", Err(())),
            ("max-age=5; includeSubDomains; includesubdomains", Err(())),
            // --- invalid: includeSubDomains takes no value (§6.1.2) ---
            ("max-age=5; includeSubDomains=true", Err(())),
            ("max-age=5; includeSubDomains=\"\"", Err(())),
        ];
        for (input, expected) in rows {
            let got = parse_sts(input.as_bytes()).map_err(|_| ());
            assert_eq!(&got, expected, "parse_sts({input:?})");
        }
    }

    #[test]
    fn preload_token_is_recorded_only_when_valueless() {
        let p = parse_sts(b"max-age=63072000; includeSubDomains; preload").unwrap();
        assert!(p.preload && p.include_subdomains);
        assert_eq!(p.max_age, MAX_AGE_CAP);
        let p = parse_sts(b"max-age=1; PRELOAD").unwrap();
        assert!(p.preload);
        // With a value it is just an unknown directive: ignored, not an error.
        let p = parse_sts(b"max-age=1; preload=yes").unwrap();
        assert!(!p.preload);
    }

    #[test]
    fn non_ascii_is_rejected_outside_quotes_and_allowed_inside() {
        // obs-text is not a tchar (RFC 9110 §5.6.2) ...
        assert!(parse_sts(b"max-age=5; caf\xc3\xa9=1").is_err());
        // ... but is qdtext (RFC 9110 §5.6.4).
        assert_eq!(
            parse_sts(b"max-age=5; note=\"caf\xc3\xa9\"").map(|p| p.max_age),
            Ok(5)
        );
    }

    /// The error says what is wrong, so the finding detail is actionable.
    #[test]
    fn errors_name_the_problem() {
        let rows: &[(&str, StsError)] = &[
            ("", StsError::MissingMaxAge),
            ("includeSubDomains", StsError::MissingMaxAge),
            (
                "max-age=1; Max-Age=2",
                StsError::Duplicate {
                    name: "Max-Age".into(),
                },
            ),
            ("max-age=1y", StsError::BadMaxAge { value: "1y".into() }),
            ("max-age", StsError::MaxAgeWithoutValue),
            (
                "max-age=1; includeSubDomains=1",
                StsError::IncludeSubDomainsWithValue,
            ),
            (
                "max-age=1 x",
                StsError::Syntax {
                    at: 10,
                    expected: "`;` or the end of the value after a directive",
                    found: Found::Byte(b'x'),
                },
            ),
            (
                "max-age=\"1",
                StsError::Syntax {
                    at: 8,
                    expected: "a closing `\"` for this quoted-string",
                    found: Found::End,
                },
            ),
        ];
        for (input, expected) in rows {
            assert_eq!(
                parse_sts(input.as_bytes()).as_ref(),
                Err(expected),
                "{input:?}"
            );
        }
        let text = parse_sts(b"max-age=1 x").unwrap_err().to_string();
        assert_eq!(
            text,
            "malformed at byte 10: expected `;` or the end of the value after a directive, found `x` (RFC 6797 §6.1)"
        );
        let text = parse_sts(b"max-age=\x01").unwrap_err().to_string();
        assert!(text.contains("byte 0x01"), "{text}");
    }
}
