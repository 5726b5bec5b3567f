//! The `portcullis` command: parse the CLI, load config, start telemetry,
//! hand over to `App` (serve) or evaluate offline (validate, check).

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use portcullis::App;
use portcullis::authz::{
    CacheSettings, DecisionRequest, Engine, EntitySnapshot, PolicyInputs, PolicySnapshot, UidInput,
    load_policy_dir,
};
use portcullis::config::Config;

/// Cedar allocates heavily per decision; mimalloc takes ~10% off an
/// uncached decision and steadies its latency (`cargo bench --bench decision`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `EX_USAGE`: the configuration is wrong.
const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "A lean Cedar policy decision point"
)]
struct Cli {
    /// Config file (default: config/portcullis.toml when present).
    #[arg(long, global = true, env = "PORTCULLIS_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API.
    Serve,
    /// Parse and validate the policy directory; exit 0 when valid.
    Validate {
        /// Policy directory (default: the configured one).
        #[arg(long)]
        policies: Option<PathBuf>,
    },
    /// Decide one request offline: exit 0 allow, 1 deny, 2 error.
    Check {
        #[arg(long)]
        principal: String,
        #[arg(long)]
        action: String,
        #[arg(long)]
        resource: String,
        /// Cedar entities JSON file.
        #[arg(long)]
        entities: Option<PathBuf>,
        /// Context as a JSON object.
        #[arg(long)]
        context: Option<String>,
        #[arg(long)]
        policies: Option<PathBuf>,
    },
    /// Manage accounts in the configured active store.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Back up every namespace of the active store into the backup location.
    Backup {
        #[arg(long)]
        label: Option<String>,
    },
    /// List the backups in the backup location, newest first.
    Backups,
    /// Import users and groups from the LDAP directories into the active
    /// store, as `POST /iam/sync/run` does. Exits 1 when the run failed.
    Sync {
        /// One directory (the name of its `[backends.<name>]`); all LDAP
        /// directories when absent.
        #[arg(long)]
        directory: Option<String>,
        /// `full`, or `changed`: only users changed since the last sync are
        /// read in full.
        #[arg(long, default_value = "full")]
        mode: String,
        /// Report what would change without writing it.
        #[arg(long)]
        dry_run: bool,
    },
    /// Replace the active store's contents with backup ID (checked first;
    /// the current contents are backed up before).
    Restore {
        id: String,
        /// Confirms that everything in the active store is replaced.
        #[arg(long)]
        yes: bool,
    },
}

/// `portcullis backup`, `backups`, `restore` and `sync`, against the
/// configured store as the server would open it. Progress goes to the log.
fn store_command(config: Config, command: Command) -> ExitCode {
    if let Command::Restore { yes: false, .. } = command {
        eprintln!("portcullis: restoring replaces everything in the active store; add --yes");
        return ExitCode::from(2);
    }
    let Some(runtime) = cli_runtime() else {
        return ExitCode::from(2);
    };
    if let Command::Sync { mode, .. } = &command
        && !matches!(mode.as_str(), "full" | "changed")
    {
        eprintln!("portcullis: --mode is `full` or `changed`");
        return ExitCode::from(2);
    }
    let done = runtime.block_on(async {
        let (registry, catalog, accounts) = portcullis::app::open_recovery(&config).await?;
        if let Command::Sync {
            directory,
            mode,
            dry_run,
        } = command
        {
            let request = portcullis::services::SyncRequest {
                directory,
                mode: portcullis::app::sync_mode(&mode),
                dry_run,
            };
            let federation = portcullis::services::Federation {
                registry: &registry,
                catalog: &catalog,
            };
            let report = federation.run(&request, "cli").await?;
            let failed = report.status != "succeeded";
            return anyhow::Ok((serde_json::to_value(report)?, failed));
        }
        let key = config
            .recovery
            .key_bytes()?
            .and_then(|bytes| portcullis::services::SealKey::new(&bytes));
        let settings = portcullis::services::RecoverySettings::load(
            catalog.store().as_ref(),
            &config.recovery,
        )
        .await?;
        let recovery = portcullis::services::Recovery {
            registry: &registry,
            catalog: &catalog,
            accounts: &accounts,
            settings,
            key: key.as_ref(),
        };
        let answer = match command {
            Command::Backup { label } => serde_json::to_value(recovery.backup(label).await?)?,
            Command::Backups => serde_json::json!({"backups": recovery.list()?}),
            Command::Restore { id, .. } => serde_json::to_value(recovery.restore(&id).await?)?,
            _ => unreachable!("only store commands come here"),
        };
        anyhow::Ok((answer, false))
    });
    match done {
        Ok((answer, failed)) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&answer).unwrap_or_default()
            );
            if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("portcullis: {e:#}");
            ExitCode::from(1)
        }
    }
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account; the password is read from the first line of
    /// standard input. `--admin` makes it a superuser (the admin role), the
    /// way to bootstrap the first administrator.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        admin: bool,
    },
}

/// The runtime of a one-shot command; `None` (reported) when it cannot start.
fn cli_runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => Some(runtime),
        Err(e) => {
            eprintln!("portcullis: {e}");
            None
        }
    }
}

/// `portcullis user create`: opens the active store as the server would.
fn user_command(config: Config, command: UserCommand) -> ExitCode {
    let UserCommand::Create { email, name, admin } = command;
    let mut password = String::new();
    if let Err(e) = std::io::stdin().read_line(&mut password) {
        eprintln!("portcullis: cannot read the password from standard input: {e}");
        return ExitCode::from(2);
    }
    let password = password.trim_end_matches(['\r', '\n']).to_owned();
    let Some(runtime) = cli_runtime() else {
        return ExitCode::from(2);
    };
    let created = runtime.block_on(async {
        let accounts = portcullis::app::open_accounts(&config).await?;
        let input = portcullis::services::Registration {
            email,
            password,
            name,
        };
        accounts
            .create_user(input, admin)
            .await
            .map_err(anyhow::Error::from)
    });
    match created {
        Ok(user) => {
            println!(
                "created {}user {} <{}>",
                if admin { "admin " } else { "" },
                user.id,
                user.email
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("portcullis: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref(), std::env::vars()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("portcullis: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    portcullis::telemetry::init(&config.log);
    match cli.command {
        Command::Serve => serve(config),
        Command::User { command } => user_command(config, command),
        command @ (Command::Backup { .. }
        | Command::Backups
        | Command::Restore { .. }
        | Command::Sync { .. }) => store_command(config, command),
        Command::Validate { policies } => {
            let dir = policies.unwrap_or(config.policies.dir);
            match offline_policies(&dir) {
                Ok(snapshot) => {
                    println!(
                        "{}: {} policies valid{}",
                        dir.display(),
                        snapshot.policies.len(),
                        if snapshot.schema.is_some() {
                            " against the schema"
                        } else {
                            " (no schema)"
                        }
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e:#}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Check {
            principal,
            action,
            resource,
            entities,
            context,
            policies,
        } => {
            let dir = policies.unwrap_or(config.policies.dir);
            match check(&dir, principal, action, resource, entities, context) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("portcullis: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

fn serve(config: Config) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("portcullis: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let shutdown = shutdown_signal()?;
        let app = App::build(config).await?;
        app.run_until_stopped(shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("portcullis: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Installs the SIGINT/SIGTERM handlers now (so a signal that arrives
/// during start-up is not fatal) and completes when one arrives.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}

fn offline_policies(dir: &std::path::Path) -> anyhow::Result<PolicySnapshot> {
    let files = load_policy_dir(dir).map_err(|e| portcullis::app::describe(e.into()))?;
    let inputs = PolicyInputs {
        files: files.files,
        schema: files.schema,
        ..PolicyInputs::default()
    };
    PolicySnapshot::build(&inputs, 1).map_err(|e| portcullis::app::describe(e.into()))
}

fn check(
    dir: &std::path::Path,
    principal: String,
    action: String,
    resource: String,
    entities: Option<PathBuf>,
    context: Option<String>,
) -> anyhow::Result<bool> {
    let policies = offline_policies(dir)?;
    let docs: Vec<serde_json::Value> = match entities {
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
            serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{} is not a JSON array: {e}", path.display()))?
        }
        None => Vec::new(),
    };
    let entities = EntitySnapshot::from_docs(docs, policies.schema.as_ref(), 1)?;
    let context = context
        .map(|c| serde_json::from_str(&c))
        .transpose()
        .map_err(|e| anyhow::anyhow!("--context is not JSON: {e}"))?;
    let engine = Engine::new(policies, entities, &CacheSettings::default());
    let request = DecisionRequest {
        principal: Some(UidInput::Text(principal)),
        action: Some(UidInput::Text(action)),
        resource: Some(UidInput::Text(resource)),
        context,
        ..DecisionRequest::default()
    };
    let decided = engine.decide(&request, None)?;
    println!("{}", String::from_utf8_lossy(&decided.outcome.body()));
    Ok(decided.outcome.allowed())
}
