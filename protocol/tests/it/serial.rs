//! Serial normalisation cases seen in DMI tables and delivery manifests.

use parc_protocol::normalize_serial;

#[test]
fn serials_are_trimmed_and_upper_cased() {
    let cases = [
        ("  pf3abc12 ", Some("PF3ABC12")),
        ("5CD1234XYZ\n", Some("5CD1234XYZ")),
        ("SN 123-45", Some("SN 123-45")),
        ("abc\0", Some("ABC")),
    ];
    for (raw, want) in cases {
        assert_eq!(normalize_serial(raw).as_deref(), want, "{raw:?}");
    }
}

#[test]
fn placeholders_and_degenerate_serials_are_absent() {
    for raw in [
        "To be filled by O.E.M.",
        "to be filled by o.e.m.",
        "Default string",
        "System Serial Number",
        "None",
        "0",
        "00000000",
        "FFFFFFFFFFFF",
        "xxxxxxxx",
        "   ",
        "",
        "N/A",
        "Not Specified",
        "0123456789",
    ] {
        assert_eq!(normalize_serial(raw), None, "{raw:?}");
    }
}
