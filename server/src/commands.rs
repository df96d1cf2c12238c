//! Release announcements: every `releases.announce_interval_seconds`, each online device
//! is sent a signed `update_available` command (sealed with its own key, on its `cmd`
//! topic) for each release whose rollout now reaches it and that it was not told of yet.
//! Widening a rollout therefore reaches the newly included devices within one interval,
//! and a device offline at that moment is told when it is back online.
//!
//! Beside `ingest` and `broker`, this is the only server module that knows MQTT: it
//! publishes through an in-process link of the embedded broker, or through its own
//! connection to an external broker (the server's account, which the ACL lets write
//! `cmd` topics). It never decides who gets a release (`crate::releases` does) and
//! never sends a command that is not sealed with the addressed device's key.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use parc_protocol::{
    Body, Command, DeviceId, DeviceKey, Epoch, Header, Message, release::manifest_path, seal,
};

use crate::ingest::{ExternalMqtt, Ingest};
use crate::releases::announcements_for;
use crate::shutdown::Shutdown;

/// Where commands are published.
pub enum CommandLink {
    /// The link's receiving half is kept so that the broker keeps the link open.
    Embedded(crate::broker::Link),
    External(rumqttc::v5::AsyncClient),
}

impl CommandLink {
    async fn publish(&mut self, topic: String, payload: Vec<u8>) -> Result<(), String> {
        match self {
            CommandLink::Embedded((tx, _rx)) => tx
                .publish(topic, payload)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            CommandLink::External(c) => c
                .publish(
                    topic,
                    rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                    false,
                    payload,
                )
                .await
                .map_err(|e| e.to_string()),
        }
    }
}

/// A connection of its own to the external broker for commands (clean session: a
/// command not delivered is announced again after the next reconnection of the
/// device, which is what `release_announcements` is for). Its event loop runs until
/// `shutdown`.
pub fn external_link(mqtt: &ExternalMqtt, shutdown: Shutdown) -> Result<CommandLink, String> {
    use rumqttc::v5::{AsyncClient, MqttOptions};
    let mut opts = MqttOptions::new(
        format!("{}-commands", mqtt.client_id),
        mqtt.url.host.clone(),
        mqtt.url.port,
    );
    opts.set_keep_alive(Duration::from_secs(30));
    if let (Some(u), Some(p)) = (&mqtt.username, &mqtt.password) {
        opts.set_credentials(u.clone(), p.clone());
    }
    if mqtt.url.tls {
        let transport = match &mqtt.ca_file {
            Some(path) => {
                let ca = std::fs::read(path)
                    .map_err(|e| format!("mqtt.ca_file {}: {e}", path.display()))?;
                rumqttc::Transport::tls(ca, None, None)
            }
            None => rumqttc::Transport::tls_with_default_config(),
        };
        opts.set_transport(transport);
    }
    let (client, mut eventloop) = AsyncClient::new(opts, 1024);
    tokio::spawn(async move {
        let stop = shutdown.wait();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return,
                ev = eventloop.poll() => if let Err(e) = ev {
                    tracing::warn!(error = %e, "command connection to the broker lost; retrying");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
    });
    Ok(CommandLink::External(client))
}

/// Announces releases until `shutdown`.
pub async fn announce_loop(
    ingest: Arc<Ingest>,
    mut link: CommandLink,
    every: Duration,
    shutdown: Shutdown,
) {
    let mut epoch = [0u8; 16];
    if getrandom::fill(&mut epoch).is_err() {
        tracing::error!("no randomness for the command epoch; release announcements are off");
        return;
    }
    let epoch = Epoch::from_random(epoch);
    let mut seq = 0u64;
    let stop = shutdown.wait();
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(every.max(Duration::from_secs(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = tick.tick() => {}
        }
        match announce_once(&ingest, &mut link, &epoch, &mut seq).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(commands = n, "release announcements sent"),
            Err(e) => tracing::warn!(error = %e, "release announcements failed; will retry"),
        }
    }
}

/// One round: returns how many commands were sent.
pub async fn announce_once(
    ingest: &Ingest,
    link: &mut CommandLink,
    epoch: &Epoch,
    seq: &mut u64,
) -> Result<usize, String> {
    let store = &ingest.store;
    let releases = store.releases(None).await.map_err(|e| e.to_string())?;
    if releases.is_empty() {
        return Ok(0);
    }
    let mut sent = 0;
    for t in store.announce_targets().await.map_err(|e| e.to_string())? {
        let todo = announcements_for(
            &releases,
            &t.device_id,
            t.site.as_deref(),
            t.agent_version.as_deref(),
        );
        for (channel, version) in todo {
            if store
                .was_announced(&t.device_id, &channel, &version)
                .await
                .map_err(|e| e.to_string())?
            {
                continue;
            }
            let (Ok(device), Ok(key)) = (
                DeviceId::parse(&t.device_id),
                DeviceKey::from_base64(&t.key_b64),
            ) else {
                tracing::warn!(device = %t.device_id, "stored device id or key unusable; not announcing");
                continue;
            };
            *seq += 1;
            let now = Utc::now();
            let msg = Message::new(
                Header {
                    device_id: device.clone(),
                    epoch: epoch.clone(),
                    seq: *seq,
                    collected_at: now,
                    sent_at: now,
                },
                Body::Cmd(Command::UpdateAvailable {
                    version: version.clone(),
                    channel: channel.clone(),
                    // Relative: the agent resolves it against its configured server URL.
                    manifest_url: format!("{}?device={}", manifest_path(&channel), device),
                }),
            );
            let (topic, payload) = seal(&msg, &key);
            link.publish(topic, payload).await?;
            store
                .record_announcement(&t.device_id, &channel, &version, now)
                .await
                .map_err(|e| e.to_string())?;
            sent += 1;
        }
    }
    Ok(sent)
}
