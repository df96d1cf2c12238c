//! French public identifiers Parc stores: the school code (UAI, formerly RNE)
//! and the company numbers of contract holders (SIREN, SIRET).
//!
//! Each type can only be built through its parser, so holding a `Uai`, `Siren`
//! or `Siret` proves the checksum was verified. Parsers normalise what people
//! type (surrounding blanks, lower case, grouped digits) and reject everything
//! else with an error naming the problem. This module must never do IO or look
//! anything up in a registry: "valid" means well-formed with a correct
//! checksum, not "exists".
//!
//! Decisions:
//! - UAI: the 7 first characters must be digits. Real UAIs are digits there,
//!   and the check-letter rule `n mod 23` only makes sense for a number.
//! - UAI département: the three first digits with one leading zero dropped
//!   (`057` → `57`, `001` → `01`, `971` → `971`).
//! - SIREN/SIRET accept spaces, including the no-break and narrow no-break
//!   spaces French typography puts between digit groups (`552 100 554 00013`).
//! - SIRET: valid when Luhn passes, or, for La Poste establishments (prefix
//!   `356000000`), when the sum of the 14 digits is a multiple of 5. INSEE
//!   numbered La Poste's many establishments with that rule; the head office
//!   `35600000000048` passes Luhn and is accepted through the normal rule.
//! - SIRET: its SIREN part must pass Luhn too, so `Siret::siren` can return a
//!   valid `Siren` without failing.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Why an identifier was rejected. `kind` is "UAI", "SIREN" or "SIRET".
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IdError {
    #[error("{kind} must have {expected} characters, found {found}")]
    WrongLength {
        kind: &'static str,
        expected: usize,
        found: usize,
    },
    #[error("{kind} must contain only digits here, found {found:?} at position {position}")]
    NonDigit {
        kind: &'static str,
        /// 1-based, counted after normalisation (spaces removed).
        position: usize,
        found: char,
    },
    #[error("{kind} checksum is wrong (Luhn check failed)")]
    BadChecksum { kind: &'static str },
    #[error("UAI check letter is wrong: expected {expected:?}, found {found:?}")]
    BadCheckLetter { expected: char, found: char },
}

/// School code: 7 digits then a check letter, e.g. `0750655E`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Uai(String);

/// The letters the ministry uses for UAI checks: I, O and Q are left out
/// because they read like 1 and 0.
const UAI_LETTERS: &[u8; 23] = b"ABCDEFGHJKLMNPRSTUVWXYZ";

impl Uai {
    pub fn parse(input: &str) -> Result<Uai, IdError> {
        let code = input.trim().to_uppercase();
        let chars: Vec<char> = code.chars().collect();
        if chars.len() != 8 {
            return Err(IdError::WrongLength {
                kind: "UAI",
                expected: 8,
                found: chars.len(),
            });
        }
        let mut n: u32 = 0;
        for (i, &c) in chars[..7].iter().enumerate() {
            let digit = c.to_digit(10).ok_or(IdError::NonDigit {
                kind: "UAI",
                position: i + 1,
                found: c,
            })?;
            n = n * 10 + digit;
        }
        let expected = char::from(UAI_LETTERS[(n % 23) as usize]);
        if chars[7] != expected {
            return Err(IdError::BadCheckLetter {
                expected,
                found: chars[7],
            });
        }
        Ok(Uai(code))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Département number as people write it: `"57"` for `0570001S`, `"971"`
    /// for Guadeloupe. Only one leading zero is dropped, since metropolitan
    /// départements are written with two digits (`"01"` for Ain).
    pub fn departement(&self) -> String {
        let prefix = &self.0[..3];
        prefix.strip_prefix('0').unwrap_or(prefix).to_string()
    }
}

impl fmt::Display for Uai {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Uai {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uai::parse(s)
    }
}

impl TryFrom<String> for Uai {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Uai::parse(&s)
    }
}

impl From<Uai> for String {
    fn from(uai: Uai) -> String {
        uai.0
    }
}

/// Company number: 9 digits, Luhn checksum.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Siren(String);

/// Establishment number: SIREN followed by a 5-digit NIC, Luhn checksum over
/// all 14 digits (La Poste excepted, see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Siret(String);

const LA_POSTE_SIREN: &str = "356000000";

/// Drops the spaces people and PDFs put between digit groups, then checks
/// length and digits.
fn normalize_digits(input: &str, kind: &'static str, expected: usize) -> Result<String, IdError> {
    let digits: String = input
        .chars()
        .filter(|c| !matches!(c, ' ' | '\t' | '\u{a0}' | '\u{202f}'))
        .collect();
    let found = digits.chars().count();
    if found != expected {
        return Err(IdError::WrongLength {
            kind,
            expected,
            found,
        });
    }
    if let Some((i, c)) = digits
        .chars()
        .enumerate()
        .find(|(_, c)| !c.is_ascii_digit())
    {
        return Err(IdError::NonDigit {
            kind,
            position: i + 1,
            found: c,
        });
    }
    Ok(digits)
}

/// Luhn over ASCII digits: every second digit from the right is doubled.
fn luhn_ok(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

impl Siren {
    pub fn parse(input: &str) -> Result<Siren, IdError> {
        let digits = normalize_digits(input, "SIREN", 9)?;
        if !luhn_ok(&digits) {
            return Err(IdError::BadChecksum { kind: "SIREN" });
        }
        Ok(Siren(digits))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Siret {
    pub fn parse(input: &str) -> Result<Siret, IdError> {
        let digits = normalize_digits(input, "SIRET", 14)?;
        let la_poste_ok = digits.starts_with(LA_POSTE_SIREN)
            && digits
                .bytes()
                .map(|b| u32::from(b - b'0'))
                .sum::<u32>()
                .is_multiple_of(5);
        if !(luhn_ok(&digits) || la_poste_ok) {
            return Err(IdError::BadChecksum { kind: "SIRET" });
        }
        if !luhn_ok(&digits[..9]) {
            return Err(IdError::BadChecksum {
                kind: "SIREN part of SIRET",
            });
        }
        Ok(Siret(digits))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn siren(&self) -> Siren {
        // Checked by `Siret::parse`, so no second validation.
        Siren(self.0[..9].to_string())
    }

    /// The establishment's own 5 digits (NIC).
    pub fn nic(&self) -> &str {
        &self.0[9..]
    }
}

macro_rules! string_id_impls {
    ($t:ident) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $t {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $t::parse(s)
            }
        }

        impl TryFrom<String> for $t {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                $t::parse(&s)
            }
        }

        impl From<$t> for String {
            fn from(id: $t) -> String {
                id.0
            }
        }
    };
}

string_id_impls!(Siren);
string_id_impls!(Siret);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uai_parse_table() {
        let cases: &[(&str, Result<&str, IdError>)] = &[
            ("0750655E", Ok("0750655E")),
            (" 0750655e ", Ok("0750655E")),
            // 570001 mod 23 = 15 → 'S'
            ("0570001S", Ok("0570001S")),
            (
                "0570001A",
                Err(IdError::BadCheckLetter {
                    expected: 'S',
                    found: 'A',
                }),
            ),
            (
                "0750655F",
                Err(IdError::BadCheckLetter {
                    expected: 'E',
                    found: 'F',
                }),
            ),
            (
                "07506551",
                Err(IdError::BadCheckLetter {
                    expected: 'E',
                    found: '1',
                }),
            ),
            (
                "075065E",
                Err(IdError::WrongLength {
                    kind: "UAI",
                    expected: 8,
                    found: 7,
                }),
            ),
            (
                "",
                Err(IdError::WrongLength {
                    kind: "UAI",
                    expected: 8,
                    found: 0,
                }),
            ),
            (
                "07506550E",
                Err(IdError::WrongLength {
                    kind: "UAI",
                    expected: 8,
                    found: 9,
                }),
            ),
            (
                "07X0655E",
                Err(IdError::NonDigit {
                    kind: "UAI",
                    position: 3,
                    found: 'X',
                }),
            ),
            // 0000000 mod 23 = 0 → 'A'
            ("0000000A", Ok("0000000A")),
            // 9999999 mod 23 = 13 → 'P'
            ("9999999P", Ok("9999999P")),
        ];
        for (input, expected) in cases {
            let got = Uai::parse(input).map(|u| u.as_str().to_string());
            assert_eq!(got, expected.clone().map(str::to_string), "input {input:?}");
        }
    }

    #[test]
    fn uai_check_letter_skips_i_o_q() {
        // 8 mod 23 = 8 → 'J' (I skipped); 13 → 'P' (O skipped); 14 → 'R' (Q skipped)
        let cases = [("0000008J", true), ("0000013P", true), ("0000014R", true)];
        for (input, ok) in cases {
            assert_eq!(Uai::parse(input).is_ok(), ok, "input {input}");
        }
    }

    #[test]
    fn uai_departement_table() {
        // Check letters computed with n mod 23 for each prefix.
        let cases = [
            ("0750655E", "75"),
            ("0570001S", "57"),
            ("0010001W", "01"),
            ("9710001Z", "971"),
        ];
        for (input, dep) in cases {
            let uai = Uai::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(uai.departement(), dep, "input {input}");
        }
    }

    #[test]
    fn uai_string_conversions_validate() {
        use serde::de::IntoDeserializer;
        use serde::de::value::{Error as DeError, StringDeserializer};

        let uai = Uai::parse("0750655E").unwrap();
        let de: StringDeserializer<DeError> = "0750655e".to_string().into_deserializer();
        assert_eq!(Uai::deserialize(de).unwrap(), uai);
        let bad: StringDeserializer<DeError> = "0750655A".to_string().into_deserializer();
        let err = Uai::deserialize(bad).unwrap_err().to_string();
        assert!(err.contains("expected 'E'"), "{err}");
        assert_eq!(String::from(uai.clone()), "0750655E");
        assert_eq!(uai.to_string(), "0750655E");
        assert_eq!("0750655E".parse::<Uai>().unwrap(), uai);
    }

    #[test]
    fn siren_parse_table() {
        let cases: &[(&str, Result<&str, IdError>)] = &[
            ("552100554", Ok("552100554")),
            ("552 100 554", Ok("552100554")),
            ("552\u{a0}100\u{202f}554", Ok("552100554")),
            ("356000000", Ok("356000000")),
            ("732829320", Ok("732829320")),
            ("552100555", Err(IdError::BadChecksum { kind: "SIREN" })),
            (
                "55210055",
                Err(IdError::WrongLength {
                    kind: "SIREN",
                    expected: 9,
                    found: 8,
                }),
            ),
            (
                "55210055A",
                Err(IdError::NonDigit {
                    kind: "SIREN",
                    position: 9,
                    found: 'A',
                }),
            ),
            (
                "552-100-554",
                Err(IdError::WrongLength {
                    kind: "SIREN",
                    expected: 9,
                    found: 11,
                }),
            ),
        ];
        for (input, expected) in cases {
            let got = Siren::parse(input).map(|s| s.as_str().to_string());
            assert_eq!(got, expected.clone().map(str::to_string), "input {input:?}");
        }
    }

    #[test]
    fn siret_parse_table() {
        let cases: &[(&str, Result<&str, IdError>)] = &[
            ("55210055400013", Ok("55210055400013")),
            ("552 100 554 00013", Ok("55210055400013")),
            (
                "55210055400014",
                Err(IdError::BadChecksum { kind: "SIRET" }),
            ),
            // La Poste head office: passes Luhn (and not the ×5 rule).
            ("35600000000048", Ok("35600000000048")),
            // La Poste establishment: Luhn fails, digit sum 45 is a multiple of 5.
            ("35600000049837", Ok("35600000049837")),
            // La Poste prefix, Luhn fails and digit sum 46 is not a multiple of 5.
            (
                "35600000049838",
                Err(IdError::BadChecksum { kind: "SIRET" }),
            ),
            // Same shape without the La Poste prefix: the ×5 rule does not apply.
            (
                "73282932049837",
                Err(IdError::BadChecksum { kind: "SIRET" }),
            ),
            // Luhn holds over 14 digits but the 9 first fail on their own.
            (
                "10000000000008",
                Err(IdError::BadChecksum {
                    kind: "SIREN part of SIRET",
                }),
            ),
            (
                "5521005540001",
                Err(IdError::WrongLength {
                    kind: "SIRET",
                    expected: 14,
                    found: 13,
                }),
            ),
            (
                "5521005540001O",
                Err(IdError::NonDigit {
                    kind: "SIRET",
                    position: 14,
                    found: 'O',
                }),
            ),
        ];
        for (input, expected) in cases {
            let got = Siret::parse(input).map(|s| s.as_str().to_string());
            assert_eq!(got, expected.clone().map(str::to_string), "input {input:?}");
        }
    }

    #[test]
    fn siret_parts() {
        let siret = Siret::parse("552 100 554 00013").unwrap();
        assert_eq!(siret.siren(), Siren::parse("552100554").unwrap());
        assert_eq!(siret.nic(), "00013");
        assert_eq!(siret.to_string(), "55210055400013");
        let poste = Siret::parse("35600000049837").unwrap();
        assert_eq!(poste.siren().as_str(), LA_POSTE_SIREN);
    }

    #[test]
    fn luhn_table() {
        let cases = [
            ("0", true),
            ("18", true),
            ("79927398713", true),
            ("79927398710", false),
            ("552100554", true),
        ];
        for (digits, ok) in cases {
            assert_eq!(luhn_ok(digits), ok, "digits {digits}");
        }
    }

    #[test]
    fn error_messages_name_the_problem() {
        let cases: &[(IdError, &str)] = &[
            (
                Uai::parse("0570001A").unwrap_err(),
                "UAI check letter is wrong: expected 'S', found 'A'",
            ),
            (
                Siret::parse("5521005540001").unwrap_err(),
                "SIRET must have 14 characters, found 13",
            ),
            (
                Siren::parse("55210055A").unwrap_err(),
                "SIREN must contain only digits here, found 'A' at position 9",
            ),
            (
                Siren::parse("552100555").unwrap_err(),
                "SIREN checksum is wrong (Luhn check failed)",
            ),
        ];
        for (err, msg) in cases {
            assert_eq!(err.to_string(), *msg);
        }
    }
}
