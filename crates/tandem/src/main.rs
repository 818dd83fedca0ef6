//! The `tandem` binary: loads the configuration, binds the listeners and runs
//! the SIP core on one task, fed by the transport's event channel.

mod config;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use media_relay::MediaRelay;
use sip_transport::driver::{TransportConfig, TransportEvent, TransportLayer};
use sip_transport::{Transport, tls};
use switch::SipCore;
use tracing::{error, info, warn};

use crate::config::Config;

#[derive(Parser)]
#[command(version, about = "Tandem: a softswitch (SIP trunks and phones, media, IVR, queues)")]
struct Cli {
    /// Configuration file.
    #[arg(long, short, default_value = "conf/tandem.toml")]
    config: PathBuf,
    /// Check the configuration and exit (status 0 when it is valid).
    #[arg(long)]
    check: bool,
}

/// Messages handled per wake-up of the core task before timers are looked at again.
const BATCH: usize = 256;
/// How often a summary of the core's counters goes to the log (when they changed).
const STATS_EVERY: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg = match config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tandem: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.check {
        println!("{}: ok", cli.config.display());
        return ExitCode::SUCCESS;
    }
    init_logging(&cfg);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tandem: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cfg, &cli.config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            eprintln!("tandem: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(cfg: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.log_level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if cfg.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(mut cfg: Config, config_path: &std::path::Path) -> Result<(), String> {
    if !cfg.demo_endpoints.is_empty() {
        warn!(endpoints = %cfg.demo_endpoints.join(","), "demo passwords in use: change them before exposing the switch");
    }
    let tls = if cfg.listeners.iter().any(|l| l.transport == Transport::Tls) {
        let cfg_tls = tls::server_config(cfg.tls_cert.as_deref(), cfg.tls_key.as_deref(), &cfg.data_dir)
            .map_err(|e| format!("TLS: {e}"))?;
        Some(cfg_tls)
    } else {
        None
    };
    let transport_config = TransportConfig {
        max_message_size: cfg.max_message_size,
        tls,
        max_connections: 10_000,
        idle_timeout: Duration::from_secs(3600),
        channel_capacity: 65_536,
    };
    let (transport, mut events) = TransportLayer::bind(&cfg.listeners, transport_config)
        .await
        .map_err(|e| format!("cannot bind the listeners: {e}"))?;
    // Port 0 in the configuration means "any": the core must know the real one.
    for (i, l) in cfg.core.listeners.iter_mut().enumerate() {
        l.addr = transport.local_addr(i);
        info!(profile = l.profile.as_str(), transport = %l.transport, addr = %l.addr, "listening");
    }

    let relay = MediaRelay::new(cfg.media.clone()).map_err(|e| format!("media: {e}"))?;
    info!(
        bind = %cfg.media.bind_ip,
        advertise = %cfg.media.advertise_ip,
        ports = %format!("{}-{}", cfg.media.port_min, cfg.media.port_max),
        "media relay ready"
    );
    std::fs::create_dir_all(&cfg.data_dir).map_err(|e| format!("{}: {e}", cfg.data_dir.display()))?;
    let cdr_path = cfg.data_dir.join("cdr.jsonl");
    let (cdr, cdr_writer) = switch::records::spawn_writer(&cdr_path, "CDR");
    info!(path = %cdr_path.display(), "CDRs are appended here");

    tokio::spawn(log_media_stats(relay.clone()));
    let mut core = SipCore::new(cfg.core, Instant::now()).with_media(relay).with_cdr(cdr);
    match cfg.music_on_hold {
        Some(moh) => {
            info!(prompt = moh.name(), seconds = moh.duration().as_secs(), "music on hold loaded");
            core = core.with_music_on_hold(moh);
        }
        None => warn!("no music on hold: held parties hear silence"),
    }
    match cfg.sounds {
        Some(sounds) => {
            info!(dir = %sounds.dir().display(), language = sounds.lang(), "prompts loaded");
            core = core.with_sounds(sounds);
        }
        None => warn!("no prompts: queue announcements and confirmations are silent"),
    }
    let mut queue_log_writer = None;
    if let Some(path) = &cfg.queue_log {
        let (sink, writer) = switch::records::spawn_writer(path, "queue log");
        info!(path = %path.display(), "queue events are appended here");
        core = core.with_queue_log(sink);
        queue_log_writer = Some(writer);
    }
    let Some(mut media_reports) = core.take_media_reports() else {
        return Err("media reports already taken".into());
    };
    let mut batch = Vec::with_capacity(BATCH);
    let mut shutdown = std::pin::pin!(shutdown_signal());
    let mut next_stats = Instant::now() + STATS_EVERY;
    let mut logged = String::new();
    let mut logged_queues = HashMap::new();
    let mut memory = FreedMemory::default();
    let router = Router::new();
    let (router_answers, mut router_answers_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut reload = reload_signal();
    info!("tandem is running");
    loop {
        for request in core.take_router_requests() {
            router.ask(request, router_answers.clone());
        }
        let deadline = core.poll_timeout().unwrap_or_else(|| Instant::now() + Duration::from_secs(1)).min(next_stats);
        tokio::select! {
            n = events.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    break;
                }
                let now = Instant::now();
                for event in batch.drain(..) {
                    match event {
                        TransportEvent::Message { data, source } => {
                            for t in core.handle_message(data, source, now) {
                                transport.send(t.target, t.data);
                            }
                        }
                        TransportEvent::FlowClosed(flow) => {
                            for t in core.handle_flow_closed(flow, now) {
                                transport.send(t.target, t.data);
                            }
                        }
                    }
                }
            }
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {
                let now = Instant::now();
                for t in core.handle_timeout(now) {
                    transport.send(t.target, t.data);
                }
                if now >= next_stats {
                    next_stats = now + STATS_EVERY;
                    log_stats(&core, &transport, now, &mut logged);
                    log_queue_stats(&core, now, &mut logged_queues);
                }
                memory.tick(core.call_count(), now);
            }
            Some((call, agent)) = router_answers_rx.recv() => {
                let agent: Option<String> = agent;
                for t in core.router_answer(call, agent.as_deref(), Instant::now()) {
                    transport.send(t.target, t.data);
                }
            }
            Some(report) = media_reports.recv() => {
                for t in core.handle_media_report(report, Instant::now()) {
                    transport.send(t.target, t.data);
                }
            }
            Some(()) = reload.recv() => {
                // The running configuration stays unless the new one is whole and valid.
                match config::load(config_path) {
                    Ok(new) => match core.reload(new.core, Instant::now()) {
                        Ok(out) => {
                            for t in out {
                                transport.send(t.target, t.data);
                            }
                            info!(path = %config_path.display(), "configuration reloaded: endpoints, dial plan, queues, agents and IVRs");
                        }
                        Err(e) => error!(path = %config_path.display(), "configuration not reloaded: {e}"),
                    },
                    Err(e) => error!(path = %config_path.display(), "configuration not reloaded: {e}"),
                }
            }
            _ = &mut shutdown => break,
        }
    }
    info!("shutting down");
    let byes = core.end_all_calls(Instant::now());
    if !byes.is_empty() {
        for t in byes {
            transport.send(t.target, t.data);
        }
        // Let the BYEs leave before the sockets close.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    log_stats(&core, &transport, Instant::now(), &mut logged);
    log_queue_stats(&core, Instant::now(), &mut logged_queues);
    transport.shutdown();
    // The last CDRs and queue events are written before the process ends.
    drop(core);
    let _ = cdr_writer.await;
    if let Some(writer) = queue_log_writer {
        let _ = writer.await;
    }
    Ok(())
}

/// glibc keeps what a burst of calls freed in its arenas (hundreds of MiB after
/// 100,000 calls at 2,000/s) instead of giving it back. Every 10 s, once the
/// calls have fallen to half their peak since the last time, ask it to return
/// what is free: under steady load nothing is trimmed only to be faulted in again.
#[derive(Default)]
struct FreedMemory {
    next_check: Option<Instant>,
    peak_calls: usize,
}

impl FreedMemory {
    const EVERY: Duration = Duration::from_secs(10);

    fn tick(&mut self, calls: usize, now: Instant) {
        self.peak_calls = self.peak_calls.max(calls);
        if self.next_check.is_some_and(|at| now < at) {
            return;
        }
        self.next_check = Some(now + Self::EVERY);
        if calls * 2 <= self.peak_calls {
            self.peak_calls = calls;
            #[cfg(target_env = "gnu")]
            // SAFETY: malloc_trim only walks the allocator's own free lists.
            unsafe {
                libc::malloc_trim(0);
            }
        }
    }
}

/// One log line with the counters, when they changed since the last one.
fn log_stats(core: &SipCore, transport: &TransportLayer, now: Instant, last: &mut String) {
    let s = core.stats();
    let t = transport.stats();
    let (aors, bindings) = core.registrations();
    let (trunks_registered, trunks_failed) = core.trunk_registrations().counts();
    let calls = core.call_count();
    let one_way = core.one_way_call_count();
    let line = format!(
        "requests={} responses_in={} challenges={} auth_failures={} auth_bans={} auth_refused={} banned_sources={} \
registrations_ok={} registrations_expired={} aors={aors} bindings={bindings} \
trunks_registered={trunks_registered} trunks_failed={trunks_failed} calls={calls} one_way={one_way} one_way_total={} \
transactions={} acl_rejected={} overloaded={} \
dropped_unparseable={} datagrams_in={} dropped_oversize={} connections_open={} events_dropped={}",
        s.requests_in.iter().sum::<u64>(),
        s.responses_in,
        s.challenges,
        s.auth_failures,
        s.auth_bans,
        s.auth_refused,
        core.banned_sources(now),
        s.registrations_ok,
        s.registrations_expired,
        s.one_way_calls,
        core.transaction_count(),
        s.acl_rejected,
        s.overloaded,
        s.dropped_unparseable,
        t.datagrams_in,
        t.dropped_oversize,
        t.connections_open,
        t.events_dropped,
    );
    if line != *last {
        info!(target: "tandem::stats", "{line}");
        *last = line;
    }
}

/// Asks queues' routing services (the `external` strategy) over HTTP.
struct Router {
    client: reqwest::Client,
}

impl Router {
    fn new() -> Router {
        Router { client: reqwest::Client::new() }
    }

    /// POSTs the question; the answer (`{"agent": "1002"}`), or `None` when the
    /// service fails, times out or says something else, goes to `answers`.
    fn ask(&self, request: switch::core::RouterRequest, answers: tokio::sync::mpsc::UnboundedSender<(u64, Option<String>)>) {
        let client = self.client.clone();
        tokio::spawn(async move {
            let reply = client.post(&request.url).timeout(request.timeout).json(&request.body).send().await;
            let agent = match reply {
                Ok(r) if r.status().is_success() => match r.json::<serde_json::Value>().await {
                    Ok(v) => v.get("agent").and_then(|a| a.as_str()).map(str::to_string),
                    Err(error) => {
                        warn!(url = %request.url, %error, "the routing service's answer is not JSON");
                        None
                    }
                },
                Ok(r) => {
                    warn!(url = %request.url, status = %r.status(), "the routing service refused");
                    None
                }
                Err(error) => {
                    warn!(url = %request.url, %error, "the routing service did not answer");
                    None
                }
            };
            let _ = answers.send((request.call, agent));
        });
    }
}

/// Each queue's live figures every [`STATS_EVERY`], when they changed.
fn log_queue_stats(core: &SipCore, now: Instant, last: &mut HashMap<String, String>) {
    for queue in &core.settings().acd.engine.queues {
        let Some(q) = core.acd().queue_stats(&queue.name, now) else { continue };
        let a = &q.agents;
        let secs = |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{:.1}", d.as_secs_f64()));
        let line = format!(
            "queue={} waiting={} longest_wait_s={:.1} available={} offered={} on_call={} wrap_up={} paused={} logged_out={} \
entered={} answered={} abandoned={} timed_out={} service_level_pct={} asa_s={} aht_s={}",
            queue.name,
            q.waiting,
            q.longest_wait.as_secs_f64(),
            a.available,
            a.offered,
            a.on_call,
            a.wrap_up,
            a.paused,
            a.logged_out,
            q.entered,
            q.answered,
            q.abandoned,
            q.timed_out,
            q.service_level.map_or("-".to_string(), |p| format!("{p:.1}")),
            secs(q.average_speed_of_answer),
            secs(q.average_handle_time),
        );
        if last.get(&queue.name) != Some(&line) {
            info!(target: "tandem::stats", "{line}");
            last.insert(queue.name.clone(), line);
        }
    }
}

/// The relay's totals every [`STATS_EVERY`], when they changed: packets, the
/// drops that matter to an operator (a stranger's packets at a latched port,
/// sends that failed), and how long packets spent in the relay.
async fn log_media_stats(relay: MediaRelay) {
    let mut last = String::new();
    loop {
        tokio::time::sleep(STATS_EVERY).await;
        let s = relay.stats().await;
        let (legs, latency) = (&s.legs, &s.latency);
        let bound = |q| latency.quantile_bound(q).map_or("-".to_string(), |d| d.as_micros().to_string());
        let line = format!(
            "media_calls={} media_calls_ended={} rtp_in={} rtp_out={} rtp_lost={} rtcp_in={} rtcp_out={} dropped_wrong_source={} \
dropped_other={} send_errors={} relatches={} relay_latency_p50_us<={} relay_latency_p99_us<={} relay_latency_max_us={}",
            s.calls,
            s.calls_ended,
            legs.rtp_packets_in,
            legs.rtp_packets_out,
            legs.rtp_packets_lost,
            legs.rtcp_packets_in,
            legs.rtcp_packets_out,
            legs.dropped_wrong_source,
            legs.dropped_unknown_pt + legs.dropped_malformed + legs.dropped_no_destination,
            legs.send_errors,
            legs.relatches,
            bound(0.5),
            bound(0.99),
            latency.max_ns / 1000,
        );
        if line != last {
            info!(target: "tandem::stats", "{line}");
            last = line;
        }
    }
}

/// A message for each SIGHUP (none where there are no signals).
fn reload_signal() -> tokio::sync::mpsc::Receiver<()> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::hangup()) {
            Ok(mut hup) => {
                tokio::spawn(async move {
                    while hup.recv().await.is_some() {
                        // One reload pending is enough: a second SIGHUP meanwhile reads the same file.
                        let _ = tx.try_send(());
                    }
                });
            }
            Err(e) => warn!("no SIGHUP reload: {e}"),
        }
    }
    #[cfg(not(unix))]
    drop(tx);
    rx
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
