//! Builds a runnable [`Pipeline`] from a validated configuration and the plugin registry.

use std::time::Duration;

use fastlane_plugin_api::{ComponentKind, PluginError, Source, Target, Transform};
use serde_json::Value;

use crate::config::{PipelineConfig, ResumePolicy, Section, VerifyPolicy};
use crate::engine::{
    CheckpointOptions, EngineOptions, Named, Pipeline, Resume, Verify, new_run_id,
};
use crate::plugins::Registry;
use crate::transforms;

/// A component could not be created from its configuration.
#[derive(Debug, thiserror::Error)]
#[error("cannot create {kind} `{id}` ({origin})")]
pub struct BuildError {
    /// Source, transform or target.
    pub kind: ComponentKind,
    /// The component id.
    pub id: String,
    /// The plugin file, or `built-in`.
    pub origin: String,
    /// The component's error.
    #[source]
    pub cause: PluginError,
}

fn missing(kind: ComponentKind, id: &str) -> BuildError {
    BuildError {
        kind,
        id: id.to_owned(),
        origin: "not found".into(),
        cause: PluginError::not_found(format!("no {kind} `{id}` is loaded")),
    }
}

/// Creates the source of a section.
pub fn create_source(registry: &Registry, s: &Section) -> Result<Box<dyn Source>, BuildError> {
    let c = registry
        .find(ComponentKind::Source, &s.id)
        .ok_or_else(|| missing(ComponentKind::Source, &s.id))?;
    let err = |cause| BuildError {
        kind: ComponentKind::Source,
        id: s.id.clone(),
        origin: c.origin(),
        cause,
    };
    match &c.plugin {
        Some(p) => p
            .create_source(&s.id, &s.config)
            .map(|x| Box::new(x) as Box<dyn Source>)
            .map_err(err),
        None => Err(err(PluginError::internal("no built-in sources"))),
    }
}

/// Creates the transform of a section; `None` when it would do nothing (the `default`
/// transform with `add_op_fields: false` and no steps).
pub fn create_transform(
    registry: &Registry,
    s: &Section,
) -> Result<Option<Box<dyn Transform>>, BuildError> {
    if s.id == "default"
        && s.config.get("add_op_fields") == Some(&Value::Bool(false))
        && s.config
            .get("steps")
            .and_then(Value::as_array)
            .is_none_or(|a| a.is_empty())
    {
        return Ok(None);
    }
    let c = registry
        .find(ComponentKind::Transform, &s.id)
        .ok_or_else(|| missing(ComponentKind::Transform, &s.id))?;
    let err = |cause| BuildError {
        kind: ComponentKind::Transform,
        id: s.id.clone(),
        origin: c.origin(),
        cause,
    };
    match &c.plugin {
        Some(p) => p
            .create_transform(&s.id, &s.config)
            .map(|x| Some(Box::new(x) as Box<dyn Transform>))
            .map_err(err),
        None => match transforms::create(&s.id, &s.config) {
            Some(r) => r.map(Some).map_err(err),
            None => Err(err(PluginError::internal("unknown built-in transform"))),
        },
    }
}

/// Creates the target of a section.
pub fn create_target(registry: &Registry, s: &Section) -> Result<Box<dyn Target>, BuildError> {
    let c = registry
        .find(ComponentKind::Target, &s.id)
        .ok_or_else(|| missing(ComponentKind::Target, &s.id))?;
    let err = |cause| BuildError {
        kind: ComponentKind::Target,
        id: s.id.clone(),
        origin: c.origin(),
        cause,
    };
    match &c.plugin {
        Some(p) => p
            .create_target(&s.id, &s.config)
            .map(|x| Box::new(x) as Box<dyn Target>)
            .map_err(err),
        None => Err(err(PluginError::internal("no built-in targets"))),
    }
}

/// Builds the pipeline and the engine options of a configuration.
pub fn build(
    config: &PipelineConfig,
    registry: &Registry,
) -> Result<(Pipeline, EngineOptions), BuildError> {
    let source = create_source(registry, &config.source)?;
    let transform = create_transform(registry, &config.transform)?;
    let target = create_target(registry, &config.target)?;
    let pipeline = Pipeline {
        source: Named::new(config.source.id.clone(), source).with_capabilities(capabilities(
            registry,
            ComponentKind::Source,
            &config.source,
        )),
        transforms: transform
            .map(|t| vec![Named::new(config.transform.id.clone(), t)])
            .unwrap_or_default(),
        target: Named::new(config.target.id.clone(), target).with_capabilities(capabilities(
            registry,
            ComponentKind::Target,
            &config.target,
        )),
    };
    Ok((pipeline, engine_options(config)))
}

/// What the component of a section declares it can do (resume…).
pub fn capabilities(
    registry: &Registry,
    kind: ComponentKind,
    section: &Section,
) -> Vec<fastlane_plugin_api::Capability> {
    registry
        .find(kind, &section.id)
        .map(|c| c.info.capabilities.clone())
        .unwrap_or_default()
}

/// A digest of what a resumed run must share with the run it resumes: the source, transform
/// and target (ids and sections) and the replication mode.
pub fn fingerprint(config: &PipelineConfig) -> String {
    let text = serde_json::json!({
        "mode": config.replication_mode,
        "source": [&config.source.id, &config.source.config],
        "transform": [&config.transform.id, &config.transform.config],
        "target": [&config.target.id, &config.target.config],
    })
    .to_string();
    // FNV-1a, 64 bits: stable across builds and platforms.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// The checkpoint options of a configuration: resume an unfinished run when there is one,
/// checkpoint every `checkpoint_interval_secs`; none with `"resume": "never"`.
pub fn checkpoint_options(config: &PipelineConfig) -> Option<CheckpointOptions> {
    if config.resume == ResumePolicy::Never {
        return None;
    }
    Some(CheckpointOptions {
        resume: Resume::Auto,
        fingerprint: fingerprint(config),
        interval: Duration::try_from_secs_f64(config.checkpoint_interval_secs)
            .unwrap_or(Duration::from_secs(5)),
    })
}

/// The engine options a configuration asks for (queue limits, workers, stall timeout), with a
/// new run id.
pub fn engine_options(config: &PipelineConfig) -> EngineOptions {
    EngineOptions {
        run_id: new_run_id(),
        mode: config.replication_mode,
        max_buffered_batches: config.max_buffered_batches,
        max_buffered_bytes: config.max_buffered_bytes,
        source_concurrency: config.source.concurrency(),
        transform_concurrency: config.transform.concurrency().unwrap_or(1),
        target_concurrency: config.target.concurrency().unwrap_or(1),
        stall_timeout: config
            .stall_timeout_secs
            .map(|s| Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX)),
        checkpoint: checkpoint_options(config),
        verify: match config.verify {
            VerifyPolicy::Count => Verify::Count,
            VerifyPolicy::Checksum => Verify::Checksum,
            VerifyPolicy::Off => Verify::Off,
        },
        ..EngineOptions::default()
    }
}
