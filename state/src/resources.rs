//! Memory shared by all the stores of one worker, so that memory does not grow with the number of
//! partitions a worker owns: one LRU block cache, and one write-buffer manager charged to that cache.

use rocksdb::{BlockBasedOptions, Cache, Options, WriteBufferManager};

pub struct SharedResources {
    cache: Cache,
    write_buffers: WriteBufferManager,
    write_buffer_bytes: usize,
}

impl SharedResources {
    pub fn new(block_cache_bytes: u64, write_buffer_bytes: u64) -> Self {
        let cache = Cache::new_lru_cache(block_cache_bytes as usize);
        // No stall: past the budget, a write makes its own DB flush its memtables, and the
        // memtables are charged to the block cache, which evicts blocks to make room. With
        // `allow_stall`, a write to one store would wait for memory that only a flush of another
        // store frees; with one writer thread for every store, that flush never comes.
        let write_buffers = WriteBufferManager::new_write_buffer_manager_with_cache(
            write_buffer_bytes as usize,
            false,
            cache.clone(),
        );
        SharedResources {
            cache,
            write_buffers,
            write_buffer_bytes: write_buffer_bytes as usize,
        }
    }

    /// Options for one task's store. Each DB's memtable has a floor of one arena block, so the
    /// per-DB write buffer and arena are kept small: many partitions per worker stay cheap.
    pub fn db_options(&self) -> Options {
        let mut block = BlockBasedOptions::default();
        block.set_block_cache(&self.cache);
        block.set_cache_index_and_filter_blocks(true);
        block.set_bloom_filter(10.0, false);
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_block_based_table_factory(&block);
        opts.set_write_buffer_manager(&self.write_buffers);
        opts.set_write_buffer_size((self.write_buffer_bytes / 4).clamp(1 << 20, 16 << 20));
        opts.set_arena_block_size(64 << 10);
        opts.set_max_write_buffer_number(2);
        opts.set_max_open_files(64);
        opts.set_max_background_jobs(2);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        opts.set_keep_log_file_num(2);
        opts
    }

    pub fn block_cache_usage(&self) -> usize {
        self.cache.get_usage()
    }

    pub fn write_buffer_usage(&self) -> usize {
        self.write_buffers.get_usage()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    /// One thread writes to many stores in turn, as a worker does at commit, with a write-buffer
    /// budget far below what the keys take: every write finishes (a stalling write-buffer manager
    /// blocked for good here), and the memtables stay near the budget.
    #[test]
    fn a_small_write_buffer_budget_never_blocks_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let budget = 2u64 << 20;
        let (done, finished) = std::sync::mpsc::channel();
        let root = dir.path().to_path_buf();
        let writer = std::thread::spawn(move || {
            let res = SharedResources::new(4 << 20, budget);
            let stores: Vec<Store> = (0..4)
                .map(|p| Store::open(&root.join(p.to_string()), &res).unwrap())
                .collect();
            let value = vec![7u8; 100];
            let mut peak = 0;
            // 200,000 keys of ~120 bytes: 24 MB through a 2 MiB budget, one store at a time in
            // batches, most of them to the first store, so the others hold memory and go idle.
            for round in 0..40u32 {
                let p = if round % 4 == 3 {
                    (round as usize / 4) % 4
                } else {
                    0
                };
                let keys: Vec<Vec<u8>> = (0..5_000u32)
                    .map(|i| format!("meter-{round:03}-{i:06}").into_bytes())
                    .collect();
                stores[p]
                    .write(keys.iter().map(|k| (k.as_slice(), Some(value.as_slice()))))
                    .unwrap();
                peak = peak.max(res.write_buffer_usage());
            }
            for s in &stores {
                s.sync().unwrap();
            }
            // Closed before the verdict: a RocksDB still closing while the process exits aborts.
            drop(stores);
            drop(res);
            done.send(peak).unwrap();
        });
        let peak = finished
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the writer is blocked: a write waits for memory no flush will free");
        writer.join().unwrap();
        assert!(
            peak < 4 * budget as usize,
            "memtables grew to {peak} bytes over a {budget}-byte budget"
        );
    }
}
