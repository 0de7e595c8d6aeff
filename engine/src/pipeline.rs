//! The job compiled to what runs per record: a value, not correlated options. A stateless job
//! forwards each record through its steps; a stateful one decodes, runs its steps and aggregates
//! into the task's window state, optionally across a repartition topic when `key_by` changes the
//! partitioning. A new kind of job (several outputs, a join) is a new variant here and its own
//! arm in `worker/process.rs`, not a new branch threaded through the loop.

use std::sync::Arc;
use std::time::Duration;
use weir_config::{AggregateFn, Job, WindowOp};
use weir_operators::formats::{self, Encode, SchemaResolver};
use weir_operators::{
    open_window_aggregate_with, Decoder, Forward, Program, ResultSpec, StatefulOperator,
    StoreAccess,
};

/// What the windowed part of a job needs at run time.
pub(crate) struct WindowSpec {
    pub window: WindowOp,
    pub functions: Vec<AggregateFn>,
    pub idle_close: Option<Duration>,
    /// The store's name (its checkpoint entry) and its changelog topic.
    pub store: String,
    pub changelog: String,
    pub key_name: String,
    /// The sink's format, which results are written in.
    pub results: Arc<dyn Encode>,
}

impl WindowSpec {
    /// The window operator over a task's (restored) store.
    pub fn open(
        &self,
        store: &dyn StoreAccess,
        cache_bytes: usize,
    ) -> Result<Box<dyn StatefulOperator>, weir_state::StoreError> {
        let results = ResultSpec {
            functions: self.functions.clone(),
            key_name: self.key_name.clone(),
            encoder: self.results.clone(),
        };
        open_window_aggregate_with(store, &self.window, results, cache_bytes)
    }
}

pub(crate) struct Aggregation {
    pub decoder: Decoder,
    pub program: Program,
    pub window: WindowSpec,
    /// Set when `key_by` changes the partitioning: the first hop sends re-keyed records to this
    /// topic, and the records read back from it (partition p of it belongs to task p) aggregate.
    pub repartition: Option<String>,
}

pub(crate) enum Pipeline {
    Forward(Forward),
    Aggregate(Box<Aggregation>),
}

impl Pipeline {
    /// Compiles a validated job; its formats look schemas up with `schemas` (the one place a
    /// schema registry client comes in).
    pub fn compile(job: &Job, schemas: &Arc<dyn SchemaResolver>) -> anyhow::Result<Pipeline> {
        let plan = job.plan();
        let (Some((w, a)), Some(changelog)) = (&plan.window, job.changelog_topic()) else {
            let forward = Forward::with_schemas(job, schemas).map_err(anyhow::Error::msg)?;
            return Ok(Pipeline::Forward(forward));
        };
        let program = Program::compile(job);
        // A re-keyed job decodes its key from the key_by field.
        let mut source = job.source.clone();
        if let Some(k) = program.key_input_field.clone() {
            source.key_field = Some(k);
        }
        let decoder = Decoder::with_schemas(&source, program.input_fields.clone(), schemas)
            .map_err(anyhow::Error::msg)?;
        Ok(Pipeline::Aggregate(Box::new(Aggregation {
            decoder,
            window: WindowSpec {
                window: w.clone(),
                functions: a.functions.clone(),
                idle_close: w.close_idle_after.map(|d| d.std()),
                store: a.store.get_ref().clone(),
                changelog,
                key_name: program.key_name.clone(),
                results: formats::encoder(w.result_format, schemas),
            },
            program,
            repartition: job.repartition_topic(),
        })))
    }

    /// The window part of a stateful job.
    pub fn window(&self) -> Option<&WindowSpec> {
        match self {
            Pipeline::Aggregate(a) => Some(&a.window),
            Pipeline::Forward(_) => None,
        }
    }

    pub fn repartition(&self) -> Option<&str> {
        match self {
            Pipeline::Aggregate(a) => a.repartition.as_deref(),
            Pipeline::Forward(_) => None,
        }
    }
}

impl Pipeline {
    /// Processing time for the records decoded next (event-time plausibility), once per batch.
    pub fn set_processing_time(&mut self, now_ms: i64) {
        if let Pipeline::Aggregate(a) = self {
            a.decoder.set_processing_time(now_ms);
        }
    }
}
