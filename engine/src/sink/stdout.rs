//! Standard output as a sink: a line per result (the zero-setup demo, trying a job out). Nothing
//! to commit: a line printed is printed, so a replay after a crash prints it again.

use super::Sink;
use crate::collector::RecordCollector;
use std::io::Write;
use weir_config::Job;

pub struct Stdout;

impl Sink for Stdout {
    fn check(&self, _: &str, _: &Job) -> anyhow::Result<()> {
        Ok(())
    }

    fn write(&mut self, _: &RecordCollector, _: &[u8], value: &[u8]) -> anyhow::Result<()> {
        let mut line = std::io::stdout().lock();
        line.write_all(value)?;
        line.write_all(b"\n")?;
        Ok(())
    }

    fn describe(&self) -> String {
        "stdout".into()
    }
}
