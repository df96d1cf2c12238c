//! The maintenance worker: judges every new health sample with the fault rules, turns
//! raised faults into tickets (routed to the contract holder or the authority, grouped
//! into one claim when a lot and model fail together), confirms repairs by telemetry,
//! checks for silent devices, and queues the deliveries the dispatcher sends.
//!
//! One round = one transaction: the inbox rows it consumed, the rule states, findings,
//! tickets and outbox rows commit together, so a crash can neither lose a finding nor
//! open a ticket twice. Only the replica holding the `maintenance` lease works. It must
//! never send anything itself (that is `dispatch`) nor judge a sample twice.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveTime, Utc};
use parc_protocol::ticket::{
    AuthorityRef, ContactRef, DeadlineRefs, DeviceRef, Fault, HolderRef, LotRef, Reading,
    TicketDocument, TicketKind,
};

use crate::domain::calendar::{BusinessCalendar, Calendar};
use crate::domain::sla::{SlaDuration, SlaTerms, deadlines};
use crate::domain::warranty::{ServiceMode, Warranty, compute_warranty};
use crate::metrics::Metrics;
use crate::procurement::{france_local_time, today_in_france, utc_from_france};
use crate::rules::{
    Evidence, Rule, RuleSet, RuleState, Sample, Signal, Transition, evaluate, evaluate_silence,
};
use crate::shutdown::Shutdown;
use crate::store::{
    DeviceContext, HistoryColumn, LotContext, MaintenanceTx, NewTicket, Store, StoreError,
    TicketRow,
};
use crate::tickets::{self, Queue, RouteInput, Status};

/// The lease both background workers (rules and dispatch) run under.
pub const LEASE: &str = "maintenance";
const LEASE_TTL_SECONDS: i64 = 30;
/// Inbox samples per round (one transaction).
const ROUND_SAMPLES: usize = 500;

/// Ingest messages not yet committed (queued, or in the batch being written) from which
/// the rules wait: a backlog, far above the trickle of steady state. Counting the batch
/// being written matters: the writer takes all that is queued at once, and a round
/// started while it commits would hold the one SQLite write connection next.
const BACKLOG: i64 = 1000;
/// The longest the rules wait for the ingest before a round.
const MAX_YIELD: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct MaintenanceOptions {
    pub rules: RuleSet,
    pub storm_threshold: u32,
    pub storm_window: chrono::Duration,
    pub reference_prefix: String,
    pub evidence: chrono::Duration,
    pub contact: Option<ContactRef>,
    /// Tickets also go out by e-mail.
    pub email_enabled: bool,
    pub silence_every: Duration,
    /// This replica's name in the lease (stable across restarts).
    pub instance: String,
}

pub struct Maintenance {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub options: MaintenanceOptions,
    /// Woken by ingest after it queued health samples.
    pub rules_wakeup: Arc<tokio::sync::Notify>,
    /// Woken here after a round queued deliveries.
    pub dispatch_wakeup: Arc<tokio::sync::Notify>,
    /// When this replica last renewed the lease it holds.
    pub lease_renewed: std::sync::Mutex<Option<DateTime<Utc>>>,
}

/// What one round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RoundOutcome {
    pub samples: usize,
    pub raised: usize,
    pub cleared: usize,
    pub tickets_opened: usize,
    pub deliveries_queued: usize,
    /// Samples were left in the rules' queue for another round.
    pub more: bool,
}

impl Maintenance {
    /// Whether this replica holds the maintenance lease, renewing it in the database
    /// at most every third of its TTL (both workers ask often).
    pub async fn holds_lease(&self, now: DateTime<Utc>) -> bool {
        let renew_every = chrono::Duration::seconds(LEASE_TTL_SECONDS / 3);
        if let Some(at) = *self.lease_renewed.lock().expect("lease mutex")
            && now - at < renew_every
        {
            return true;
        }
        match self
            .store
            .take_lease(
                LEASE,
                &self.options.instance,
                now,
                chrono::Duration::seconds(LEASE_TTL_SECONDS),
            )
            .await
        {
            Ok(held) => {
                *self.lease_renewed.lock().expect("lease mutex") = held.then_some(now);
                held
            }
            Err(e) => {
                tracing::warn!(error = %e, "taking the maintenance lease failed");
                *self.lease_renewed.lock().expect("lease mutex") = None;
                false
            }
        }
    }

    /// Evaluates inbox samples until the inbox is empty (or a round fails).
    pub async fn drain(&self) -> Result<RoundOutcome, StoreError> {
        let mut total = RoundOutcome::default();
        loop {
            self.yield_to_ingest().await;
            let o = self.round(Utc::now()).await?;
            total.samples += o.samples;
            total.raised += o.raised;
            total.cleared += o.cleared;
            total.tickets_opened += o.tickets_opened;
            total.deliveries_queued += o.deliveries_queued;
            if o.deliveries_queued > 0 {
                self.dispatch_wakeup.notify_one();
            }
            if !o.more {
                return Ok(total);
            }
        }
    }

    /// Waits while the ingest has a backlog ([`BACKLOG`] or more not yet committed), at most
    /// [`MAX_YIELD`]: storing reports comes first — a burst (a broker's backlog after an
    /// outage, a fleet reconnecting) is absorbed faster when the rules, which share the
    /// cores and the database, judge it a few seconds later. With the queue near empty,
    /// as in steady state, this returns at once and tickets open within the second.
    async fn yield_to_ingest(&self) {
        let started = std::time::Instant::now();
        while self.metrics.uncommitted.get() >= BACKLOG && started.elapsed() < MAX_YIELD {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// One transaction's worth of samples.
    pub async fn round(&self, now: DateTime<Utc>) -> Result<RoundOutcome, StoreError> {
        let mut tx = self.store.begin_maintenance().await?;
        let inbox = tx.take_inbox(ROUND_SAMPLES).await?;
        if inbox.samples.is_empty() {
            // Rows whose samples were all pruned meanwhile, or none.
            tx.delete_inbox(&inbox).await?;
            tx.commit().await?;
            return Ok(RoundOutcome {
                more: inbox.more,
                ..RoundOutcome::default()
            });
        }
        let samples = &inbox.samples[..];
        let mut ids: Vec<String> = samples.iter().map(|s| s.device_id.clone()).collect();
        ids.dedup();
        let contexts = tx.device_contexts(&ids).await?;
        let mut states = tx.rule_states(&ids).await?;
        let mut open = open_device_tickets(&mut tx, &ids).await?;
        let mut work = Work::new(self, now);

        let mut touched: BTreeSet<(String, String)> = BTreeSet::new();
        for sample in samples {
            let (Some(health), Some(ctx)) = (&sample.health, contexts.get(&sample.device_id))
            else {
                continue;
            };
            work.outcome.samples += 1;
            let rules = self.resolve(ctx);
            let input = Sample {
                health,
                inventory: ctx.inventory.as_ref(),
            };
            for rule in rules.iter().filter(|r| r.enabled) {
                let key = (ctx.device_id.clone(), rule.id.clone());
                let state = states.entry(key.clone()).or_default();
                let before = state.clone();
                let readings = state.readings;
                let transition = if rule.signal == Signal::SilentSchoolDays {
                    // A report ends any silence.
                    if !state.raised && state.streak == 0 {
                        continue;
                    }
                    evaluate_silence(rule, state, 0, sample.collected_at)
                } else {
                    evaluate(rule, state, &input, sample.collected_at)
                };
                if *state != before {
                    touched.insert(key.clone());
                }
                let read = state.readings > readings;
                let bad = read && state.last_value.is_some_and(|v| rule.threshold.holds(v));
                if let Some(t) = transition {
                    work.apply(&mut tx, ctx, rule, &t, &mut open).await?;
                } else if bad
                    && let Some(ticket) = open.get_mut(&key)
                    && ticket.status == Status::Resolved.as_str()
                {
                    // A declared repair that the readings contradict.
                    ticket.bad_since_resolved += 1;
                    let needed = i64::from(rule.raise.samples.unwrap_or(1).max(1));
                    if ticket.bad_since_resolved >= needed {
                        let note = format!(
                            "fault still present after the declared repair ({} = {})",
                            rule.signal,
                            state.last_value.unwrap_or_default()
                        );
                        work.move_ticket(&mut tx, ticket, Status::Reopened, &note)
                            .await?;
                    } else {
                        tx.set_bad_since_resolved(ticket.id, ticket.bad_since_resolved)
                            .await?;
                    }
                }
            }
        }
        let to_save: Vec<(&str, &str, &RuleState)> = touched
            .iter()
            .filter_map(|k| states.get(k).map(|s| (k.0.as_str(), k.1.as_str(), s)))
            .collect();
        tx.save_rule_states(&to_save, now).await?;
        tx.delete_inbox(&inbox).await?;
        tx.commit().await?;
        self.metrics
            .rules_samples
            .inc_by(work.outcome.samples as u64);
        work.outcome.more = inbox.more;
        Ok(work.outcome)
    }

    /// Checks devices for silence on school days.
    pub async fn silence_round(&self, now: DateTime<Utc>) -> Result<RoundOutcome, StoreError> {
        let Some(base) = self
            .options
            .rules
            .rules
            .iter()
            .find(|r| r.signal == Signal::SilentSchoolDays)
        else {
            return Ok(RoundOutcome::default());
        };
        // Under a day of silence cannot be a school day of silence.
        let ids = self
            .store
            .silence_candidates(now - chrono::Duration::days(1), &base.id)
            .await?;
        if ids.is_empty() {
            return Ok(RoundOutcome::default());
        }
        let mut tx = self.store.begin_maintenance().await?;
        let contexts = tx.device_contexts(&ids).await?;
        let mut states = tx.rule_states(&ids).await?;
        let mut open = open_device_tickets(&mut tx, &ids).await?;
        let mut work = Work::new(self, now);
        let today = today_in_france(now);
        let mut touched = Vec::new();
        for id in &ids {
            let Some(ctx) = contexts.get(id) else {
                continue;
            };
            let Some(last_seen) = ctx.last_seen else {
                continue;
            };
            let rules = self.resolve(ctx);
            let Some(rule) = rules.iter().find(|r| r.id == base.id && r.enabled) else {
                continue;
            };
            let cal = BusinessCalendar::new(Calendar::for_departement(
                ctx.departement.as_deref().unwrap_or(""),
            ));
            let days = cal.school_days_between(today_in_france(last_seen), today);
            let key = (id.clone(), rule.id.clone());
            let state = states.entry(key.clone()).or_default();
            if let Some(t) = evaluate_silence(rule, state, days, now) {
                work.apply(&mut tx, ctx, rule, &t, &mut open).await?;
            }
            touched.push(key);
        }
        let to_save: Vec<(&str, &str, &RuleState)> = touched
            .iter()
            .filter_map(|k| states.get(k).map(|s| (k.0.as_str(), k.1.as_str(), s)))
            .collect();
        tx.save_rule_states(&to_save, now).await?;
        tx.commit().await?;
        if work.outcome.deliveries_queued > 0 {
            self.dispatch_wakeup.notify_one();
        }
        Ok(work.outcome)
    }

    fn resolve(&self, ctx: &DeviceContext) -> Vec<Rule> {
        self.options.rules.resolve(
            ctx.model.as_deref(),
            ctx.lot.as_ref().map(|l| l.title.as_str()),
        )
    }
}

/// Open device tickets of these devices, keyed by (device, rule).
async fn open_device_tickets(
    tx: &mut MaintenanceTx,
    ids: &[String],
) -> Result<HashMap<(String, String), TicketRow>, StoreError> {
    Ok(tx
        .open_device_tickets(ids)
        .await?
        .into_iter()
        .filter_map(|t| Some(((t.device_id.clone()?, t.rule_id.clone()), t)))
        .collect())
}

/// One round's decisions and their effects on the transaction.
struct Work<'a> {
    m: &'a Maintenance,
    now: DateTime<Utc>,
    outcome: RoundOutcome,
}

impl<'a> Work<'a> {
    fn new(m: &'a Maintenance, now: DateTime<Utc>) -> Self {
        Self {
            m,
            now,
            outcome: RoundOutcome::default(),
        }
    }

    async fn apply(
        &mut self,
        tx: &mut MaintenanceTx,
        ctx: &DeviceContext,
        rule: &Rule,
        t: &Transition,
        open: &mut HashMap<(String, String), TicketRow>,
    ) -> Result<(), StoreError> {
        match t {
            Transition::Raised {
                value, evidence, ..
            } => {
                self.outcome.raised += 1;
                self.m
                    .metrics
                    .findings
                    .get_or_create(&Metrics::label("rule", &rule.id))
                    .inc();
                self.raised(tx, ctx, rule, *value, evidence, open).await
            }
            Transition::Cleared { value, .. } => {
                self.outcome.cleared += 1;
                self.cleared(tx, ctx, rule, *value, open).await
            }
        }
    }

    async fn raised(
        &mut self,
        tx: &mut MaintenanceTx,
        ctx: &DeviceContext,
        rule: &Rule,
        value: f64,
        evidence: &Evidence,
        open: &mut HashMap<(String, String), TicketRow>,
    ) -> Result<(), StoreError> {
        let now = self.now;
        let lot_key = ctx.lot.as_ref().map(|l| (l.contract.as_str(), l.number));
        let finding = tx
            .insert_finding(
                &ctx.device_id,
                &rule.id,
                lot_key,
                ctx.model.as_deref(),
                value,
                now,
            )
            .await?;
        let key = (ctx.device_id.clone(), rule.id.clone());
        if let Some(ticket) = open.get_mut(&key) {
            tx.recurrence(ticket.id, now, &format!("fault raised again: {evidence}"))
                .await?;
            tx.link_findings(&[finding], ticket.id).await?;
            if ticket.status == Status::Resolved.as_str() {
                self.move_ticket(
                    tx,
                    ticket,
                    Status::Reopened,
                    "fault raised again after the declared repair",
                )
                .await?;
            }
            return Ok(());
        }
        if let Some(claim) = tx.open_claim_of(&ctx.device_id, &rule.id).await? {
            tx.recurrence(claim.id, now, &format!("{} raised again", ctx.device_id))
                .await?;
            return tx.link_findings(&[finding], claim.id).await;
        }
        let route = tickets::route(RouteInput {
            category: rule.category,
            has_lot: ctx.lot.is_some(),
            warranty: warranty_of(ctx, now)
                .map(|w| {
                    if is_battery(rule.signal) {
                        w.battery_status
                    } else {
                        w.status
                    }
                })
                .unwrap_or(crate::domain::warranty::WarrantyStatus::Unknown),
            owner_self_maintained: ctx.owner_self_maintained,
        });
        let fault = self.fault(tx, ctx, rule, value, evidence).await?;

        // Storm control: many devices of one lot and model failing the same way.
        if let (Some(lot), Some(model)) = (&ctx.lot, &ctx.model) {
            let batch_key =
                tickets::batch_open_key(route.queue, &lot.contract, lot.number, model, &rule.id);
            if let Some(claim) = tx
                .open_tickets(std::slice::from_ref(&batch_key))
                .await?
                .pop()
            {
                tx.add_claim_device(claim.id, &ctx.device_id, now).await?;
                tx.link_findings(&[finding], claim.id).await?;
                let mut doc = tx.document(claim.id).await?;
                doc.devices.push(self.device_ref(ctx));
                tx.set_document(claim.id, &doc).await?;
                tx.recurrence(
                    claim.id,
                    now,
                    &format!("{} added to the claim ({})", ctx.device_id, evidence),
                )
                .await?;
                self.notify(tx, &claim, Some(lot)).await?;
                return Ok(());
            }
            let window = tx
                .storm_findings(
                    &lot.contract,
                    lot.number,
                    model,
                    &rule.id,
                    now - self.m.options.storm_window,
                )
                .await?;
            let mut members: Vec<String> = window.iter().map(|(_, d)| d.clone()).collect();
            members.sort();
            members.dedup();
            if tickets::is_storm(members.len() as u64, self.m.options.storm_threshold) {
                return self
                    .open_claim(
                        tx, ctx, lot, model, rule, route, fault, &window, &members, open,
                    )
                    .await;
            }
        }

        let (gti_due, gtr_due) = if route.queue == Queue::Holder {
            self.deadlines(ctx)
        } else {
            (None, None)
        };
        let queue = route.queue;
        let new = NewTicket {
            kind: "device",
            open_key: &tickets::device_open_key(&ctx.device_id, &rule.id),
            device_id: Some(&ctx.device_id),
            rule_id: &rule.id,
            category: rule.category.as_str(),
            severity: rule.severity.as_str(),
            queue: queue.as_str(),
            route_reason: route.reason,
            holder_id: ctx.lot.as_ref().map(|l| l.holder_id.as_str()),
            organisation_id: ctx.owner_id.as_deref(),
            contract_ref: ctx.lot.as_ref().map(|l| l.contract.as_str()),
            lot_number: ctx.lot.as_ref().map(|l| l.number),
            model: ctx.model.as_deref(),
            site_uai: ctx.site.as_ref().map(|s| s.uai.as_str()),
            gti_due,
            gtr_due,
            penalty_per_day_cents: ctx.lot.as_ref().and_then(|l| l.penalty_per_day_cents),
            at: now,
        };
        let devices = vec![self.device_ref(ctx)];
        let doc = |reference: &str| {
            self.document(
                reference,
                TicketKind::Device,
                queue,
                ctx,
                fault,
                devices,
                gti_due,
                gtr_due,
            )
        };
        let (id, _reference) = tx
            .insert_ticket(&new, &self.m.options.reference_prefix, doc)
            .await?;
        tx.add_claim_device(id, &ctx.device_id, now).await?;
        tx.link_findings(&[finding], id).await?;
        self.opened("device", queue);
        if queue == Queue::Holder
            && let Some(lot) = &ctx.lot
        {
            for (channel, dest) in MaintenanceTx::channels_of(lot, self.m.options.email_enabled) {
                tx.enqueue(id, &channel, &dest, "ticket.created", now)
                    .await?;
                self.outcome.deliveries_queued += 1;
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn open_claim(
        &mut self,
        tx: &mut MaintenanceTx,
        ctx: &DeviceContext,
        lot: &LotContext,
        model: &str,
        rule: &Rule,
        route: tickets::Route,
        fault: Fault,
        window: &[(i64, String)],
        members: &[String],
        open: &mut HashMap<(String, String), TicketRow>,
    ) -> Result<(), StoreError> {
        let now = self.now;
        let mut member_ctx = tx.device_contexts(members).await?;
        member_ctx.insert(ctx.device_id.clone(), ctx.clone());
        let devices: Vec<DeviceRef> = members
            .iter()
            .filter_map(|d| member_ctx.get(d).map(|c| self.device_ref(c)))
            .collect();
        let (gti_due, gtr_due) = if route.queue == Queue::Holder {
            self.deadlines(ctx)
        } else {
            (None, None)
        };
        let queue = route.queue;
        let open_key = tickets::batch_open_key(queue, &lot.contract, lot.number, model, &rule.id);
        let reason = format!(
            "{}; {} devices of this lot and model within {} h",
            route.reason,
            members.len(),
            self.m.options.storm_window.num_hours()
        );
        let new = NewTicket {
            kind: "batch",
            open_key: &open_key,
            device_id: None,
            rule_id: &rule.id,
            category: rule.category.as_str(),
            severity: rule.severity.as_str(),
            queue: queue.as_str(),
            route_reason: &reason,
            holder_id: Some(&lot.holder_id),
            organisation_id: ctx.owner_id.as_deref(),
            contract_ref: Some(&lot.contract),
            lot_number: Some(lot.number),
            model: Some(model),
            site_uai: None,
            gti_due,
            gtr_due,
            penalty_per_day_cents: lot.penalty_per_day_cents,
            at: now,
        };
        let doc = |reference: &str| {
            self.document(
                reference,
                TicketKind::Batch,
                queue,
                ctx,
                fault,
                devices,
                gti_due,
                gtr_due,
            )
        };
        let (claim_id, claim_ref) = tx
            .insert_ticket(&new, &self.m.options.reference_prefix, doc)
            .await?;
        // Tickets already opened for members (in this round or earlier) fold into it.
        let keys: Vec<String> = members
            .iter()
            .map(|d| tickets::device_open_key(d, &rule.id))
            .collect();
        let earlier = tx.open_tickets(&keys).await?;
        for d in members {
            tx.add_claim_device(claim_id, d, now).await?;
            let key = (d.clone(), rule.id.clone());
            open.remove(&key);
            if let Some(ticket) = earlier.iter().find(|t| t.device_id.as_deref() == Some(d)) {
                tx.merge_into(ticket, claim_id, &claim_ref, now).await?;
                if ticket.queue == Queue::Holder.as_str() && ticket.sent_at.is_some() {
                    for (channel, dest) in
                        MaintenanceTx::channels_of(lot, self.m.options.email_enabled)
                    {
                        tx.enqueue(ticket.id, &channel, &dest, "ticket.updated", now)
                            .await?;
                        self.outcome.deliveries_queued += 1;
                    }
                }
            }
        }
        let finding_ids: Vec<i64> = window.iter().map(|(id, _)| *id).collect();
        tx.link_findings(&finding_ids, claim_id).await?;
        self.opened("batch", queue);
        if queue == Queue::Holder {
            for (channel, dest) in MaintenanceTx::channels_of(lot, self.m.options.email_enabled) {
                tx.enqueue(claim_id, &channel, &dest, "ticket.created", now)
                    .await?;
                self.outcome.deliveries_queued += 1;
            }
        }
        Ok(())
    }

    async fn cleared(
        &mut self,
        tx: &mut MaintenanceTx,
        ctx: &DeviceContext,
        rule: &Rule,
        value: f64,
        open: &mut HashMap<(String, String), TicketRow>,
    ) -> Result<(), StoreError> {
        tx.clear_findings(&ctx.device_id, &rule.id, self.now)
            .await?;
        let key = (ctx.device_id.clone(), rule.id.clone());
        if let Some(mut ticket) = open.remove(&key) {
            self.confirm_repair(tx, &mut ticket, rule, value).await?;
        }
        if let Some(mut claim) = tx.open_claim_of(&ctx.device_id, &rule.id).await? {
            tx.note(
                claim.id,
                self.now,
                "system",
                &format!("{} recovered ({} = {value})", ctx.device_id, rule.signal),
            )
            .await?;
            if tx.claim_devices_still_faulty(claim.id, &rule.id).await? == 0 {
                self.confirm_repair(tx, &mut claim, rule, value).await?;
            }
        }
        Ok(())
    }

    /// The fault is gone by the readings: resolve (if nobody declared it) and close.
    async fn confirm_repair(
        &mut self,
        tx: &mut MaintenanceTx,
        ticket: &mut TicketRow,
        rule: &Rule,
        value: f64,
    ) -> Result<(), StoreError> {
        if ticket.status != Status::Resolved.as_str() {
            let note = format!("fault cleared by telemetry ({} = {value})", rule.signal);
            self.move_ticket(tx, ticket, Status::Resolved, &note)
                .await?;
        }
        let note = format!("repair confirmed by telemetry ({} = {value})", rule.signal);
        self.move_ticket(tx, ticket, Status::Closed, &note).await
    }

    /// A system move, audited, with an update to the holder when it is theirs.
    async fn move_ticket(
        &mut self,
        tx: &mut MaintenanceTx,
        ticket: &mut TicketRow,
        to: Status,
        note: &str,
    ) -> Result<(), StoreError> {
        let from = Status::parse(&ticket.status).unwrap_or(Status::New);
        if tickets::check_transition(from, to, tickets::Actor::System).is_err() {
            tracing::warn!(ticket = %ticket.reference, from = from.as_str(), to = to.as_str(), "skipped a move the lifecycle forbids");
            return Ok(());
        }
        tx.set_status(
            ticket.id,
            from.as_str(),
            to.as_str(),
            "telemetry",
            Some(note),
            self.now,
        )
        .await?;
        ticket.status = to.as_str().to_string();
        ticket.bad_since_resolved = 0;
        let ticket = ticket.clone();
        self.notify(tx, &ticket, None).await
    }

    /// Queues a `ticket.updated` to the holder of a holder-queue ticket that was sent.
    async fn notify(
        &mut self,
        tx: &mut MaintenanceTx,
        ticket: &TicketRow,
        lot: Option<&LotContext>,
    ) -> Result<(), StoreError> {
        if ticket.queue != Queue::Holder.as_str() {
            return Ok(());
        }
        let channels = match lot {
            Some(lot) => MaintenanceTx::channels_of(lot, self.m.options.email_enabled),
            None => match &ticket.holder_id {
                Some(h) => tx.holder_channels(h, self.m.options.email_enabled).await?,
                None => Vec::new(),
            },
        };
        for (channel, dest) in channels {
            tx.enqueue(ticket.id, &channel, &dest, "ticket.updated", self.now)
                .await?;
            self.outcome.deliveries_queued += 1;
        }
        Ok(())
    }

    fn opened(&mut self, kind: &str, queue: Queue) {
        self.outcome.tickets_opened += 1;
        self.m
            .metrics
            .tickets_opened
            .get_or_create(&vec![
                ("kind", kind.to_string()),
                ("queue", queue.as_str().to_string()),
            ])
            .inc();
    }

    async fn fault(
        &self,
        tx: &mut MaintenanceTx,
        ctx: &DeviceContext,
        rule: &Rule,
        value: f64,
        evidence: &Evidence,
    ) -> Result<Fault, StoreError> {
        let column = match rule.signal {
            Signal::BatteryHealthPercent => Some(HistoryColumn::BatteryHealth),
            Signal::TemperatureMarginCelsius | Signal::FanStoppedWhileHot => {
                Some(HistoryColumn::Temperature)
            }
            _ => None,
        };
        let mut history: Vec<Reading> = match column {
            Some(c) => tx
                .history(&ctx.device_id, c, self.now - self.m.options.evidence)
                .await?
                .into_iter()
                .map(|(at, value)| Reading { at, value })
                .collect(),
            None => Vec::new(),
        };
        if column != Some(HistoryColumn::Temperature)
            && history.last().map(|r| r.value) != Some(value)
        {
            history.push(Reading {
                at: self.now,
                value,
            });
        }
        Ok(Fault {
            rule_id: rule.id.clone(),
            description: rule.description.clone(),
            category: rule.category.as_str().to_string(),
            severity: rule.severity.as_str().to_string(),
            signal: rule.signal.name().to_string(),
            threshold: rule.threshold.symbolic(),
            value,
            since: evidence.since,
            samples: evidence.samples,
            history,
        })
    }

    fn device_ref(&self, ctx: &DeviceContext) -> DeviceRef {
        let w = warranty_of(ctx, self.now);
        DeviceRef {
            device_id: ctx.device_id.clone(),
            serial: ctx.serial.clone(),
            model: ctx.model.clone(),
            hostname: ctx.hostname.clone(),
            order_reference: ctx.order_ref.clone(),
            delivered_on: ctx.delivered_on,
            accepted_on: ctx.accepted_on,
            warranty_end: w.and_then(|w| w.end),
            battery_warranty_end: w.and_then(|w| w.battery_end),
            site: ctx.site.clone(),
            cart: ctx.cart.clone(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn document(
        &self,
        reference: &str,
        kind: TicketKind,
        queue: Queue,
        ctx: &DeviceContext,
        fault: Fault,
        devices: Vec<DeviceRef>,
        gti_due: Option<DateTime<Utc>>,
        gtr_due: Option<DateTime<Utc>>,
    ) -> TicketDocument {
        TicketDocument {
            reference: reference.to_string(),
            kind,
            status: Status::New.as_str().to_string(),
            opened_at: self.now,
            queue: queue.as_str().to_string(),
            fault,
            devices,
            lot: ctx.lot.as_ref().map(|l| LotRef {
                contract: l.contract.clone(),
                number: l.number,
                title: l.title.clone(),
                service_mode: match l.terms.service {
                    ServiceMode::OnSite => "on_site",
                    ServiceMode::ReturnToBase => "return_to_base",
                }
                .to_string(),
            }),
            holder: ctx.lot.as_ref().map(|l| HolderRef {
                id: l.holder_id.clone(),
                company: l.holder_company.clone(),
            }),
            authority: match (&ctx.owner_id, &ctx.owner_name) {
                (Some(id), Some(name)) => Some(AuthorityRef {
                    id: id.clone(),
                    name: name.clone(),
                }),
                _ => None,
            },
            contact: self.m.options.contact.clone(),
            deadlines: DeadlineRefs { gti_due, gtr_due },
            occurrences: 1,
        }
    }

    /// GTI and GTR due times on the lot's business calendar (the site's département
    /// decides the public holidays).
    fn deadlines(&self, ctx: &DeviceContext) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
        let Some(lot) = &ctx.lot else {
            return (None, None);
        };
        let parse = |s: &Option<String>| s.as_deref().and_then(|t| SlaDuration::parse(t).ok());
        let terms = SlaTerms {
            gti: parse(&lot.gti),
            gtr: parse(&lot.gtr),
            penalty_per_day_cents: lot
                .penalty_per_day_cents
                .and_then(|p| u64::try_from(p).ok()),
        };
        let cal = lot_calendar(ctx.departement.as_deref(), &lot.opens_at, &lot.closes_at);
        let d = deadlines(&terms, france_local_time(self.now), &cal);
        (
            d.gti_due.map(utc_from_france),
            d.gtr_due.map(utc_from_france),
        )
    }
}

/// A lot's business calendar for a site: its département's holidays, the lot's hours.
pub fn lot_calendar(departement: Option<&str>, opens: &str, closes: &str) -> BusinessCalendar {
    let cal = BusinessCalendar::new(Calendar::for_departement(departement.unwrap_or("")));
    let hhmm = |s: &str| NaiveTime::parse_from_str(s, "%H:%M").ok();
    match (hhmm(opens), hhmm(closes)) {
        (Some(o), Some(c)) => cal.clone().with_hours(o, c).unwrap_or(cal),
        _ => cal,
    }
}

/// Lateness of the holder tickets opened in `[from, to)` as of `now`, per ticket and
/// summed per lot (grouped claims are judged as one ticket; device tickets merged into
/// one are not counted again).
pub async fn penalty_report(
    store: &Store,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(Vec<tickets::TicketLateness>, Vec<tickets::LotPenalties>), StoreError> {
    let rows = store.holder_tickets_opened(from, to).await?;
    let local = |t: Option<DateTime<Utc>>| t.map(france_local_time);
    let per_ticket: Vec<tickets::TicketLateness> = rows
        .into_iter()
        .filter_map(|(t, departement, opens, closes)| {
            let cal = lot_calendar(
                departement.as_deref(),
                opens.as_deref().unwrap_or(""),
                closes.as_deref().unwrap_or(""),
            );
            let clock = tickets::TicketClock {
                gti_due: local(t.gti_due),
                gtr_due: local(t.gtr_due),
                intervened_at: local(match (t.acknowledged_at, t.in_progress_at) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }),
                resolved_at: local(t.resolved_at),
            };
            let per_day = t.penalty_per_day_cents.and_then(|p| u64::try_from(p).ok());
            Some(tickets::TicketLateness {
                penalty: tickets::ticket_penalty(&clock, france_local_time(now), &cal, per_day),
                contract: t.contract_ref?,
                lot: t.lot_number?,
                reference: t.reference,
            })
        })
        .collect();
    let per_lot = tickets::sum_per_lot(&per_ticket);
    Ok((per_ticket, per_lot))
}

fn is_battery(signal: Signal) -> bool {
    matches!(
        signal,
        Signal::BatteryHealthPercent | Signal::BatteryCycleCount
    )
}

fn warranty_of(ctx: &DeviceContext, now: DateTime<Utc>) -> Option<Warranty> {
    let lot = ctx.lot.as_ref()?;
    Some(compute_warranty(
        &lot.terms,
        ctx.delivered_on,
        ctx.accepted_on,
        today_in_france(now),
    ))
}

/// Runs the rules until `shutdown`: after every ingest commit that queued samples,
/// at least every 2 s, and the silence check on its own period.
pub async fn run(m: Arc<Maintenance>, shutdown: Shutdown) {
    let stop = shutdown.wait();
    tokio::pin!(stop);
    let mut last_silence: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            () = &mut stop => return,
            () = m.rules_wakeup.notified() => {}
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
        if !m.holds_lease(Utc::now()).await {
            continue;
        }
        if let Err(e) = m.drain().await {
            m.metrics.maintenance_failures.inc();
            tracing::warn!(error = %e, "evaluating rules failed; will retry");
            continue;
        }
        if last_silence.is_none_or(|t| t.elapsed() >= m.options.silence_every) {
            last_silence = Some(tokio::time::Instant::now());
            match m.silence_round(Utc::now()).await {
                Ok(o) if o.raised + o.cleared > 0 => {
                    tracing::info!(raised = o.raised, cleared = o.cleared, "silence check");
                }
                Ok(_) => {}
                Err(e) => {
                    m.metrics.maintenance_failures.inc();
                    tracing::warn!(error = %e, "silence check failed; will retry");
                }
            }
        }
    }
}
