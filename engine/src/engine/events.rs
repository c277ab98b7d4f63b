//! Reading the domain events and keeping consumers' offsets (see `crate::events`).

use crate::error::{EngineError, OpenError};
use crate::events::{self, Event};
use crate::record::Seq;

use super::Engine;

impl Engine {
    /// Up to `limit` events after `after`, oldest first; only durable ones.
    pub fn events(&self, after: Seq, limit: usize) -> Result<Vec<Event>, EngineError> {
        let durable = self.durable_seq();
        let limit = limit.min(events::PAGE_MAX);
        self.inner
            .store
            .events
            .read(after, durable, limit)
            .map_err(|error| match error {
                events::StoredEventsError::Storage(error) => storage_error(error),
                unreadable => OpenError::from(unreadable).into(),
            })
    }

    /// The last event `consumer` has finished with (0 before its first).
    pub fn consumer_offset(&self, consumer: &'static str) -> Result<Seq, EngineError> {
        let stored = self
            .inner
            .store
            .consumers
            .get(consumer)
            .map_err(storage_error)?;
        Ok(stored
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map_or(0, Seq::from_be_bytes))
    }

    /// The consumer's offset; a consumer seen for the first time starts at the end of the
    /// log as it is now (saved durably before this returns), so it reads only what happens
    /// from here on, not the directory's history. Blocks on the disk the first time.
    pub fn start_consumer(&self, consumer: &'static str) -> Result<Seq, EngineError> {
        let store = &self.inner.store;
        if store
            .consumers
            .contains_key(consumer)
            .map_err(storage_error)?
        {
            return self.consumer_offset(consumer);
        }
        let end = self.durable_seq();
        self.save_consumer_offset(consumer, end)?;
        Ok(end)
    }

    /// Records durably (flushed before it returns) that `consumer` has finished with every
    /// event up to `seq`. Blocks on the disk.
    pub fn save_consumer_offset(
        &self,
        consumer: &'static str,
        seq: Seq,
    ) -> Result<(), EngineError> {
        let store = &self.inner.store;
        store
            .consumers
            .insert(consumer, &seq.to_be_bytes())
            .map_err(storage_error)?;
        store.flush().map_err(storage_error)?;
        Ok(())
    }
}

fn storage_error(error: sled::Error) -> EngineError {
    EngineError::Open(OpenError::Storage(error))
}
