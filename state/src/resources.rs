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
        // allow_stall: writers wait instead of exceeding the budget.
        let write_buffers = WriteBufferManager::new_write_buffer_manager_with_cache(
            write_buffer_bytes as usize,
            true,
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
