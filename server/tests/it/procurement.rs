//! Procurement on both engines: the demo dataset loads, delivery manifests import with
//! refused lines named by number and reason, re-imports change nothing, devices match
//! their deliveries by serial, warranties follow the lot's terms, and the CLI imports
//! a generated 10,000-line manifest (its duration printed).

use std::process::Command;

use chrono::{NaiveDate, Utc};
use parc_server::domain::{
    ServiceMode, Siret, Uai, WarrantyBasis, WarrantyStart, WarrantyStatus, WarrantyTerms,
};
use parc_server::procurement::{
    DEMO_DATASET, DEMO_DELIVERIES, ImportReport, device_warranty, parse_dataset, parse_manifest,
};
use parc_server::store::{Item, Store};

use crate::support::TestDevice;

#[path = "../../examples/gen_manifest.rs"]
mod gen_manifest;

const GOOD: &str = include_str!("../../demo-data/manifest-good.csv");
const WITH_ERRORS: &str = include_str!("../../demo-data/manifest-with-errors.csv");

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).unwrap()
}

async fn load_dataset(store: &Store) {
    let dataset = parse_dataset(DEMO_DATASET).unwrap();
    store.load_dataset(&dataset).await.unwrap();
}

async fn import(store: &Store, text: &str) -> ImportReport {
    let parsed = parse_manifest(text).unwrap();
    store
        .import_deliveries(&parsed, false, Utc::now(), &|_, _| {})
        .await
        .unwrap()
}

fn errors(r: &ImportReport) -> Vec<(u64, &'static str, &'static str)> {
    r.errors
        .iter()
        .map(|e| (e.line, e.field, e.problem.code()))
        .collect()
}

async fn register_serial(store: &Store, id: &str, serial: Option<&str>) {
    let mut d = TestDevice::new(id, 7).enrolment();
    d.serial = serial.map(str::to_string);
    store.upsert_device(&d, Utc::now()).await.unwrap();
}

async fn the_demo_dataset_loads_and_validates(store: Store) {
    let dataset = parse_dataset(DEMO_DATASET).unwrap();
    // Parsing proved the identifiers; check them again from their text anyway.
    for s in &dataset.sites {
        Uai::parse(s.uai.as_str()).unwrap();
    }
    assert!(
        dataset
            .sites
            .iter()
            .any(|s| s.uai.as_str().starts_with("057"))
    );
    for h in &dataset.holders {
        Siret::parse(h.siret.as_str()).unwrap();
    }
    for o in dataset
        .organisations
        .iter()
        .filter_map(|o| o.siret.as_ref())
    {
        Siret::parse(o.as_str()).unwrap();
    }
    let grappes: std::collections::HashSet<_> = dataset
        .sites
        .iter()
        .filter_map(|s| s.grappe.clone())
        .collect();
    assert_eq!(grappes.len(), 2);

    let first = store.load_dataset(&dataset).await.unwrap();
    let again = store.load_dataset(&dataset).await.unwrap();
    assert_eq!(first, again, "loading twice writes the same");
    assert_eq!(
        (first.sites, first.carts, first.lots, first.orders),
        (6, 2, 2, 6)
    );
    let report = import(&store, DEMO_DELIVERIES).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.stored, 33);

    let lots = store.lots().await.unwrap();
    let titles: Vec<&str> = lots.iter().map(|l| l.title.as_str()).collect();
    assert_eq!(
        titles,
        vec!["Lot 1 – Solutions interactives", "Lot 2 – Classes mobiles"]
    );
    assert_eq!(lots[0].holder, "Écran Plus SAS");
    assert_eq!(lots[1].holder, "Mobil'Édu SARL");
    assert_eq!(lots[1].warranty.battery_months, Some(12));
    assert_eq!(lots[0].gti.as_deref(), Some("8 business hours"));
    assert_eq!(lots[0].business_opens_at, "08:30");
    assert_eq!((lots[0].orders, lots[0].delivered), (3, 9));
    assert_eq!((lots[1].orders, lots[1].delivered), (3, 24));

    let orders = store.orders().await.unwrap();
    assert_eq!(orders.len(), 6);
    let o = &orders[0];
    assert_eq!(
        (o.reference.as_str(), o.lot, o.lines.len()),
        ("BC-2024-001", 2, 2)
    );
    assert_eq!(o.member, "Commune de Valbois");
    assert_eq!(o.total_excl_vat_cents, 11 * 89_000 + 120_000);
    assert_eq!(o.total_incl_vat_cents, 1_318_800);
    assert_eq!(
        (o.funded_cents, o.funding.len(), o.delivered),
        (660_000, 1, 11)
    );
    let sites = store.sites().await.unwrap();
    let moselle = sites.iter().find(|s| s.uai == "0570301T").unwrap();
    assert_eq!(moselle.departement, "57");
    assert_eq!(moselle.grappe_id.as_deref(), Some("grappe-frontiere"));
    assert_eq!(moselle.classrooms, vec!["CM1", "CM2"]);
    assert_eq!((moselle.delivered, moselle.reporting), (15, 0));

    // The demo loader is idempotent too.
    let demo = parc_server::store::load_demo_dataset(&store).await.unwrap();
    assert_eq!((demo.stored, demo.unchanged), (0, 33));
}

async fn manifests_import_good_lines_and_name_bad_ones(store: Store) {
    load_dataset(&store).await;
    let good = import(&store, GOOD).await;
    assert_eq!((good.rows, good.stored, good.errors.len()), (6, 6, 0));

    let bad = import(&store, WITH_ERRORS).await;
    assert_eq!((bad.rows, bad.stored), (13, 2));
    assert_eq!(
        errors(&bad),
        vec![
            (3, "site_uai", "bad_uai"),
            (4, "order_reference", "unknown_order"),
            (5, "lot", "unknown_lot"),
            (6, "delivery_date", "bad_date"),
            (7, "serial", "duplicate_serial"),
            (8, "serial", "missing"),
            (9, "serial", "placeholder_serial"),
            (10, "lot", "lot_mismatch"),
            (11, "site_uai", "unknown_site"),
            (12, "cart", "unknown_cart"),
            (13, "acceptance_date", "accepted_before_delivery"),
        ]
    );
    assert_eq!(
        bad.errors[0].to_string(),
        "line 3, site_uai: UAI check letter is wrong: expected 'H', found 'A'"
    );
    assert_eq!(
        bad.errors[1].to_string(),
        "line 4, order_reference: order \"BC-2026-099\" is not known"
    );

    // Re-importing changes nothing; a dry run writes nothing.
    let again = import(&store, GOOD).await;
    assert_eq!((again.stored, again.updated, again.unchanged), (0, 0, 6));
    let again = import(&store, WITH_ERRORS).await;
    assert_eq!((again.stored, again.updated, again.unchanged), (0, 0, 2));
    assert_eq!(again.errors, bad.errors);
    let parsed = parse_manifest(DEMO_DELIVERIES).unwrap();
    let dry = store
        .import_deliveries(&parsed, true, Utc::now(), &|_, _| {})
        .await
        .unwrap();
    assert_eq!(dry.stored, 33);
    let r = store.reconciliation(100).await.unwrap();
    assert_eq!(r.never_seen_total, 8, "the dry run stored nothing");

    // A later manifest adds a cart-less acceptance date: updated, not duplicated; the
    // same serial under another order is refused.
    let later = GOOD.replace(",2026-10-05,,", ",2026-10-05,2026-10-20,");
    let upd = import(&store, &later).await;
    assert_eq!((upd.stored, upd.updated, upd.unchanged), (0, 2, 4));
    let other = "serial,model,order_reference,lot,site_uai,delivery_date\n\
                 PF5DR00001,ThinkPad X13 Gen 2i,BC-2024-001,2,0420101G,2026-10-05\n";
    let o = import(&store, other).await;
    assert_eq!(
        errors(&o),
        vec![(2, "serial", "delivered_under_other_order")]
    );
}

async fn devices_match_deliveries_and_the_rest_is_reconciled(store: Store) {
    load_dataset(&store).await;
    import(&store, DEMO_DELIVERIES).await;
    // Reported serials are normalised by the inventory path; two match, one is not on
    // any manifest, one has not reported a serial yet.
    register_serial(&store, "d-demo-0001", Some("PARCDEMO0001")).await;
    register_serial(&store, "d-demo-0015", Some("PARCDEMO0015")).await;
    register_serial(&store, "d-stray", Some("PF9STRAY")).await;
    register_serial(&store, "d-silent", None).await;
    // d-demo-0015 reports: its cart's last seen follows.
    let mut dev = TestDevice::new("d-demo-0015", 7);
    let msg = dev.health(90.0);
    let long_ago = Utc::now() - chrono::Duration::days(365);
    store
        .write_batch(&[Item::accepted(msg)], Utc::now(), long_ago)
        .await
        .unwrap();

    let r = store.reconciliation(1000).await.unwrap();
    assert_eq!(r.matched, 2);
    assert_eq!(r.unmatched_devices_total, 2);
    let unmatched: Vec<(&str, Option<&str>)> = r
        .unmatched_devices
        .iter()
        .map(|u| (u.device_id.as_str(), u.serial.as_deref()))
        .collect();
    assert_eq!(
        unmatched,
        vec![("d-silent", None), ("d-stray", Some("PF9STRAY"))]
    );
    assert_eq!(r.never_seen_total, 31);
    assert!(
        r.never_seen
            .iter()
            .any(|n| n.serial == "PF4NOSHOW01" && n.cart.as_deref() == Some("CM-FRONTIERE-1"))
    );
    assert!(!r.never_seen.iter().any(|n| n.serial == "PARCDEMO0001"));
    let cut = store.reconciliation(5).await.unwrap();
    assert_eq!((cut.never_seen.len(), cut.never_seen_total), (5, 31));

    let carts = store.carts().await.unwrap();
    assert_eq!(carts.len(), 2);
    let valbois = carts.iter().find(|c| c.id == "CM-VALBOIS-1").unwrap();
    let frontiere = carts.iter().find(|c| c.id == "CM-FRONTIERE-1").unwrap();
    assert_eq!((valbois.devices.len(), frontiere.devices.len()), (11, 13));
    assert_eq!(valbois.site, "0420101G");
    assert_eq!(valbois.home_classroom.as_deref(), Some("CM2"));
    assert!(valbois.last_seen.is_none(), "no device of it has reported");
    assert!(frontiere.last_seen.is_some());
    let d15 = frontiere
        .devices
        .iter()
        .find(|d| d.serial == "PARCDEMO0015")
        .unwrap();
    assert_eq!(d15.device_id.as_deref(), Some("d-demo-0015"));
    assert_eq!(frontiere.last_seen, d15.last_seen);
}

async fn warranties_follow_the_lots_terms(store: Store) {
    load_dataset(&store).await;
    import(&store, DEMO_DELIVERIES).await;
    for (id, serial) in [
        ("d-laptop-a", "PARCDEMO0001"),
        ("d-laptop-b", "PARCDEMO0015"),
        ("d-display", "PARCDEMO0000"),
        ("d-display-na", "PARCDEMO0016"),
    ] {
        register_serial(&store, id, Some(serial)).await;
    }
    let today = d(2026, 11, 25);
    let w = |id: &'static str| {
        let store = store.clone();
        async move {
            let dd = store.delivered_device(id).await.unwrap().unwrap();
            device_warranty(&dd, today)
        }
    };
    // Lot 2: 36 months from delivery, battery 12 months.
    let a = w("d-laptop-a").await;
    assert_eq!(a.lot, 2);
    assert_eq!(a.cart.as_deref(), Some("CM-VALBOIS-1"));
    assert_eq!(a.holder, "Mobil'Édu SARL");
    assert_eq!(a.warranty.basis, WarrantyBasis::Delivery);
    assert_eq!(a.warranty.start, Some(d(2024, 2, 12)));
    assert_eq!(a.warranty.end, Some(d(2027, 2, 12)));
    assert_eq!(a.warranty.battery_end, Some(d(2025, 2, 12)));
    assert_eq!(a.warranty.status, WarrantyStatus::EndingSoon);
    assert_eq!(a.warranty.battery_status, WarrantyStatus::Expired);
    // Delivery-based even though this one was accepted a week later.
    let b = w("d-laptop-b").await;
    assert_eq!(b.accepted_on, Some(d(2026, 1, 19)));
    assert_eq!(b.warranty.start, Some(d(2026, 1, 12)));
    assert_eq!(b.warranty.battery_status, WarrantyStatus::EndingSoon);
    // Lot 1: 60 months from acceptance, falling back to delivery when not accepted.
    let disp = w("d-display").await;
    assert_eq!(disp.warranty.basis, WarrantyBasis::Acceptance);
    assert_eq!(disp.warranty.end, Some(d(2029, 6, 3)));
    assert_eq!(disp.warranty.status, WarrantyStatus::InWarranty);
    let na = w("d-display-na").await;
    assert_eq!(na.warranty.basis, WarrantyBasis::DeliveryBecauseNotAccepted);
    assert_eq!(na.warranty.start, Some(d(2024, 6, 17)));
    assert!(store.delivered_device("d-unknown").await.unwrap().is_none());

    // An amendment: lot 2 now runs 48 months from acceptance, battery 24 months.
    let mut dataset = parse_dataset(DEMO_DATASET).unwrap();
    let lot2 = &mut dataset.contracts[0].lots[1];
    lot2.warranty = WarrantyTerms {
        months: 48,
        starts_at: WarrantyStart::Acceptance,
        battery_months: Some(24),
        service: ServiceMode::OnSite,
    };
    store.set_lot_terms("HV-2024-017", lot2).await.unwrap();
    let a = w("d-laptop-a").await;
    assert_eq!(a.warranty.basis, WarrantyBasis::DeliveryBecauseNotAccepted);
    assert_eq!(a.warranty.end, Some(d(2028, 2, 12)));
    assert_eq!(a.warranty.status, WarrantyStatus::InWarranty);
    assert_eq!(a.terms.service, ServiceMode::OnSite);
    let b = w("d-laptop-b").await;
    assert_eq!(b.warranty.basis, WarrantyBasis::Acceptance);
    assert_eq!(b.warranty.start, Some(d(2026, 1, 19)));
    assert_eq!(b.warranty.battery_end, Some(d(2028, 1, 19)));
    assert_eq!(b.warranty.battery_status, WarrantyStatus::InWarranty);
}

/// An import while the ingest writer commits batches: neither fails (on SQLite the
/// import takes the write lock up front rather than upgrading a read).
async fn an_import_runs_beside_the_ingest_writer(store: Store) {
    load_dataset(&store).await;
    let mut dev = TestDevice::new("d-busy", 3);
    crate::support::register(&store, std::slice::from_ref(&dev)).await;
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            let long_ago = Utc::now() - chrono::Duration::days(365);
            for _ in 0..40 {
                let m = dev.health(80.0);
                store
                    .write_batch(&[Item::accepted(m)], Utc::now(), long_ago)
                    .await
                    .unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    let mut text = Vec::new();
    gen_manifest::write_manifest(&mut text, 3_000, 10).unwrap();
    let text = String::from_utf8(text).unwrap();
    for _ in 0..3 {
        let r = import(&store, &text).await;
        assert_eq!(r.errors.len(), 10);
    }
    writer.await.unwrap();
    assert_eq!(store.counts().await.unwrap().health_samples, 40);
}

/// The acceptance run: `parc-server import deliveries` on a generated 10,000-line
/// manifest with 20 bad lines, twice.
async fn the_cli_imports_ten_thousand_lines(url: String) {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("manifest.csv");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&manifest).unwrap());
    assert_eq!(
        gen_manifest::write_manifest(&mut file, 10_000, 20).unwrap(),
        20
    );
    std::io::Write::flush(&mut file).unwrap();
    drop(file);
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_parc-server"))
            .args(args)
            .env("PARC_SERVER_DATABASE__URL", &url)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8(out.stdout).unwrap())
    };
    let dataset = concat!(env!("CARGO_MANIFEST_DIR"), "/demo-data/dataset.toml");
    let (code, _) = run(&["import", "dataset", dataset]);
    assert_eq!(code, Some(0));
    let path = manifest.to_str().unwrap();
    let (code, first) = run(&["import", "deliveries", path]);
    assert_eq!(code, Some(2), "some lines were refused: {first}");
    let summary = first.lines().last().unwrap();
    assert!(
        summary.contains("10000 rows read: stored 9980 new, 0 updated, 0 unchanged, 20 refused"),
        "{summary}"
    );
    let refused: Vec<&str> = first.lines().filter(|l| l.contains(": line ")).collect();
    assert_eq!(refused.len(), 20, "{first}");
    assert!(
        refused[0].contains("line 501, site_uai: UAI check letter is wrong"),
        "{}",
        refused[0]
    );
    let (_, second) = run(&["import", "deliveries", path]);
    let summary2 = second.lines().last().unwrap();
    assert!(
        summary2.contains("stored 0 new, 0 updated, 9980 unchanged, 20 refused"),
        "{summary2}"
    );
    eprintln!("10,000-line import (debug build): first: {summary}; second: {summary2}");
}

async fn the_http_routes_import_and_report(store: Store) {
    load_dataset(&store).await;
    parc_server::accounts_cli::add_account(
        &store,
        "admin",
        None,
        "admin",
        None,
        None,
        crate::access::PASSWORD,
    )
    .await
    .unwrap();
    let token = parc_server::accounts_cli::issue_token(&store, "admin", "test", None)
        .await
        .unwrap();
    let auth = format!("Bearer {token}");
    let addr = crate::access::serve(store.clone()).await;
    let http_post = |addr, path: &'static str, ct: &'static str, body: &'static str| {
        let auth = auth.clone();
        async move {
            let r = crate::access::request(
                addr,
                "POST",
                path,
                &[("Authorization", &auth), ("Content-Type", ct)],
                body,
            )
            .await;
            (r.status, r.body)
        }
    };
    let http_get = |addr, path: &'static str| {
        let auth = auth.clone();
        async move {
            let r =
                crate::access::request(addr, "GET", path, &[("Authorization", &auth)], "").await;
            (r.status, r.body)
        }
    };

    let (status, body) = http_post(
        addr,
        "/api/v1/deliveries/import?dry_run=true",
        "text/csv",
        WITH_ERRORS,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["stored"], 2);
    assert_eq!(report["errors"][0]["line"], 3);
    assert_eq!(report["errors"][0]["code"], "bad_uai");
    assert_eq!(report["errors"][0]["field"], "site_uai");
    let (status, body) = http_post(
        addr,
        "/api/v1/deliveries/import",
        "text/csv",
        DEMO_DELIVERIES,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = http_post(
        addr,
        "/api/v1/deliveries/import",
        "text/csv",
        "serial,model\n",
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("lacks column `order_reference`"), "{body}");

    register_serial(&store, "d-demo-0001", Some("PARCDEMO0001")).await;
    let (status, body) = http_get(addr, "/api/v1/devices/d-demo-0001/warranty").await;
    assert_eq!(status, 200, "{body}");
    let w: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(w["serial"], "PARCDEMO0001");
    assert_eq!(w["start"], "2024-02-12");
    assert_eq!(w["end"], "2027-02-12");
    assert_eq!(w["terms"]["starts_at"], "delivery");
    let (status, _) = http_get(addr, "/api/v1/devices/d-nobody/warranty").await;
    assert_eq!(status, 404);
    let (status, body) = http_get(addr, "/api/v1/reconciliation?limit=2").await;
    assert_eq!(status, 200, "{body}");
    let r: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (r["matched"].as_i64(), r["never_seen_total"].as_i64()),
        (Some(1), Some(32))
    );
    assert_eq!(r["never_seen"].as_array().unwrap().len(), 2);
    for path in [
        "/api/v1/lots",
        "/api/v1/carts",
        "/api/v1/warranties?status=expired",
    ] {
        let (status, body) = http_get(addr, path).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(
            serde_json::from_str::<serde_json::Value>(&body)
                .unwrap()
                .is_array()
        );
    }
    let (_, body) = http_get(addr, "/api/v1/warranties").await;
    assert_eq!(
        serde_json::from_str::<Vec<serde_json::Value>>(&body)
            .unwrap()
            .len(),
        33
    );
}

on_both_engines!(
    the_demo_dataset_loads_and_validates,
    manifests_import_good_lines_and_name_bad_ones,
    devices_match_deliveries_and_the_rest_is_reconciled,
    warranties_follow_the_lots_terms,
    the_http_routes_import_and_report,
    an_import_runs_beside_the_ingest_writer,
);

#[tokio::test]
async fn the_cli_imports_ten_thousand_lines_on_sqlite() {
    let db = crate::support::TestDb::sqlite();
    the_cli_imports_ten_thousand_lines(db.url.clone()).await;
}

#[tokio::test]
#[ignore = "needs postgres"]
async fn the_cli_imports_ten_thousand_lines_on_postgres() {
    let db = crate::support::TestDb::postgres().await;
    the_cli_imports_ten_thousand_lines(db.url.clone()).await;
}
