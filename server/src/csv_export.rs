//! CSV exports for spreadsheets: RFC 4180 quoting (the `csv` crate) and neutralised
//! formulas — a cell starting with `=`, `+`, `-`, `@`, a tab or a carriage return is
//! prefixed with `'` so that a host name such as `=HYPERLINK(…)` reported by a device
//! stays text when a technician opens the file (OWASP "CSV injection").
//!
//! Pure: builds bytes, does no IO. Must never emit a cell a spreadsheet would evaluate.

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// Makes `cell` inert in spreadsheets.
pub fn neutralise(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => {
            // Plain negative numbers stay numbers: they cannot run anything.
            if cell.parse::<f64>().is_ok() {
                cell.into()
            } else {
                format!("'{cell}").into()
            }
        }
        _ => cell.into(),
    }
}

/// A CSV document under construction, with a header row.
pub struct Writer {
    inner: csv::Writer<Vec<u8>>,
}

impl Writer {
    pub fn new(header: &[&str]) -> Self {
        let mut inner = csv::Writer::from_writer(Vec::new());
        inner
            .write_record(header)
            .expect("writing to memory cannot fail");
        Self { inner }
    }

    pub fn row(&mut self, cells: &[&str]) {
        self.inner
            .write_record(cells.iter().map(|c| neutralise(c).into_owned()))
            .expect("writing to memory cannot fail");
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.inner
            .into_inner()
            .expect("flushing to memory cannot fail")
    }

    /// A download response named `filename` (UTF-8 with BOM so spreadsheets read
    /// accents right).
    pub fn into_response(self, filename: &str) -> Response {
        let mut body = vec![0xEF, 0xBB, 0xBF];
        body.extend(self.into_bytes());
        (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{filename}\""),
                ),
            ],
            body,
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_neutralised_and_numbers_kept() {
        for (input, expected) in [
            ("=1+1", "'=1+1"),
            ("+33 1 23", "'+33 1 23"),
            ("-cmd|' /C calc'!A0", "'-cmd|' /C calc'!A0"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\t=x", "'\t=x"),
            ("\r=x", "'\r=x"),
            ("-12.5", "-12.5"),
            ("École Jean Moulin", "École Jean Moulin"),
            ("", ""),
        ] {
            assert_eq!(neutralise(input), expected, "{input:?}");
        }
    }

    #[test]
    fn rows_are_quoted_and_neutralised() {
        let mut w = Writer::new(&["a", "b"]);
        w.row(&["=HYPERLINK(\"http://x\")", "a,b"]);
        let text = String::from_utf8(w.into_bytes()).unwrap();
        assert_eq!(text, "a,b\n\"'=HYPERLINK(\"\"http://x\"\")\",\"a,b\"\n");
    }
}
