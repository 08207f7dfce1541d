//! `fulcrum serve`: opens the engine, binds the S3 and admin listeners,
//! heartbeats for GC safety, and shuts down gracefully on SIGTERM/SIGINT.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use fulcrum_api::S3Credentials;
use fulcrum_engine::Engine;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

use fulcrum::config::Settings;

#[derive(Args, Clone)]
pub struct ServeArgs {
    /// Admin HTTP address (/healthz, /metrics) [default: 127.0.0.1:8080].
    #[arg(long, env = "FULCRUM_HTTP_ADDR")]
    pub http_addr: Option<String>,
    /// S3 API address [default: 127.0.0.1:9000].
    #[arg(long, env = "FULCRUM_S3_ADDR")]
    pub s3_addr: Option<String>,
    /// DICOM DIMSE address [default: 127.0.0.1:11112].
    #[arg(long, env = "FULCRUM_DICOM_ADDR")]
    pub dicom_addr: Option<String>,
    /// Largest object or part body accepted, in bytes [default: 5 TiB].
    #[arg(long, env = "FULCRUM_MAX_OBJECT_SIZE")]
    pub max_object_size: Option<u64>,
}

fn credentials_file(s: &Settings) -> std::path::PathBuf {
    s.data_dir.join("s3-credentials.toml")
}

fn read_credentials_file(path: &std::path::Path) -> Result<Option<S3Credentials>> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(None);
    };
    let v: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let get = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    Ok(match (get("access_key"), get("secret_key")) {
        (Some(access_key), Some(secret_key)) => Some(S3Credentials {
            access_key,
            secret_key,
        }),
        _ => None,
    })
}

/// The catalog's record of the S3 root credentials: every node of a
/// cluster (one catalog) answers to the same keys.
const CREDENTIALS_META: &str = "s3_root_credentials";

/// The S3 root credentials: the configured ones; else the platform's,
/// kept in the catalog so that every node of a cluster (and a restored
/// copy) answers to the same keys. The first node to start records its
/// `<data_dir>/s3-credentials.toml`, or keys it generates; every node
/// keeps a copy in its own file for the operator to read.
async fn credentials(s: &Settings, engine: &Engine) -> Result<S3Credentials> {
    if let (Some(a), Some(k)) = (&s.s3_access_key, &s.s3_secret_key) {
        // Given to this node: the platform's too when it has none yet;
        // other ones would make the nodes of a cluster accept different
        // keys (a request in three refused behind a load balancer).
        let given = format!("{a}\n{k}");
        let stored = engine.catalog().init_meta(CREDENTIALS_META, &given).await?;
        if stored != given {
            let platform = stored.split_once('\n').map_or("", |(a, _)| a);
            warn!(
                node_access_key = %a,
                platform_access_key = %platform,
                "this node's FULCRUM_S3_ACCESS_KEY/FULCRUM_S3_SECRET_KEY differ from the platform's S3 root credentials (kept in the catalog, used by nodes not given any): this node accepts only its own; give every node the same, or none"
            );
        }
        return Ok(S3Credentials {
            access_key: a.clone(),
            secret_key: k.clone(),
        });
    }
    let path = credentials_file(s);
    let local = read_credentials_file(&path)?;
    let ours = local.clone().unwrap_or_else(|| S3Credentials {
        access_key: format!(
            "FC{}",
            hex::encode(rand::random::<[u8; 9]>()).to_uppercase()
        ),
        secret_key: hex::encode(rand::random::<[u8; 20]>()),
    });
    // init_meta only reads when the platform has them (no write at start).
    let stored = engine
        .catalog()
        .init_meta(
            CREDENTIALS_META,
            &format!("{}\n{}", ours.access_key, ours.secret_key),
        )
        .await?;
    let creds = match stored.split_once('\n') {
        Some((a, k)) if !a.is_empty() && !k.is_empty() => S3Credentials {
            access_key: a.to_string(),
            secret_key: k.to_string(),
        },
        _ => bail!("the catalog's S3 root credentials are malformed (meta key {CREDENTIALS_META})"),
    };
    if local.as_ref().map(|l| &l.access_key) == Some(&creds.access_key)
        && local.as_ref().map(|l| &l.secret_key) == Some(&creds.secret_key)
    {
        return Ok(creds);
    }
    if local.is_some() {
        warn!(
            file = %path.display(),
            "this node's S3 credentials differ from the platform's (kept in the catalog, shared by every node); using the platform's and rewriting the file"
        );
    }
    let text = format!(
        "# Root credentials of Fulcrum's S3 API (the platform's, kept in its catalog).\naccess_key = \"{}\"\nsecret_key = \"{}\"\n",
        creds.access_key, creds.secret_key
    );
    write_private(&path, &text)?;
    if creds.access_key == ours.access_key && local.is_none() {
        println!(
            "Generated S3 root credentials (stored in {} and in the catalog):\n  access key: {}\n  secret key: {}",
            path.display(),
            creds.access_key,
            creds.secret_key
        );
    } else {
        println!(
            "S3 root credentials: the platform's, from its catalog (copied to {}); access key {}",
            path.display(),
            creds.access_key
        );
    }
    Ok(creds)
}

/// Writes `text` to `path` readable by the owner only, replacing what
/// was there at once (a new file renamed over it; a replaced file is kept
/// as `<path>.bak`).
fn write_private(path: &std::path::Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("toml.new");
    let _ = std::fs::remove_file(&tmp);
    fulcrum_store::write_private_file(&tmp, text.as_bytes())
        .with_context(|| format!("creating {}", tmp.display()))?;
    if path.exists() {
        std::fs::copy(path, path.with_extension("toml.bak"))
            .with_context(|| format!("keeping a copy of {}", path.display()))?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

fn dimse_config(s: &Settings) -> Result<fulcrum_dicom::dimse::DimseConfig> {
    let nodes = s
        .dicom
        .nodes
        .iter()
        .map(|n| {
            n.parse::<fulcrum_dicom::dimse::Node>()
                .map_err(|e| anyhow::anyhow!("DICOM node {n:?}: {e}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let tls_client = s.dicom_tls_client()?;
    if let Some(n) = nodes.iter().find(|n| n.tls && tls_client.is_none()) {
        anyhow::bail!(
            "DICOM node {n} is reached over TLS: set dicom_tls_ca (FULCRUM_DICOM_TLS_CA) to the CA certificate(s) to trust"
        );
    }
    Ok(fulcrum_dicom::dimse::DimseConfig {
        ae_title: s.dicom.ae_title.clone(),
        tenant: fulcrum_types::DEFAULT_TENANT.to_string(),
        nodes,
        tls_client,
        allowed_aets: s.dicom.allowed_aets.clone(),
        ..Default::default()
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received; shutting down"),
        _ = tokio::signal::ctrl_c() => info!("interrupt received; shutting down"),
    }
}

/// DIMSE over TLS: connections whose handshake `Incoming` completed.
struct DicomTls(fulcrum_api::Incoming);

impl fulcrum_dicom::dimse::Accept for DicomTls {
    async fn accept(
        &mut self,
    ) -> std::io::Result<(
        std::pin::Pin<Box<dyn fulcrum_dicom::dimse::Io>>,
        std::net::SocketAddr,
    )> {
        let (io, peer) = self.0.next().await;
        Ok((Box::pin(io), peer.remote))
    }

    fn describe(&self) -> String {
        format!("{} (TLS)", self.0.local_addr())
    }
}

pub async fn run(s: Settings) -> Result<()> {
    let started = Instant::now();
    // Everything that can be checked without the data is checked first:
    // a node that cannot serve must not create a data directory, a
    // catalog or credentials on its way out.
    let s3_listener = TcpListener::bind(&s.s3_addr)
        .await
        .with_context(|| format!("binding S3 address {}", s.s3_addr))?;
    let http_listener = TcpListener::bind(&s.http_addr)
        .await
        .with_context(|| format!("binding HTTP address {}", s.http_addr))?;
    let dicom_listener = TcpListener::bind(&s.dicom.addr)
        .await
        .with_context(|| format!("binding DICOM address {}", s.dicom.addr))?;
    let tls = match &s.tls {
        Some((cert, key)) => Some(fulcrum_api::Tls::from_pem_files(cert, key)?),
        None => None,
    };
    let dicom_tls = match (&s.tls, &s.dicom.tls_client_ca) {
        (Some((cert, key)), Some(ca)) => Some(fulcrum_api::Tls::requiring_clients(cert, key, ca)?),
        _ => tls.clone(),
    };
    let dicom_tls_listener = match (&s.dicom.tls_addr, &dicom_tls) {
        (Some(addr), Some(tls)) => {
            let l = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding DICOM TLS address {addr}"))?;
            Some(DicomTls(fulcrum_api::Incoming::new(l, Some(tls.clone()))?))
        }
        _ => None,
    };
    let dimse_cfg = dimse_config(&s)?;
    if s.backup.period().is_some() {
        s.backup
            .target()
            .context("scheduled backups (backup.every_hours) need a repository and key")?;
    }
    let engine_cfg = s.engine_config()?;
    fulcrum_store::create_private_dir(&s.data_dir)
        .with_context(|| format!("creating data dir {}", s.data_dir.display()))?;
    if fulcrum_store::shared_with_others(&s.data_dir).unwrap_or(false) {
        warn!(
            data_dir = %s.data_dir.display(),
            "the data dir lets other users in: its catalog holds the S3 secret keys; `chmod 700` it (Fulcrum makes the ones it creates so)"
        );
    }
    let engine = Engine::open(engine_cfg).await?;
    let creds = credentials(&s, &engine).await?;
    if engine.config().archive.is_none() {
        // A node of a cluster whose config lacks the archive backend
        // answers 500 for every archived object: say so at the start.
        let archived: i64 = engine
            .catalog()
            .tier_stats()
            .await?
            .iter()
            .filter(|t| t.tier == fulcrum_engine::Tier::Archive.as_str())
            .map(|t| t.packs)
            .sum();
        if archived > 0 {
            warn!(
                packs = archived,
                "the catalog lists archive-tier packs but no archive_backend is configured on this node: reads of archived objects will fail"
            );
        }
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    info!(
        scheme,
        s3 = %s3_listener.local_addr()?,
        http = %http_listener.local_addr()?,
        dicom = %dicom_listener.local_addr()?,
        ae_title = %s.dicom.ae_title,
        data_dir = %s.data_dir.display(),
        backend = engine.backend_name(),
        catalog = ?engine.catalog().kind(),
        startup_ms = started.elapsed().as_millis() as u64,
        "Fulcrum is serving"
    );
    // A node whose S3 backend is down or misnamed, or another platform's,
    // serves nothing it stores: say so at once, not only on /healthz.
    let probed = engine.clone();
    tokio::spawn(async move {
        if let Some(e) = fulcrum_api::admin::backend_problem(&probed).await {
            warn!(
                error = %e,
                backend = probed.backend_name(),
                "the pack backend cannot be used: nothing can be stored until it can (/healthz answers 503)"
            );
        }
    });

    let (stop_tx, stop_rx) = watch::channel(false);
    let wait = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };
    let hb_engine = engine.clone();
    let mut hb_stop = stop_rx.clone();
    let mut shared = crate::cluster::SettingsCheck::new(&s);
    let heartbeat = tokio::spawn(async move {
        loop {
            match hb_engine.heartbeat().await {
                Ok(()) => shared.after_heartbeat(&hb_engine).await,
                Err(e) => warn!(error = %e, "heartbeat failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(fulcrum_engine::HEARTBEAT_INTERVAL) => {}
                _ = hb_stop.wait_for(|v| *v) => break,
            }
        }
    });
    let mut jobs = Vec::new();
    if let Some(every) = s.backup.period() {
        let (settings, job_engine) = (s.clone(), engine.clone());
        jobs.push(crate::jobs::spawn_periodic(
            engine.clone(),
            "backup",
            every,
            stop_rx.clone(),
            move || {
                let (settings, job_engine) = (settings.clone(), job_engine.clone());
                async move { crate::backup_cli::scheduled(&settings, &job_engine).await }
            },
        ));
    }
    if let Some(every) = s.scrub_period() {
        let (settings, job_engine) = (s.clone(), engine.clone());
        jobs.push(crate::jobs::spawn_periodic(
            engine.clone(),
            "scrub",
            every,
            stop_rx.clone(),
            move || {
                let (settings, job_engine) = (settings.clone(), job_engine.clone());
                async move {
                    let rate = Some(settings.scrub_rate_mib).filter(|r| *r > 0);
                    let out =
                        crate::commands::scrub_once(&settings, &job_engine, rate, true, &mut ())
                            .await?;
                    for o in &out.unrepaired_objects {
                        warn!(object = %o, "scrub: damaged and not repairable");
                    }
                    Ok(crate::commands::scrub_summary(&out))
                }
            },
        ));
    }
    if let Some(every) = s.gc_period() {
        let job_engine = engine.clone();
        jobs.push(crate::jobs::spawn_periodic(
            engine.clone(),
            "gc",
            every,
            stop_rx.clone(),
            move || {
                let job_engine = job_engine.clone();
                async move {
                    let opts = crate::commands::gc_options(
                        crate::commands::GC_GRACE_SECS,
                        crate::commands::GC_ABORT_UPLOADS_DAYS,
                    );
                    let report = crate::commands::gc_once(&job_engine, &opts).await?;
                    Ok(crate::commands::gc_summary(&report))
                }
            },
        ));
    }
    jobs.extend(crate::tier_cli::schedule_lifecycle(
        &engine,
        &s.tier,
        stop_rx.clone(),
    ));
    let archive = fulcrum_dicom::Archive::new(
        engine.clone(),
        fulcrum_dicom::ArchiveConfig {
            duplicates: s.dicom.duplicates,
            ..Default::default()
        },
    );
    // Index columns added by an upgrade are filled from stored headers in
    // the background (once per catalog), while the node serves.
    tokio::spawn({
        let archive = archive.clone();
        async move {
            if let Err(e) = archive.upgrade_index().await {
                tracing::warn!("index upgrade stopped (it runs again at the next start): {e}");
            }
        }
    });
    let dicomweb = axum::Router::new().nest(
        "/dicom-web",
        fulcrum_api::dicomweb::router(
            archive.clone(),
            fulcrum_types::DEFAULT_TENANT.to_string(),
            creds.clone(),
        ),
    );
    let admin = tokio::spawn(fulcrum_api::serve_http(
        fulcrum_api::Incoming::new(http_listener, tls.clone())?,
        engine.clone(),
        dicomweb,
        s.http_header_timeout,
        wait(stop_rx.clone()),
    ));
    let dimse_tls = dicom_tls_listener.map(|l| {
        tokio::spawn(fulcrum_dicom::dimse::serve(
            l,
            archive.clone(),
            dimse_cfg.clone(),
            wait(stop_rx.clone()),
        ))
    });
    let dimse = tokio::spawn(fulcrum_dicom::dimse::serve(
        dicom_listener,
        archive,
        dimse_cfg,
        wait(stop_rx.clone()),
    ));
    let s3 = fulcrum_api::serve_s3(
        fulcrum_api::Incoming::new(s3_listener, tls)?,
        engine.clone(),
        fulcrum_types::DEFAULT_TENANT,
        &creds,
        fulcrum_api::Domains::new(s.s3_domains.clone()),
        s.http_header_timeout,
        async {
            shutdown_signal().await;
        },
    );
    s3.await?;
    let _ = stop_tx.send(true);
    let _ = admin.await;
    for task in std::iter::once(dimse).chain(dimse_tls) {
        match task.await {
            Ok(Err(e)) => warn!(error = %e, "DICOM listener failed"),
            Err(e) => warn!(error = %e, "DICOM listener task failed"),
            Ok(Ok(())) => {}
        }
    }
    let _ = heartbeat.await;
    // A job cut off here is safe: a backup resumes from the packs it
    // wrote, a tier move's unfinished archive pack is an orphan GC
    // removes, leases expire by themselves.
    for j in jobs {
        j.abort();
    }
    if let Err(e) = engine.leave().await {
        warn!(error = %e, "could not remove this node's heartbeat");
    }
    engine.close().await;
    info!("Fulcrum stopped cleanly");
    Ok(())
}
