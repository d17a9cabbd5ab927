//! The `rta-engine` command line: `demo`, `serve`, `decide`, `check`, `gen`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use rta_engine::app::{self, config::Config};
use rta_engine::decision::{Clock, DecisionEngine, DecisionRequest};
use rta_engine::demo::population;
use rta_engine::domain::device_text::DeviceIdText;
use rta_engine::domain::ids::{DeviceIdKind, DeviceKey};
use rta_engine::domain::os::Os;
use rta_engine::domain::taxonomy::Taxonomy;
use rta_engine::index::record::UserRecord;
use rta_engine::serve::node::StrategySource;
use rta_engine::serve::tokens::{Role, TokenEntry, token_sha256_hex};
use rta_engine::serve::{pb, runtime};

/// The process's allocator: the request path's HTTP/2 and gRPC framing
/// allocates, and mimalloc costs less per request than glibc's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "rta-engine",
    version,
    about = "Streaming real-time targeting (RTA) engine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run on the embedded default: a generated population and the demo strategies.
    Demo {
        /// Users in the generated population.
        #[arg(long, default_value_t = 1_000_000)]
        users: u64,
        /// Seed of the generated population.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// gRPC listen address.
        #[arg(long, default_value = "0.0.0.0:50051")]
        grpc_addr: SocketAddr,
        /// Media HTTP listen address (POST /rta/tencent, health checks).
        #[arg(long, default_value = "0.0.0.0:8080")]
        http_addr: SocketAddr,
        /// Admin HTTP listen address (admin API, /metrics).
        #[arg(long, default_value = "127.0.0.1:9090")]
        admin_addr: SocketAddr,
        /// A strategy file to use instead of the embedded demo strategies.
        #[arg(long)]
        strategies: Option<PathBuf>,
        /// Threads serving requests (default: one per core).
        #[arg(long)]
        worker_threads: Option<usize>,
    },
    /// Run from a configuration file. Each flag can also come from the
    /// environment variable named beside it (a flag on the command line wins),
    /// so that a container image passes its config path as `RTA_CONFIG`.
    Serve {
        /// The TOML configuration (see deploy/rta-engine.toml).
        #[arg(long, env = "RTA_CONFIG")]
        config: PathBuf,
        /// Overrides server.grpc_addr.
        #[arg(long, env = "RTA_GRPC_ADDR")]
        grpc_addr: Option<SocketAddr>,
        /// Overrides server.http_addr.
        #[arg(long, env = "RTA_HTTP_ADDR")]
        http_addr: Option<SocketAddr>,
        /// Overrides server.admin_addr.
        #[arg(long, env = "RTA_ADMIN_ADDR")]
        admin_addr: Option<SocketAddr>,
        /// Overrides server.worker_threads.
        #[arg(long, env = "RTA_WORKER_THREADS")]
        worker_threads: Option<usize>,
    },
    /// Ask a running engine for a decision over gRPC.
    Decide {
        /// The engine's gRPC address.
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        addr: String,
        /// Device ids: `<kind>:<32 hex md5>` (kind: imei, oaid, idfa, caid, android_id, mac),
        /// `raw:<kind>:<value>` (hashed by the media's conventions; a raw OAID is sent raw),
        /// or a bare 32-hex md5, taken as an IMEI's. `oaid_raw:<oaid>` still works.
        #[arg(long = "device", required = true)]
        devices: Vec<String>,
        /// android, ios, harmony or other.
        #[arg(long)]
        os: Option<String>,
        /// Restrict to these strategy ids.
        #[arg(long = "strategy")]
        strategies: Vec<String>,
    },
    /// The configuration as `serve` would run it.
    Config {
        /// What to do with it.
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Check a strategy file (and taxonomy) without serving; exit 1 on errors.
    Check {
        /// The strategy file.
        strategies: PathBuf,
        /// A taxonomy file instead of the shipped one.
        #[arg(long)]
        taxonomy: Option<PathBuf>,
    },
    /// Write the generated population as JSON-lines user records.
    Gen {
        /// Users to generate.
        #[arg(long, default_value_t = 1000)]
        users: u64,
        /// Seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Output file (`-` for stdout).
        #[arg(long, default_value = "-")]
        out: String,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Print the effective configuration (file, then `RTA__<SECTION>__<KEY>`
    /// variables, defaults filled in) as TOML, secrets redacted; exit 1 when
    /// it is invalid, naming the key and where it came from.
    Print {
        /// The TOML configuration (none: the defaults and the variables).
        #[arg(long, env = "RTA_CONFIG")]
        config: Option<PathBuf>,
    },
}

/// The process's `RTA__` override variables (others, and any that are not
/// Unicode, are left alone).
fn override_vars() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| k.starts_with(app::overrides::PREFIX))
        .collect()
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Check {
            strategies,
            taxonomy,
        } => check(&strategies, taxonomy.as_deref()),
        Command::Gen { users, seed, out } => gen_users(users, seed, &out),
        Command::Config {
            action: ConfigAction::Print { config },
        } => {
            let cfg = match &config {
                Some(path) => Config::from_path_and_env(path, override_vars())?,
                None => Config::from_toml_and_env(
                    "",
                    std::path::Path::new("<defaults>"),
                    override_vars(),
                )?,
            };
            print!("{}", app::overrides::print(&cfg)?);
            Ok(())
        }
        Command::Demo {
            users,
            seed,
            grpc_addr,
            http_addr,
            admin_addr,
            strategies,
            worker_threads,
        } => {
            let mut cfg = Config::default();
            cfg.server.grpc_addr = grpc_addr;
            cfg.server.http_addr = http_addr;
            cfg.server.admin_addr = admin_addr;
            cfg.server.worker_threads = worker_threads;
            // Ctrl-C on a laptop stops at once: no load balancer to drain
            cfg.server.drain_seconds = 0;
            cfg.strategies.path = strategies;
            cfg.users.generate = users;
            cfg.users.seed = seed;
            // the demo stays one command: a fresh admin token each start,
            // kept as its hash like any configured one, printed in the commands
            let token = demo_token()?;
            cfg.admin.tokens.push(TokenEntry {
                name: "demo".into(),
                role: Role::Write,
                sha256: token_sha256_hex(&token),
                strategies: Vec::new(),
            });
            serve(cfg, Some(token))
        }
        Command::Serve {
            config,
            grpc_addr,
            http_addr,
            admin_addr,
            worker_threads,
        } => {
            let mut cfg = Config::from_path_and_env(&config, override_vars())?;
            if let Some(a) = grpc_addr {
                cfg.server.grpc_addr = a;
            }
            if let Some(a) = http_addr {
                cfg.server.http_addr = a;
            }
            if let Some(a) = admin_addr {
                cfg.server.admin_addr = a;
            }
            if worker_threads.is_some() {
                cfg.server.worker_threads = worker_threads;
            }
            serve(cfg, None)
        }
        Command::Decide {
            addr,
            devices,
            os,
            strategies,
        } => runtime::build(1)?.block_on(decide(addr, devices, os, strategies)),
    }
}

/// Runs the engine on a runtime with the configured number of worker threads
/// until SIGTERM or Ctrl-C (SIGHUP reloads strategies).
fn serve(cfg: Config, demo_token: Option<String>) -> Result<()> {
    cfg.validate()?;
    runtime::build(cfg.server.worker_threads())?.block_on(async {
        let app = app::start(&cfg).await?;
        if let Some(token) = &demo_token {
            let node = app.node();
            print_demo_commands(
                &node.engine,
                &cfg,
                (app.grpc_addr(), app.http_addr()),
                (app.admin_addr(), token),
                node.engine.today(),
                &node.taxonomy,
            );
        }
        app::wait_for_signals(app.node()).await;
        app.stop().await?;
        Ok(())
    })
}

/// Finds a matching and a non-matching demo user and prints commands that show both.
fn print_demo_commands(
    engine: &DecisionEngine,
    cfg: &Config,
    (grpc, http): (SocketAddr, SocketAddr),
    (admin, token): (SocketAddr, &str),
    today: u16,
    taxonomy: &Taxonomy,
) {
    let mut hit = None;
    let mut miss = None;
    for id in 1..=cfg.users.generate.min(100_000) {
        let imei = format!("86{:013}", id % 10_000_000_000_000);
        let Ok(key) = DeviceKey::from_raw(DeviceIdKind::Imei, &imei) else {
            continue;
        };
        let p = population::generate_user(cfg.users.seed, id, today, taxonomy);
        if !p.devices().any(|d| d == key) {
            continue; // iOS user: keep the example to one id type
        }
        // uncounted: the search must not show up as traffic in /metrics
        let d = engine.decide_uncounted(&DecisionRequest {
            devices: &[key],
            os: Os::Android,
            experiments: &[],
            only_strategies: &[],
            media: None,
        });
        if d.take && hit.is_none() {
            hit = Some((
                key,
                d.matches
                    .iter()
                    .map(|m| m.strategy_id.to_string())
                    .collect::<Vec<_>>(),
            ));
        } else if !d.take && miss.is_none() {
            miss = Some(key);
        }
        if hit.is_some() && miss.is_some() {
            break;
        }
    }
    let port = grpc.port();
    // the admin API: /explain, /users and /metrics are on the admin listener
    let admin_port = admin.port();
    let mut out = format!(
        "\nTry it (in another terminal; the admin token is new at each start):\n  export RTA_TOKEN={token}\n"
    );
    if let Some((key, strategies)) = &hit {
        out += &format!(
            "  # a matching device (strategies: {})\n  cargo run --release -- decide --addr http://127.0.0.1:{port} --device imei:{}\n",
            strategies.join(", "),
            key.to_hex()
        );
        out += &format!(
            "  curl -s -H \"authorization: Bearer $RTA_TOKEN\" 'http://127.0.0.1:{admin_port}/explain?device={}&os=android'\n",
            key.to_hex()
        );
        // the same device through each media's own protocol
        let md5 = key.to_hex();
        let port = http.port();
        out += "  # the same device over the media protocols (needs pip install protobuf grpcio-tools)\n";
        for (media, path) in cfg.media_endpoints().enabled_paths() {
            let script = if media == "tencent" {
                "tencent_request.py".to_string()
            } else {
                format!("media_request.py {media}")
            };
            out += &format!(
                "  python3 scripts/{script} {md5} | curl -s --data-binary @- http://127.0.0.1:{port}{path} | python3 scripts/{script} --decode\n"
            );
        }
    }
    if let Some(key) = miss {
        out += &format!(
            "  # a device that matches nothing\n  cargo run --release -- decide --addr http://127.0.0.1:{port} --device imei:{}\n  curl -s -H \"authorization: Bearer $RTA_TOKEN\" http://127.0.0.1:{admin_port}/users/{}\n",
            key.to_hex(),
            key.to_hex()
        );
    }
    out += &format!("  curl -s http://127.0.0.1:{admin_port}/metrics | grep ^rta_\n");
    eprintln!("{out}");
}

/// A device id in the one text syntax ([`DeviceIdText`]) as the gRPC API
/// takes it: a raw OAID is sent raw (the API has a type for it); other raw
/// ids are hashed here; an md5 of unstated kind is taken as an IMEI's.
fn parse_cli_device(s: &str) -> Result<pb::DeviceId> {
    use pb::DeviceIdType as T;
    let text: DeviceIdText = s.parse().with_context(|| format!("device id `{s}`"))?;
    if let DeviceIdText::Raw {
        kind: DeviceIdKind::Oaid,
        value,
        ..
    } = &text
    {
        return Ok(pb::DeviceId {
            r#type: T::OaidRaw as i32,
            value: value.clone(),
        });
    }
    let t = match text.kind().unwrap_or(DeviceIdKind::Imei) {
        DeviceIdKind::Imei => T::ImeiMd5,
        DeviceIdKind::Oaid => T::OaidMd5,
        DeviceIdKind::Idfa => T::IdfaMd5,
        DeviceIdKind::Caid => T::Caid,
        DeviceIdKind::AndroidId => T::AndroidIdMd5,
        DeviceIdKind::Mac => T::MacMd5,
    };
    Ok(pb::DeviceId {
        r#type: t as i32,
        value: text.key().to_hex(),
    })
}

async fn decide(
    addr: String,
    devices: Vec<String>,
    os: Option<String>,
    strategies: Vec<String>,
) -> Result<()> {
    let device_ids = devices
        .iter()
        .map(|d| parse_cli_device(d))
        .collect::<Result<Vec<_>>>()?;
    let os = pb::Os::from(os.as_deref().unwrap_or("").parse::<Os>()?);
    let mut client = pb::rta_service_client::RtaServiceClient::connect(addr.clone())
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let resp = client
        .decide(pb::DecideRequest {
            request_id: format!("cli-{}", std::process::id()),
            device_ids,
            os: os as i32,
            strategy_ids: strategies,
            ..Default::default()
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}: {}", s.code(), s.message()))?
        .into_inner();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "take: {}  cache: {}s  server time: {}us",
        resp.take, resp.cache_seconds, resp.processing_time_us
    )?;
    for m in &resp.matches {
        writeln!(
            out,
            "  matched {} (target_id {}) bid factor {:.2}",
            m.strategy_id, m.target_id, m.bid_factor
        )?;
    }
    Ok(())
}

fn check(strategies: &std::path::Path, taxonomy: Option<&std::path::Path>) -> Result<()> {
    let taxonomy = app::load_taxonomy(taxonomy)?;
    match StrategySource::File(strategies.to_path_buf()).load(&taxonomy) {
        Ok(set) => {
            println!(
                "ok: {} strategies, version {}",
                set.strategies().len(),
                set.version
            );
            Ok(())
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}

fn gen_users(users: u64, seed: u64, out: &str) -> Result<()> {
    let taxonomy = Taxonomy::default_taxonomy();
    let today = Clock::System {
        tz_offset_secs: 8 * 3600,
    }
    .today();
    let mut w: Box<dyn Write> = if out == "-" {
        Box::new(std::io::BufWriter::new(std::io::stdout().lock()))
    } else {
        Box::new(std::io::BufWriter::new(
            std::fs::File::create(out).with_context(|| format!("creating {out}"))?,
        ))
    };
    for id in 1..=users {
        let p = population::generate_user(seed, id, today, &taxonomy);
        serde_json::to_writer(&mut w, &UserRecord::from_profile(id, &p, &taxonomy, today))?;
        w.write_all(b"\n")?;
    }
    w.flush()?;
    Ok(())
}

/// A fresh random admin token for `demo` (192 bits from the OS, hex).
fn demo_token() -> Result<String> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes)
        .map_err(|e| anyhow::anyhow!("no OS randomness for the demo's admin token: {e}"))?;
    Ok(hex::encode(bytes))
}
