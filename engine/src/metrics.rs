//! Prometheus metrics of a worker. Names: `weir_` prefix, base units, `_total` for counters. Labels
//! are only `job` and `partition` (one input partition = one task), never a record key, so the
//! number of series does not grow with the data.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub records_consumed: IntCounterVec,
    pub records_produced: IntCounter,
    pub records_skipped: IntCounterVec,
    pub records_dead_lettered: IntCounterVec,
    pub records_late: IntCounterVec,
    pub repartition_duplicates: IntCounterVec,
    pub records_filtered: IntCounterVec,
    pub restore_records: IntCounterVec,
    pub restore_remaining: IntGaugeVec,
    pub restore_seconds_to_ready: prometheus::GaugeVec,
    pub restores_full: IntCounterVec,
    pub commit_duration: Histogram,
    pub checkpoint_duration: Histogram,
    pub commits: IntCounter,
    pub consumer_lag: IntGaugeVec,
    pub task_state: IntGaugeVec,
    pub tasks: IntGauge,
    pub rebalances: IntCounter,
    pub producer_renewals: IntCounter,
    pub consumer_renewals: IntCounter,
    pub state_size: IntGaugeVec,
    pub block_cache_bytes: IntGauge,
    pub write_buffer_bytes: IntGauge,
    pub checkpoint_age: prometheus::GaugeVec,
    pub poll_batch_duration: Histogram,
}

/// One task's per-record counters.
#[derive(Clone)]
pub struct TaskCounters {
    pub consumed: IntCounter,
    pub skipped: IntCounter,
    pub dead_lettered: IntCounter,
    pub late: IntCounter,
    pub duplicates: IntCounter,
    pub filtered: IntCounter,
    pub wipes: IntCounter,
    pub restored: IntCounter,
}

fn opts(name: &str, help: &str, job: &str) -> Opts {
    Opts::new(name, help).const_label("job", job)
}

impl Metrics {
    pub fn new(job: &str) -> Metrics {
        let registry = Registry::new();
        let p = &["partition"];
        macro_rules! reg {
            ($m:expr) => {{
                let m = $m;
                registry
                    .register(Box::new(m.clone()))
                    .expect("metric names are unique");
                m
            }};
        }
        // The process's own figures (memory, open files, CPU, threads) under their conventional
        // `process_*` names, as every Prometheus client exports them: what a soak watches.
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("registered once");
        let buckets = vec![
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ];
        Metrics {
            records_consumed: reg!(IntCounterVec::new(opts("weir_records_consumed_total", "Input records taken from Kafka and processed.", job), p).unwrap()),
            records_produced: reg!(IntCounter::with_opts(opts("weir_records_produced_total", "Result records sent to the sink.", job)).unwrap()),
            records_skipped: reg!(IntCounterVec::new(opts("weir_records_skipped_total", "Bad input records skipped (bad_records = skip).", job), p).unwrap()),
            records_dead_lettered: reg!(IntCounterVec::new(opts("weir_records_dead_lettered_total", "Bad input records sent to the dead-letter topic.", job), p).unwrap()),
            records_late: reg!(IntCounterVec::new(opts("weir_records_late_total", "Records dropped because all their windows had closed.", job), p).unwrap()),
            repartition_duplicates: reg!(IntCounterVec::new(opts("weir_repartition_duplicates_total", "Repartition records skipped as copies of records already applied (a first hop replaying its input).", job), p).unwrap()),
            records_filtered: reg!(IntCounterVec::new(opts("weir_records_filtered_total", "Records dropped by a filter.", job), p).unwrap()),
            restore_records: reg!(IntCounterVec::new(opts("weir_restore_records_total", "Changelog records replayed into local state.", job), p).unwrap()),
            restore_remaining: reg!(IntGaugeVec::new(opts("weir_restore_records_remaining", "Changelog records still to replay before the task runs.", job), p).unwrap()),
            restore_seconds_to_ready: reg!(prometheus::GaugeVec::new(opts("weir_restore_seconds_to_ready", "Estimated seconds until the restoring task runs (remaining / current rate).", job), p).unwrap()),
            restores_full: reg!(IntCounterVec::new(opts("weir_restore_wipes_total", "Restores that wiped local state and replayed the whole changelog.", job), p).unwrap()),
            commit_duration: reg!(Histogram::with_opts(HistogramOpts::from(opts("weir_commit_duration_seconds", "Duration of one commit cycle (flush, offset commit, state apply, checkpoint).", job)).buckets(buckets.clone())).unwrap()),
            checkpoint_duration: reg!(Histogram::with_opts(HistogramOpts::from(opts("weir_checkpoint_duration_seconds", "Duration of applying state writes and writing one task's checkpoint.", job)).buckets(buckets.clone())).unwrap()),
            commits: reg!(IntCounter::with_opts(opts("weir_commits_total", "Commit cycles completed.", job)).unwrap()),
            consumer_lag: reg!(IntGaugeVec::new(opts("weir_consumer_lag_records", "Records between the committed input offset and the end of the partition.", job), p).unwrap()),
            task_state: reg!(IntGaugeVec::new(opts("weir_task_state", "Task state: 0 created, 1 restoring, 2 running, 3 suspended, 4 closed, 5 failed.", job), p).unwrap()),
            tasks: reg!(IntGauge::with_opts(opts("weir_tasks", "Tasks (input partitions) assigned to this worker.", job)).unwrap()),
            rebalances: reg!(IntCounter::with_opts(opts("weir_rebalances_total", "Assignments and revocations received.", job)).unwrap()),
            producer_renewals: reg!(IntCounter::with_opts(opts("weir_producer_renewals_total", "Producers replaced after a fence (a transaction the coordinator aborted at its timeout, or a twin).", job)).unwrap()),
            consumer_renewals: reg!(IntCounter::with_opts(opts("weir_consumer_renewals_total", "Group consumers replaced after being fenced by their instance id.", job)).unwrap()),
            state_size: reg!(IntGaugeVec::new(opts("weir_state_size_bytes", "Estimated size of a task's local store.", job), p).unwrap()),
            block_cache_bytes: reg!(IntGauge::with_opts(opts("weir_rocksdb_block_cache_bytes", "Memory used by the worker's shared RocksDB block cache.", job)).unwrap()),
            write_buffer_bytes: reg!(IntGauge::with_opts(opts("weir_rocksdb_write_buffer_bytes", "Memory used by the worker's RocksDB memtables.", job)).unwrap()),
            checkpoint_age: reg!(prometheus::GaugeVec::new(opts("weir_checkpoint_age_seconds", "Seconds since the task's last checkpoint.", job), p).unwrap()),
            poll_batch_duration: reg!(Histogram::with_opts(HistogramOpts::from(opts("weir_processing_duration_seconds", "Time to process one batch of polled records.", job)).buckets(buckets)).unwrap()),
            registry,
        }
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }

    /// Handles on one task's per-record counters, resolved once (no label lookup per record).
    pub fn task_counters(&self, partition: i32) -> TaskCounters {
        let p = partition.to_string();
        let l = [p.as_str()];
        TaskCounters {
            consumed: self.records_consumed.with_label_values(&l),
            skipped: self.records_skipped.with_label_values(&l),
            dead_lettered: self.records_dead_lettered.with_label_values(&l),
            late: self.records_late.with_label_values(&l),
            duplicates: self.repartition_duplicates.with_label_values(&l),
            filtered: self.records_filtered.with_label_values(&l),
            wipes: self.restores_full.with_label_values(&l),
            restored: self.restore_records.with_label_values(&l),
        }
    }

    /// Removes a task's series when it leaves this worker.
    pub fn forget_partition(&self, partition: i32) {
        let p = partition.to_string();
        let labels = [p.as_str()];
        for v in [
            &self.records_consumed,
            &self.records_skipped,
            &self.records_dead_lettered,
            &self.records_late,
            &self.repartition_duplicates,
            &self.records_filtered,
            &self.restore_records,
            &self.restores_full,
        ] {
            let _ = v.remove_label_values(&labels);
        }
        for g in [
            &self.restore_remaining,
            &self.consumer_lag,
            &self.task_state,
            &self.state_size,
        ] {
            let _ = g.remove_label_values(&labels);
        }
        let _ = self.restore_seconds_to_ready.remove_label_values(&labels);
        let _ = self.checkpoint_age.remove_label_values(&labels);
    }
}
