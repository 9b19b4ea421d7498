//! Wiring: a whole host (engine, class, registry, ingress) from one [`ServerConfig`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::alarm::{AlarmConfig, AlarmIndex, scheduler};
use crate::engine::{
    Class, EngineConfig, EpochTicker, LoadError, StartSizes, build_engine, read_component,
};
use crate::fetch::FetchPolicy;
use crate::id::IdMinter;
use crate::ingress::{self, IngressConfig};
use crate::limits::Limits;
use crate::registry::{ObjectRegistry, RegistryConfig};
use crate::storage::{Databases, StorageConfig};

/// Instances kept started ahead by default: enough for new objects arriving one after
/// another, each taken and replaced well within the time an event takes.
pub const DEFAULT_SPARE_INSTANCES: usize = 4;

/// Everything a host needs to serve one class.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The component to serve.
    pub component: PathBuf,
    /// Class name (feeds into every ID); defaults to the component's file stem.
    pub class: Option<String>,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub storage: StorageConfig,
    pub limits: Limits,
    pub max_instances: u32,
    /// Instances kept started ahead of activations ([`crate::prestart`]); 0: none.
    pub spare_instances: usize,
    pub idle_timeout: Duration,
    pub alarms: AlarmConfig,
    pub fetch: FetchPolicy,
    /// Where compiled components are cached; `None`: `<data>/cache`.
    pub cache_dir: Option<PathBuf>,
    /// Where to serve `/metrics` and `/healthz`, if anywhere.
    pub admin: Option<SocketAddr>,
}

impl ServerConfig {
    /// Defaults for serving `component`: 127.0.0.1:8787, `./.dohost`.
    pub fn new(component: PathBuf) -> Self {
        Self {
            component,
            class: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 8787)),
            data_dir: PathBuf::from(".dohost"),
            storage: StorageConfig::default(),
            limits: Limits::default(),
            max_instances: 1000,
            spare_instances: DEFAULT_SPARE_INSTANCES,
            idle_timeout: Duration::from_secs(10),
            alarms: AlarmConfig::default(),
            admin: None,
            fetch: FetchPolicy::default(),
            cache_dir: None,
        }
    }

    /// The class name in effect.
    pub fn class_name(&self) -> String {
        self.class.clone().unwrap_or_else(|| {
            self.component
                .file_stem()
                .map(|s| s.to_string_lossy().replace('_', "-"))
                .unwrap_or_else(|| "object".into())
        })
    }
}

/// What a host loads once and can serve from many times: the engine (with its epoch ticker)
/// and the compiled class.
#[derive(Clone)]
pub struct Runtime {
    class: Arc<Class>,
    ticker: Arc<EpochTicker>,
}

impl Runtime {
    /// Builds the engine and loads `config.component`, caching the compiled artefact in
    /// `cache_dir`. Compilation runs on a blocking thread.
    pub async fn load(config: &ServerConfig, cache_dir: PathBuf) -> anyhow::Result<Self> {
        let mut engine_config = EngineConfig {
            // Spare instances hold slots of the pool too.
            max_instances: config
                .max_instances
                .saturating_add(u32::try_from(config.spare_instances).unwrap_or(u32::MAX)),
            memory_bytes: config.limits.memory_bytes,
            eager_init: false,
        };
        let (path, name) = (config.component.clone(), config.class_name());
        let (engine, class) = tokio::task::spawn_blocking(move || {
            let bytes = read_component(&path)?;
            let sizes = StartSizes::read(&bytes);
            engine_config.eager_init = sizes.is_some_and(|s| s.eager());
            tracing::debug!(
                ?sizes,
                eager = engine_config.eager_init,
                "component sizes read: if eager, instances fill their tables and copy their \
                 memory images when they start"
            );
            let engine = build_engine(&engine_config)?;
            let class = Class::from_bytes(&engine, &path, &bytes, &name, Some(&cache_dir))?;
            Ok::<_, LoadError>((engine, class))
        })
        .await??;
        let ticker = EpochTicker::start(&engine);
        Ok(Self {
            class: Arc::new(class),
            ticker: Arc::new(ticker),
        })
    }

    pub fn class(&self) -> &Arc<Class> {
        &self.class
    }
}

/// A host that has loaded its class and bound its listener.
pub struct Server {
    listener: TcpListener,
    registry: ObjectRegistry,
    ingress: IngressConfig,
    alarms: Arc<AlarmIndex>,
    admin: Option<TcpListener>,
    _runtime: Runtime,
}

impl Server {
    /// Loads the component (compiling or reusing the cache in `<data>/cache`), opens the data
    /// directory and binds the listener. Must run inside a tokio runtime.
    pub async fn bind(config: ServerConfig) -> anyhow::Result<Self> {
        create_data_dir(&config)?;
        let cache = config
            .cache_dir
            .clone()
            .unwrap_or_else(|| config.data_dir.join("cache"));
        let runtime = Runtime::load(&config, cache).await?;
        Self::bind_with(&runtime, config).await
    }

    /// Binds a host for an already loaded runtime (its class must be `config.component`).
    pub async fn bind_with(runtime: &Runtime, config: ServerConfig) -> anyhow::Result<Self> {
        create_data_dir(&config)?;
        // First: it takes the data directory's lock, so no other host works in it meanwhile.
        let databases = Databases::open_dir(&config.data_dir, &config.storage)?;
        let minter = IdMinter::load_or_create(&config.data_dir.join("id.key"))?;
        check_data_class(&config.data_dir, runtime.class.name(), &minter)?;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let admin = match config.admin {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} (--admin)"))?,
            ),
            None => None,
        };
        let alarms = Arc::new(AlarmIndex::open(&config.data_dir.join("alarms.sqlite3"))?);
        let registry = ObjectRegistry::new(
            runtime.class.clone(),
            minter,
            alarms.clone(),
            databases,
            RegistryConfig {
                data_dir: config.data_dir.clone(),
                storage: config.storage.clone(),
                limits: config.limits.clone(),
                idle_timeout: config.idle_timeout,
                max_live: config.max_instances as usize,
                alarms: config.alarms.clone(),
                fetch: Arc::new(config.fetch.clone()),
                prestart: config.spare_instances,
            },
        );
        registry.nudge_on(&runtime.ticker);
        let ingress = IngressConfig {
            max_body_bytes: config.limits.max_body_bytes,
            body_timeout: config.limits.body_timeout,
            max_buffered_body_bytes: config.limits.max_buffered_body_bytes,
            max_connections: config.limits.max_connections,
        };
        Ok(Self {
            listener,
            registry,
            ingress,
            alarms,
            admin,
            _runtime: runtime.clone(),
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The admin address actually bound, if any.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The registry, to dispatch events without HTTP (embedding, tests).
    pub fn registry(&self) -> &ObjectRegistry {
        &self.registry
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()>) {
        let Server {
            listener,
            registry,
            ingress,
            alarms,
            admin,
            _runtime,
        } = self;
        let admin =
            admin.map(|listener| tokio::spawn(crate::admin::serve(listener, registry.clone())));
        let max_concurrent = registry.alarm_config().max_concurrent;
        let scheduler = tokio::spawn(scheduler::run(registry.clone(), alarms, max_concurrent));
        ingress::serve(listener, registry.clone(), ingress, shutdown).await;
        scheduler.abort();
        if let Some(admin) = admin {
            admin.abort();
        }
        registry.shutdown().await;
        tracing::info!("all objects closed");
    }
}

/// Refuses a data directory whose objects belong to another class than `class`, recorded in
/// `<data>/class` by the first host that served it. Object IDs belong to a class (it is part
/// of every ID), so a component renamed between deployments (`room-v2.wasm`) would otherwise
/// serve new, empty objects for every name, refuse every stored ID, and drop every pending
/// alarm as belonging to an unknown object. A directory from before the record has one made
/// once an object in it is seen to be of `class` (IDs carry their class).
fn check_data_class(data_dir: &Path, class: &str, minter: &IdMinter) -> anyhow::Result<()> {
    let path = data_dir.join("class");
    let other = |what: String| {
        anyhow::anyhow!(
            "the data directory {} {what}, but this component serves class {class:?} (its file \
             name without .wasm, or --class): if it is the same program under a new file name, \
             pass the old class with --class; if it is another program, give it its own --data",
            data_dir.display(),
        )
    };
    match std::fs::read_to_string(&path) {
        Ok(recorded) if recorded.trim() == class => Ok(()),
        Ok(recorded) => Err(other(format!(
            "holds objects of class {:?} (see {})",
            recorded.trim(),
            path.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let objects = data_dir.join("objects");
            let stored = crate::storage::some_object_id(&objects)
                .with_context(|| format!("cannot read {}", objects.display()))?;
            if let Some(hex) = stored
                && minter.parse(class, &hex).is_err()
            {
                return Err(other(format!(
                    "holds objects of another class (object {hex} is not of class {class:?})"
                )));
            }
            crate::storage::write_durably(&path, format!("{class}\n").as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn create_data_dir(config: &ServerConfig) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            config.data_dir.display()
        )
    })
}
