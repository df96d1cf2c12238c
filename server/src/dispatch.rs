//! The dispatcher: drains the ticket outbox to contract holders — a signed JSON
//! webhook (`X-Parc-Signature`, `Idempotency-Key`) and a French e-mail over SMTP —
//! retrying failures with exponential backoff and jitter until delivered or given up.
//!
//! A delivery is marked done only after the receiver accepted it; a crash in between
//! resends it with the same idempotency key (webhook header, e-mail Message-ID), so the
//! receiver applies it once. It must never build a ticket or decide who gets one (the
//! maintenance worker wrote that), and never log a webhook secret.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};
use parc_protocol::ticket::{
    IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TICKET_NOTICE_VERSION, TicketNotice, sign_notice,
};

use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::store::{DueDelivery, Store};
use crate::tickets::email::Mail;

#[derive(Debug, Clone)]
pub struct DispatchOptions {
    pub smtp_url: Option<String>,
    pub email_from: String,
    pub public_url: String,
    pub retry_first: Duration,
    pub retry_max: Duration,
    pub max_attempts: u32,
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("dispatch.smtp_url: {0}")]
    Smtp(String),
    #[error("dispatch.email_from: {0}")]
    From(String),
    #[error("building the HTTP client: {0}")]
    Http(String),
}

/// Why one attempt failed, and whether trying again can help.
#[derive(Debug)]
struct Failure {
    message: String,
    permanent: bool,
}

impl Failure {
    fn retry(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            permanent: false,
        }
    }

    fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            permanent: true,
        }
    }
}

pub struct Dispatcher {
    store: Store,
    metrics: Arc<Metrics>,
    options: DispatchOptions,
    http: reqwest::Client,
    smtp: Option<AsyncSmtpTransport<Tokio1Executor>>,
    from: Mailbox,
}

/// Deliveries sent concurrently per round.
const ROUND: i64 = 32;

impl Dispatcher {
    pub fn new(
        store: Store,
        metrics: Arc<Metrics>,
        options: DispatchOptions,
    ) -> Result<Self, DispatchError> {
        let smtp = options
            .smtp_url
            .as_deref()
            .map(|url| {
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .map(|b| b.timeout(Some(options.timeout)).build())
                    .map_err(|e| DispatchError::Smtp(e.to_string()))
            })
            .transpose()?;
        let from = options
            .email_from
            .parse::<Mailbox>()
            .map_err(|e| DispatchError::From(e.to_string()))?;
        let http = reqwest::Client::builder()
            .timeout(options.timeout)
            .user_agent(concat!("parc-server/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| DispatchError::Http(e.to_string()))?;
        Ok(Self {
            store,
            metrics,
            options,
            http,
            smtp,
            from,
        })
    }

    /// Sends what is due now; returns how many deliveries were attempted.
    pub async fn round(self: &Arc<Self>) -> usize {
        let due = match self.store.due_deliveries(Utc::now(), ROUND).await {
            Ok(d) => d,
            Err(e) => {
                self.metrics.maintenance_failures.inc();
                tracing::warn!(error = %e, "reading the outbox failed; will retry");
                return 0;
            }
        };
        let n = due.len();
        let mut set = tokio::task::JoinSet::new();
        for d in due {
            let this = self.clone();
            set.spawn(async move { this.deliver_one(d).await });
        }
        while set.join_next().await.is_some() {}
        n
    }

    async fn deliver_one(&self, d: DueDelivery) {
        let result = self.attempt(&d).await;
        let label = |outcome: &str| {
            vec![
                ("channel", d.channel.clone()),
                ("outcome", outcome.to_string()),
            ]
        };
        let recorded = match result {
            Ok(()) => {
                let r = self.store.delivery_succeeded(&d, Utc::now()).await;
                if let Ok(coalesced) = &r {
                    self.metrics
                        .deliveries
                        .get_or_create(&label("delivered"))
                        .inc();
                    self.metrics
                        .deliveries
                        .get_or_create(&label("coalesced"))
                        .inc_by(*coalesced);
                    tracing::info!(channel = %d.channel, key = %d.idempotency_key, event = %d.event, "ticket delivered");
                }
                r.map(|_| ())
            }
            Err(f) => {
                self.metrics
                    .delivery_failures
                    .get_or_create(&Metrics::label("channel", &d.channel))
                    .inc();
                let attempts = u32::try_from(d.attempts + 1).unwrap_or(u32::MAX);
                let give_up = f.permanent || attempts >= self.options.max_attempts;
                let retry_at = (!give_up).then(|| {
                    Utc::now()
                        + chrono::Duration::from_std(self.backoff(attempts))
                            .unwrap_or(chrono::Duration::seconds(60))
                });
                if give_up {
                    self.metrics
                        .deliveries
                        .get_or_create(&label("failed"))
                        .inc();
                    tracing::error!(channel = %d.channel, key = %d.idempotency_key, attempts, error = %f.message, "ticket delivery given up");
                } else {
                    tracing::warn!(channel = %d.channel, key = %d.idempotency_key, attempts, error = %f.message, "ticket delivery failed; will retry");
                }
                self.store.delivery_failed(&d, &f.message, retry_at).await
            }
        };
        if let Err(e) = recorded {
            // The outbox row stays due: it is sent again with the same key.
            self.metrics.maintenance_failures.inc();
            tracing::warn!(error = %e, "recording a delivery failed");
        }
    }

    /// Doubling from `retry_first`, capped at `retry_max`, with jitter in [½, 1] so
    /// many failed deliveries do not retry in lockstep.
    fn backoff(&self, attempts: u32) -> Duration {
        let base = self
            .options
            .retry_first
            .saturating_mul(1u32 << attempts.saturating_sub(1).min(20))
            .min(self.options.retry_max);
        let mut b = [0u8; 2];
        getrandom::fill(&mut b).expect("the OS random source works");
        let jitter = 0.5 + f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX) / 2.0;
        base.mul_f64(jitter)
    }

    async fn attempt(&self, d: &DueDelivery) -> Result<(), Failure> {
        let (doc, secret) = self
            .store
            .ticket_document(d.ticket_id)
            .await
            .map_err(|e| Failure::retry(format!("reading the ticket: {e}")))?;
        let notice = TicketNotice {
            version: TICKET_NOTICE_VERSION.to_string(),
            event: d.event.clone(),
            sent_at: Utc::now(),
            ticket: doc,
        };
        match d.channel.as_str() {
            "webhook" => {
                let secret = secret.ok_or_else(|| {
                    Failure::permanent(
                        "the contract holder has no webhook secret (parc-server holder set-webhook)",
                    )
                })?;
                self.webhook(d, &notice, secret.as_bytes()).await
            }
            "email" => self.email(d, &notice).await,
            other => Err(Failure::permanent(format!("unknown channel {other:?}"))),
        }
    }

    async fn webhook(
        &self,
        d: &DueDelivery,
        notice: &TicketNotice,
        secret: &[u8],
    ) -> Result<(), Failure> {
        let body = serde_json::to_vec(notice).expect("a notice serializes");
        let response = self
            .http
            .post(&d.destination)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, sign_notice(secret, &body))
            .header(IDEMPOTENCY_HEADER, &d.idempotency_key)
            .header("X-Parc-Event", &d.event)
            .body(body)
            .send()
            .await
            .map_err(|e| Failure::retry(format!("POST {}: {e}", d.destination)))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else if status.is_client_error()
            && status != reqwest::StatusCode::REQUEST_TIMEOUT
            && status != reqwest::StatusCode::TOO_MANY_REQUESTS
        {
            Err(Failure::permanent(format!(
                "POST {} answered {status}",
                d.destination
            )))
        } else {
            Err(Failure::retry(format!(
                "POST {} answered {status}",
                d.destination
            )))
        }
    }

    async fn email(&self, d: &DueDelivery, notice: &TicketNotice) -> Result<(), Failure> {
        let Some(smtp) = &self.smtp else {
            return Err(Failure::retry(
                "e-mail queued but dispatch.smtp_url is not set",
            ));
        };
        let to: Mailbox = d
            .destination
            .parse()
            .map_err(|e| Failure::permanent(format!("support address {:?}: {e}", d.destination)))?;
        let mail = Mail::of(notice, &self.options.public_url);
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject())
            // The idempotency key as Message-ID: a resend after a crash is the same
            // message to the receiving systems.
            .message_id(Some(format!("<{}@parc>", d.idempotency_key)))
            .multipart(MultiPart::alternative_plain_html(mail.text(), mail.html()))
            .map_err(|e| Failure::permanent(format!("building the e-mail: {e}")))?;
        smtp.send(message).await.map(|_| ()).map_err(|e| {
            if e.is_permanent() {
                Failure::permanent(format!("SMTP: {e}"))
            } else {
                Failure::retry(format!("SMTP: {e}"))
            }
        })
    }
}

/// Runs the dispatcher until `shutdown`: woken when the maintenance worker queued
/// deliveries, otherwise when the next retry falls due (checked at least every 5 s).
pub async fn run(
    dispatcher: Arc<Dispatcher>,
    maintenance: Arc<crate::maintenance::Maintenance>,
    shutdown: Shutdown,
) {
    let stop = shutdown.wait();
    tokio::pin!(stop);
    loop {
        let held = maintenance.holds_lease(Utc::now()).await;
        if held {
            while dispatcher.round().await as i64 == ROUND {}
        }
        let wait = match dispatcher.store.next_delivery_due().await {
            Ok(Some(at)) if held => (at - Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(Duration::from_secs(5)),
            _ => Duration::from_secs(5),
        };
        tokio::select! {
            () = &mut stop => return,
            () = maintenance.dispatch_wakeup.notified() => {}
            () = tokio::time::sleep(wait.max(Duration::from_millis(20))) => {}
        }
    }
}
