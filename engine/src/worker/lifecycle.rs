//! Task phase changes as the rest of the world sees them (`weir_task_state`, `/readyz`), the
//! gauges, and closing tasks.

use super::*;

impl TaskManager {
    /// Publishes task `p`'s phase after a lifecycle verb changed it.
    pub(super) fn publish(&self, p: i32) {
        let Some(task) = self.tasks.get(&p) else {
            return;
        };
        let state = task.state();
        self.metrics
            .task_state
            .with_label_values(&[&p.to_string()])
            .set(state.code());
        let why = match state {
            TaskState::Running | TaskState::Closed | TaskState::Suspended => None,
            TaskState::Failed => Some(format!("failed: {}", task.failure().unwrap_or_default())),
            other => Some(format!("{other:?}").to_lowercase()),
        };
        self.health.set_task(p, why);
    }

    /// Fails task `p` with a content-free reason (the log has the details).
    pub(super) fn fail_task(&mut self, p: i32, reason: String) {
        if let Some(task) = self.tasks.get_mut(&p) {
            task.fail(reason);
        }
        self.publish(p);
    }

    /// Closes and forgets the given tasks (their stores close, their directories unlock).
    pub(super) fn close_tasks(&mut self, partitions: &[i32]) {
        for p in partitions {
            let Some(mut task) = self.tasks.remove(p) else {
                continue;
            };
            if task.state() == TaskState::Restoring {
                self.restorer.stale = true;
            }
            task.close();
            self.metrics
                .task_state
                .with_label_values(&[&p.to_string()])
                .set(task.state().code());
            self.metrics.forget_partition(*p);
            self.health.set_task(*p, None);
        }
        self.metrics.tasks.set(self.tasks.len() as i64);
    }

    pub(super) fn close_all(&mut self) {
        let partitions: Vec<i32> = self.tasks.keys().copied().collect();
        self.close_tasks(&partitions);
    }

    pub(super) fn update_gauges(&self) {
        self.metrics
            .block_cache_bytes
            .set(self.stores.resources.block_cache_usage() as i64);
        self.metrics
            .write_buffer_bytes
            .set(self.stores.resources.write_buffer_usage() as i64);
        for (p, t) in &self.tasks {
            let label = p.to_string();
            if let Some(local) = t.local() {
                self.metrics
                    .state_size
                    .with_label_values(&[&label])
                    .set(local.store.estimated_size_bytes() as i64);
            }
            if let Some(w) = t.window_state() {
                self.metrics
                    .checkpoint_age
                    .with_label_values(&[&label])
                    .set(w.last_checkpoint_at.elapsed().as_secs_f64());
            }
        }
    }
}
