//! The French e-mail a contract holder receives for a ticket: subject, plain text and
//! HTML rendered from the same notice the webhook carries, with askama templates in
//! `templates/email/` (HTML-escaped by the template engine).
//!
//! Pure rendering: it must never read anything but the notice, and every French word
//! lives here or in the templates so another language can follow.

use askama::Template;
use parc_protocol::ticket::{DeviceRef, TicketNotice};

/// French names of the readings rules watch.
pub fn signal_fr(signal: &str) -> &str {
    match signal {
        "battery_health_percent" => "santé de la batterie (% de la capacité d'origine)",
        "battery_cycle_count" => "cycles de charge de la batterie",
        "smart_failed" => "diagnostic SMART du disque en échec",
        "reallocated_sectors_rising" => "secteurs réalloués en hausse",
        "pending_sectors_rising" => "secteurs en attente en hausse",
        "nvme_percentage_used_percent" => "usure du SSD NVMe (%)",
        "media_errors" => "erreurs de support du SSD",
        "temperature_margin_celsius" => "marge avant la température critique (°C)",
        "fan_stopped_while_hot" => "ventilateur arrêté en surchauffe",
        "memory_errors_uncorrected" => "erreurs mémoire non corrigées",
        "touch_missing" => "dalle tactile non détectée",
        "display_missing" => "écran non détecté",
        "unexpected_shutdowns_7d" => "arrêts inattendus sur 7 jours",
        "silent_school_days" => "jours de classe sans nouvelles",
        other => other,
    }
}

pub fn severity_fr(severity: &str) -> &str {
    match severity {
        "info" => "information",
        "minor" => "mineure",
        "major" => "majeure",
        "critical" => "critique",
        other => other,
    }
}

pub fn event_fr(event: &str) -> &str {
    match event {
        "ticket.created" => "Nouveau ticket",
        "ticket.updated" => "Ticket mis à jour",
        other => other,
    }
}

pub fn status_fr(status: &str) -> &str {
    match status {
        "new" => "nouveau",
        "sent" => "envoyé",
        "acknowledged" => "pris en compte",
        "in_progress" => "en cours",
        "resolved" => "résolu",
        "closed" => "clos",
        "rejected" => "rejeté",
        "reopened" => "rouvert",
        other => other,
    }
}

/// A line per device, ready for both templates.
pub struct DeviceLine {
    pub serial: String,
    pub model: String,
    pub hostname: String,
    pub order: String,
    pub delivered: String,
    pub warranty_end: String,
    pub site: String,
}

impl DeviceLine {
    fn of(d: &DeviceRef) -> Self {
        let or_dash = |s: Option<&str>| s.unwrap_or("—").to_string();
        let date = |d: Option<chrono::NaiveDate>| {
            d.map(|d| d.format("%d/%m/%Y").to_string())
                .unwrap_or_else(|| "—".into())
        };
        Self {
            serial: or_dash(d.serial.as_deref()),
            model: or_dash(d.model.as_deref()),
            hostname: or_dash(d.hostname.as_deref()),
            order: or_dash(d.order_reference.as_deref()),
            delivered: date(d.accepted_on.or(d.delivered_on)),
            warranty_end: date(d.warranty_end),
            site: d
                .site
                .as_ref()
                .map(|s| {
                    format!(
                        "{} (UAI {}), {}, {} {}",
                        s.name, s.uai, s.street, s.postcode, s.city
                    )
                })
                .unwrap_or_else(|| "—".into()),
        }
    }
}

#[derive(Template)]
#[template(path = "email/ticket.txt", escape = "none")]
struct TextMail<'a> {
    m: &'a Mail,
}

#[derive(Template)]
#[template(path = "email/ticket.html")]
struct HtmlMail<'a> {
    m: &'a Mail,
}

/// Everything both templates show, already in French.
pub struct Mail {
    pub heading: String,
    pub reference: String,
    pub status: String,
    pub fault: String,
    pub severity: String,
    pub reading: String,
    pub since: String,
    pub history: Vec<(String, String)>,
    pub devices: Vec<DeviceLine>,
    pub lot: String,
    pub authority: String,
    pub contact: String,
    pub gti: String,
    pub gtr: String,
    pub link: String,
}

fn paris(at: chrono::DateTime<chrono::Utc>) -> String {
    crate::procurement::france_local_time(at)
        .format("%d/%m/%Y %H:%M")
        .to_string()
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}").replace('.', ",")
    }
}

impl Mail {
    pub fn of(notice: &TicketNotice, public_url: &str) -> Mail {
        let t = &notice.ticket;
        let f = &t.fault;
        let fault = f
            .description
            .clone()
            .unwrap_or_else(|| signal_fr(&f.signal).to_string());
        Mail {
            heading: event_fr(&notice.event).to_string(),
            reference: t.reference.clone(),
            status: status_fr(&t.status).to_string(),
            fault,
            severity: severity_fr(&f.severity).to_string(),
            reading: format!(
                "{} : {} (seuil {}), sur {} relevé(s)",
                signal_fr(&f.signal),
                number(f.value),
                f.threshold,
                f.samples
            ),
            since: paris(f.since),
            history: f
                .history
                .iter()
                .map(|r| (paris(r.at), number(r.value)))
                .collect(),
            devices: t.devices.iter().map(DeviceLine::of).collect(),
            lot: t
                .lot
                .as_ref()
                .map(|l| format!("marché {} — lot {} « {} »", l.contract, l.number, l.title))
                .unwrap_or_else(|| "—".into()),
            authority: t
                .authority
                .as_ref()
                .map(|a| a.name.clone())
                .unwrap_or_else(|| "—".into()),
            contact: t
                .contact
                .as_ref()
                .map(|c| {
                    [
                        Some(c.name.as_str()),
                        c.email.as_deref(),
                        c.phone.as_deref(),
                    ]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" — ")
                })
                .unwrap_or_else(|| "—".into()),
            gti: t
                .deadlines
                .gti_due
                .map(paris)
                .unwrap_or_else(|| "non prévue au marché".into()),
            gtr: t
                .deadlines
                .gtr_due
                .map(paris)
                .unwrap_or_else(|| "non prévue au marché".into()),
            link: format!(
                "{}/api/tickets/{}",
                public_url.trim_end_matches('/'),
                t.reference
            ),
        }
    }

    pub fn subject(&self) -> String {
        let first = self.devices.first();
        let what = if self.devices.len() > 1 {
            format!("{} appareils", self.devices.len())
        } else {
            first
                .map(|d| format!("n° de série {}", d.serial))
                .unwrap_or_default()
        };
        format!(
            "[Parc] {} {} — {} — {}",
            self.heading, self.reference, self.fault, what
        )
    }

    pub fn text(&self) -> String {
        TextMail { m: self }
            .render()
            .expect("the e-mail template renders")
    }

    pub fn html(&self) -> String {
        HtmlMail { m: self }
            .render()
            .expect("the e-mail template renders")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice() -> TicketNotice {
        serde_json::from_str(include_str!(
            "../../../protocol/tests/data/ticket-notice.json"
        ))
        .expect("golden notice parses")
    }

    #[test]
    fn the_mail_is_french_and_carries_what_the_holder_needs() {
        let mail = Mail::of(&notice(), "https://parc.example.org/");
        let subject = mail.subject();
        assert!(subject.contains("PARC-2026-000042"), "{subject}");
        assert!(subject.contains("n° de série NXA1B2C3D4"), "{subject}");
        let text = mail.text();
        for needle in [
            "Nouveau ticket",
            "NXA1B2C3D4",
            "TravelMate B3",
            "BC-2025-0117",
            "0570001A",
            "08/09/2029",
            "lot 2",
            "santé de la batterie",
            "52",
            "Intervention (GTI)",
            "https://parc.example.org/api/tickets/PARC-2026-000042",
        ] {
            assert!(text.contains(needle), "text lacks {needle}:\n{text}");
        }
        let html = mail.html();
        assert!(html.contains("<table") && html.contains("NXA1B2C3D4"));
        assert!(html.contains("lang=\"fr\""));
    }

    #[test]
    fn html_escapes_what_devices_report() {
        let mut n = notice();
        n.ticket.devices[0].hostname = Some("<script>alert(1)</script>".into());
        let html = Mail::of(&n, "http://x").html();
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;") || html.contains("&#60;script&#62;"));
    }
}
